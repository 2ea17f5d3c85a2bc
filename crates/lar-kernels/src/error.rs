//! The kernels' errors: a weight that is missing, misshapen or of a type no kernel reads, and a batch that does not
//! fit its cache. A model file's own errors pass through as [`lar_formats::Error`].

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
}

pub type Result<T> = std::result::Result<T, Error>;
