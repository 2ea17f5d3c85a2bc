//! The inference engine: [`Engine`] (the loop), [`scheduler`] (books on sequences and KV blocks), [`sampler`] and
//! [`runner`] (where the forward pass runs: our CPU kernels or the candle backend on a GPU); [`embed`]: sentence
//! embeddings with BERT-family encoders.

pub mod embed;
pub mod engine;
pub mod runner;
pub mod sampler;
pub mod scheduler;

pub use embed::SentenceEmbedder;
pub use engine::{Engine, EngineConfig, Event, Output, Sink, physical_cores};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] lar_models::Error),
    #[error(transparent)]
    Tokenizer(#[from] lar_tokenizer::Error),
    #[error(
        "the prompt has {tokens} tokens, which does not fit the context of {ctx} (use --ctx to raise it)"
    )]
    PromptTooLong { tokens: usize, ctx: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "the model has no chat template; pass --template (chatml, gemma, llama3, or a Jinja file) or --raw"
    )]
    NoTemplate,
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
