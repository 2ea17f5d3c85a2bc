//! Tokenizers, chat templates and streaming detokenization.
//!
//! [`Tokenizer`] reads a GGUF vocabulary and reproduces llama.cpp's token ids (byte-level BPE and SentencePiece-style
//! with byte fallback); [`ChatTemplate`] renders a conversation with the model's own Jinja template; [`detok`] turns
//! generated tokens into text safely (whole UTF-8 characters, stop strings cut even when split over tokens).

pub mod detok;
mod merge;
pub mod template;
pub mod tokenizer;
pub mod vocab;

pub use template::ChatTemplate;
pub use tokenizer::Tokenizer;
pub use vocab::Vocab;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the model file has no tokenizer (tokenizer.ggml.model / tokens missing)")]
    MissingTokenizer,
    #[error("tokenizer: {0} is not supported")]
    Unsupported(String),
    #[error("tokenizer data is invalid: {0}")]
    Invalid(String),
    #[error("chat template: {0}")]
    Template(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Tokenizer {
    /// The tokenizer of a GGUF model.
    pub fn from_gguf(g: &lar_models::Gguf) -> Result<Self> {
        Tokenizer::new(Vocab::from_gguf(g)?)
    }
}
