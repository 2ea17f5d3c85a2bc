//! Every way a model file can be wrong, each with a message that names the problem in one line (what, where, and
//! what was expected).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// (The cause is in the message, not chained as a `source`, so a chain of causes does not print it twice.)
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("not a GGUF file: magic is {0:?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (Lar reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("model file is truncated: {0}")]
    Truncated(String),
    #[error("invalid model file: {0}")]
    Invalid(String),
    #[error("tensor '{name}' has type {} (id {id}), which Lar does not run yet", crate::ggml_type::unsupported_name(*id))]
    UnsupportedType { name: String, id: u32 },
    #[error("architecture '{0}' is not supported (Lar runs: llama, qwen2, qwen3, gemma3, phi3)")]
    UnsupportedArch(String),
    #[error("model metadata lacks '{0}'")]
    MissingKey(String),
    #[error("model metadata '{key}' is {found}, expected {expected}")]
    WrongKeyType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
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
