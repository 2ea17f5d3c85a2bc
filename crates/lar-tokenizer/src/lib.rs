//! Tokenizers, chat templates and streaming detokenization.
//!
//! [`Tokenizer`] reads a GGUF vocabulary and reproduces llama.cpp's token ids (byte-level BPE and SentencePiece-style
//! with byte fallback), or runs a Hugging Face `tokenizer.json` through the `tokenizers` library; [`ChatTemplate`] renders a conversation with the model's own Jinja template; [`detok`] turns
//! generated tokens into text safely (whole UTF-8 characters, stop strings cut even when split over tokens).

pub mod detok;
mod hf;
mod merge;
pub mod template;
pub mod tokenizer;
pub mod vocab;

pub use hf::TextEncoder;
pub use template::ChatTemplate;
pub use tokenizer::Tokenizer;
pub use vocab::{Model, Vocab};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the model has no tokenizer (GGUF tokenizer.ggml.* keys or tokenizer.json missing)")]
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
    /// The tokenizer of a model: its GGUF vocabulary, or the `tokenizer.json` of a model directory (which the
    /// directory loader places under `tokenizer.huggingface.json`).
    pub fn from_gguf(g: &lar_formats::Gguf) -> Result<Self> {
        if g.get("tokenizer.ggml.model").is_none()
            && let Some(json) = g.get("tokenizer.huggingface.json").and_then(|v| v.as_str())
        {
            let (vocab, hf) = hf::load(g, json)?;
            return Tokenizer::with_hf(vocab, hf);
        }
        Tokenizer::new(Vocab::from_gguf(g)?)
    }
}
