//! Errors of training: bad data (with its line), a model or adapter Lar cannot train, files that cannot be written.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not supported for training")]
    Unsupported(String),
    #[error("data line {line}: {msg}")]
    Data { line: usize, msg: String },
    #[error(transparent)]
    Model(#[from] lar_models::Error),
    #[error(transparent)]
    Formats(#[from] lar_formats::Error),
    #[error(transparent)]
    Tokenizer(#[from] lar_tokenizer::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
