//! Structure-following chunking.
