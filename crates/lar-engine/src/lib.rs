//! The inference engine. [`EngineHandle`] is how everything uses it: a cloneable handle on an engine thread that
//! owns the loop ([`engine_core`]: `schedule()` -> `forward()` -> `update()`), with `submit` -> a stream of [`Event`]s,
//! `abort` and `stats`. Around it: [`scheduler`] (books on sequences and KV blocks), [`sampler`] (the logits
//! processor chain and the draw), [`backend`] (where the forward pass runs: our CPU kernels or candle, behind one
//! trait; [`scripted`] is a deterministic one for tests, [`say`] one that says what it is told), [`load`] (loading a model into a running engine),
//! [`prompt`] (the model as callers see it: tokenizer, context, chat template); [`embed`]: sentence embeddings
//! with BERT-family encoders.

pub mod backend;
pub mod blocks;
pub mod embed;
pub mod engine_core;
pub mod events;
pub mod handle;
pub mod load;
pub mod prompt;
pub mod sampler;
pub mod say;
pub mod scheduler;
pub mod scoring;
pub mod scripted;

pub use backend::{Backend, Device};
pub use embed::SentenceEmbedder;
pub use engine_core::{EngineCore, EngineStats, Limits, Request};
pub use events::{Event, EventStream, Finished};
pub use handle::{EngineHandle, Output};
pub use load::{EngineConfig, check_chat_template, from_file, load, physical_cores};
pub use prompt::ModelInfo;
pub use scoring::PromptLogprob;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Format(#[from] lar_formats::Error),
    #[error(transparent)]
    Model(#[from] lar_models::Error),
    #[error(transparent)]
    Tokenizer(#[from] lar_tokenizer::Error),
    #[error("the prompt has {tokens} tokens, which does not fit the context of {ctx}")]
    PromptTooLong { tokens: usize, ctx: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("token id {token} is outside the vocabulary of {n_vocab}")]
    TokenOutOfVocab { token: u32, n_vocab: usize },
    #[error(transparent)]
    Param(#[from] lar_types::ParamError),
    #[error(
        "the model has no chat template; name one (chatml, gemma, llama3, or a Jinja file) or send raw text"
    )]
    NoTemplate,
    /// The engine cannot be set up as asked.
    #[error("{0}")]
    Config(String),
    /// The request's forward pass failed.
    #[error("{0}")]
    Failed(String),
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
