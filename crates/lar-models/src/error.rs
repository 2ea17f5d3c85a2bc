//! The error type of `lar-models`: a model file's own errors ([`lar_formats::Error`], passed through as they are),
//! and what goes wrong in loading weights or running them.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Format(#[from] lar_formats::Error),
    #[error(transparent)]
    Kernel(#[from] lar_kernels::Error),
    #[error("invalid model file: {0}")]
    Invalid(String),
    #[error("model lacks tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {got:?}, expected {want:?}")]
    BadShape {
        name: String,
        got: Vec<usize>,
        want: Vec<usize>,
    },
    #[error("{0}")]
    Unsupported(String),
    /// An error of the candle backend (device, kernel or shape).
    #[error("candle: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;
