//! The scale-out store: PostgreSQL with pgvector (HNSW index) behind the same [`super::Store`] trait.
