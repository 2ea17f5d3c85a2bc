//! Errors of the knowledge base. A file that cannot be read is not an error of the knowledge base: connectors report
//! it as [`Error::Unreadable`] and the ingest skips it with that reason.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or understood (corrupt, encrypted, binary, too large, timed out...): skip it.
    #[error("{path}: {reason}")]
    Unreadable { path: String, reason: String },
    /// The file's format is not one the connectors read.
    #[error("{0}: unsupported file type")]
    Unsupported(String),
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
    #[error("knowledge base store: {0}")]
    Store(String),
    #[error("knowledge base '{0}' not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("embedding failed: {0}")]
    Embed(String),
}

impl Error {
    pub fn unreadable(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Unreadable {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
    pub fn io(context: impl std::fmt::Display, cause: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            cause,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Store(e.to_string())
    }
}
