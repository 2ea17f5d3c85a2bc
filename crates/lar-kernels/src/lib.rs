//! The CPU kernels, each with a plain reference twin that the tests hold it to:
//!
//! - [`quant`]: GGML block types, dequantization, activation quantizers and dot kernels (AVX2, AVX-512 VNNI), and
//!   the kernels of weights repacked in panels of 16 rows;
//! - [`tensor`]: weight views into the mapped file and matrix multiplication; [`ops`]: f32 ops;
//! - [`attention`]: tiled causal attention over the paged [`kv`] store, for a [`SeqBatch`] of sequences;
//! - [`bert_ops`] and [`gemm_i8`]: the encoder's attention, LayerNorm, GELU and int8 GEMM;
//! - [`pool`]: the thread pool built for many short parallel loops per token.
//!
//! No model definitions here (those are `lar-models`), no file parsing (that is `lar-formats`).

pub mod attention;
pub mod bert_ops;
pub mod error;
pub mod gemm_i8;
pub mod kv;
pub mod ops;
pub mod pool;
pub mod profile;
pub mod quant;
pub mod seq_batch;
pub mod tensor;

pub use error::{Error, Result};
pub use kv::KvStore;
pub use pool::ThreadPool;
pub use seq_batch::{LoraSlot, SeqBatch};
