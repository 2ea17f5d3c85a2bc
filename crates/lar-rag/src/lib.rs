//! lar-rag: the private knowledge base. Connectors turn files (text, Markdown, HTML, PDF, DOCX, mail, calendars,
//! transcripts) into [`Document`]s with the metadata people filter and cite by; [`chunk`] cuts them along their
//! structure into pieces sized in the embedder's tokens; a [`store::Store`] (one SQLite file by default, PostgreSQL +
//! pgvector for scale) keeps chunks, their vectors and a full-text index; [`search`] fuses BM25 and vector rankings;
//! [`answer`] builds grounded prompts with numbered sources. Embedding and generation come in through the small traits
//! of lar-types, so everything here is tested without a language model and the CLI or server wires the engine in.

pub mod answer;
pub mod chunk;
pub mod connectors;
#[doc(hidden)]
pub mod doc;
pub mod error;
pub mod eval;
pub mod filter;
pub mod fold;
pub mod ingest;
pub mod kb;
pub mod lang;
pub mod rerank;
pub mod search;
pub mod store;
pub mod time;

pub use doc::{Chunk, Document, Location, Meta, Section, SourceKind};
pub use error::{Error, Result};
