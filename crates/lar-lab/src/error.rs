//! The lab's errors: bad input named with its figures, the engine's and the runs database's failures.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be evaluated as asked (too short a text, a context of 0, ...).
    #[error("{0}")]
    Invalid(String),
    /// No run has that id (or prefix), or several do.
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Engine(#[from] lar_engine::Error),
    #[error("the runs database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
