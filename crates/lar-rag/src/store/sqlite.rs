//! The default store: one SQLite file per knowledge base (WAL), FTS5 for BM25 and sqlite-vec for vectors.
