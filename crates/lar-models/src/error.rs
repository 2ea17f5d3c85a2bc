//! The one error type of `lar-models`: every way a model file can be wrong, each with a message that names the
//! problem in one line (what, where, and what was expected).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic is {0:?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (Lar reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("GGUF file is truncated: {0}")]
    Truncated(String),
    #[error("GGUF file is invalid: {0}")]
    Invalid(String),
    #[error("tensor '{name}' has type id {id}, which Lar does not support")]
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
