//! Constrained decoding. A [`Vocabulary`] is built once per model from its own tokenizer (every token's bytes, the
//! control tokens marked as special, the end-of-generation tokens); it compiles a [`Constraint`] (a JSON schema, any
//! JSON object, a regular expression or a Lark grammar) into a [`Grammar`] once per request, and each sequence of
//! the request gets its own [`GrammarMask`]: a link of the engine's logits-processor chain that sets the logit of
//! every token the grammar cannot take next to minus infinity, and advances with every token drawn. When the
//! grammar is complete only the end-of-generation tokens are left, so the answer ends where the grammar does.
//!
//! The grammar engine is llguidance (its Earley parser and lexer; the token trie of `toktrie`). A construct it
//! cannot enforce is an [`Error::Unsupported`] naming it, never unconstrained output.
//!
//! [`tools`] builds on it: each model family's tool-call syntax, parsed back out of the text, and enforced;
//! [`reasoning`] splits a reasoning model's thinking from its answer and holds grammars back until it has thought.

mod constraint;
mod mask;
pub mod reasoning;
pub mod tools;
mod vocab;

pub use constraint::{Constraint, Grammar};
pub use mask::GrammarMask;
pub use vocab::Vocabulary;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The schema or grammar cannot be enforced (the message names the construct).
    #[error("{0}")]
    Unsupported(String),
    /// The model's vocabulary cannot be used for constrained decoding.
    #[error("constrained decoding cannot use this model's vocabulary: {0}")]
    Vocabulary(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How every failure of a grammar mid-generation begins (what [`GrammarMask`] reports through
/// `LogitsProcessor::failed`), so callers can tell it from a failure of the engine.
pub const FAILED: &str = "constrained decoding failed";

/// Runs `f`, turning a panic inside the grammar engine into an error (it parses what users send).
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Error::Unsupported(format!(
                "the grammar engine failed on {what}: {msg}"
            )))
        }
    }
}
