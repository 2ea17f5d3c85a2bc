//! Where a knowledge base keeps its chunks, their vectors and a full-text index: the [`Store`] trait, with one
//! SQLite file per knowledge base by default ([`sqlite`]) and PostgreSQL + pgvector for larger ones ([`postgres`]).
//! A file's chunks are replaced in one transaction together with the file's content hash, so an interrupted ingest
//! (even `kill -9`) leaves every file either fully old or fully new, and `sync` finishes the rest by hash.

pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::lang::Analyzer;
use crate::{Chunk, Result, SourceKind};

/// What a store knows about one ingested file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Absolute path, as the ingest names it.
    pub path: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Chunks the file gave.
    pub chunks: u64,
}

/// Settings a store is created with and checks on open: the embedder's name and vector length, and how its
/// full-text side treats words (stores made before stemming read back as [`Analyzer::Plain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreInfo {
    pub embedder: String,
    pub dim: usize,
    #[serde(default)]
    pub language: Analyzer,
}

/// Restricts a search. Empty fields do not restrict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Any of these kinds.
    pub kinds: Vec<SourceKind>,
    /// Path glob (`*` within a path segment, `**` across, `?`), matched against the whole path.
    pub path_glob: Option<String>,
    /// Document date at or after / before (Unix seconds); documents without a date do not pass a date filter.
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Mail sender: case-insensitive substring of the From address.
    pub sender: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Refuses a date range whose start is after its end (nothing could match).
    pub fn validate(&self) -> crate::Result<()> {
        if let (Some(a), Some(b)) = (self.since, self.until)
            && a > b
        {
            return Err(crate::Error::Invalid(
                "the date range starts after it ends: nothing can match".into(),
            ));
        }
        Ok(())
    }
}

/// One ranked result of a single retriever: the chunk id and that retriever's score (higher is better: BM25 score
/// for text, cosine similarity for vectors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ranked {
    pub id: i64,
    pub score: f32,
}

/// A stored chunk with its id.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChunk {
    pub id: i64,
    pub chunk: Chunk,
}

/// Counts for `lar kb stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub files: u64,
    pub chunks: u64,
    /// Chunks per source kind.
    pub by_kind: Vec<(SourceKind, u64)>,
    /// Bytes the store occupies (the SQLite file with its WAL; the PostgreSQL tables with indexes).
    pub bytes: u64,
}

/// A knowledge base's storage. Implementations are used from one thread at a time.
pub trait Store: Send {
    fn info(&self) -> &StoreInfo;
    /// Every ingested file.
    fn files(&self) -> Result<Vec<FileEntry>>;
    /// Replaces everything stored for `file.path` by `chunks` (with `vectors[i]` for `chunks[i]`, each of length
    /// `info().dim`) and records `file`, in one transaction.
    fn put_file(&mut self, file: &FileEntry, chunks: &[Chunk], vectors: &[Vec<f32>]) -> Result<()>;
    /// Drops a file and its chunks (no error if absent).
    fn remove_file(&mut self, path: &str) -> Result<()>;
    /// Best `k` chunks by BM25 for the folded query `terms` (any term may match, or its stem in the store's
    /// languages), best first.
    fn text_search(&self, terms: &[String], k: usize, filter: &Filter) -> Result<Vec<Ranked>>;
    /// Nearest `k` chunks to `vector` by cosine similarity, best first.
    fn vector_search(&self, vector: &[f32], k: usize, filter: &Filter) -> Result<Vec<Ranked>>;
    /// The chunks with these ids, in the order given (unknown ids are left out).
    fn chunks(&self, ids: &[i64]) -> Result<Vec<StoredChunk>>;
    fn stats(&self) -> Result<Stats>;
    /// The languages its chunks were stemmed in.
    fn languages(&self) -> Vec<crate::lang::Lang>;
}
