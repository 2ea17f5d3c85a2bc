//! The error type of the kernels and of the models built on them (`lar-models` re-exports it): a weight that is
//! missing, misshapen or of a type no kernel reads, a batch that does not fit its cache, a backend's failure. A
//! model file's own errors pass through as [`lar_formats::Error`].

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Format(#[from] lar_formats::Error),
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
