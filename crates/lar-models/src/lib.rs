//! Model files and the math that runs them, on the CPU.
//!
//! - [`gguf`]: the GGUF reader (memory-mapped, every length checked); [`safetensors`] and [`hf`]: Hugging Face model
//!   directories, read into the same form;
//! - [`quant`]: GGML block types, dequantization, activation quantizers and dot kernels (AVX2 with reference twins),
//!   and the AVX-512 VNNI kernels of weights repacked in panels of 16 rows;
//! - [`tensor`], [`ops`], [`pool`]: weight views, matrix multiplication, f32 ops, the thread pool;
//! - [`model`] and `arch/`: one decoder forward pass, batched over sequences, over the paged [`kv`] store, with
//!   [`attention`] (tiled over queries and keys);
//! - [`bert`]: BERT-family encoders for sentence embeddings, with [`bert_ops`] (attention, LayerNorm, GELU) and
//!   [`gemm_i8`] (the int8 GEMM of their projections on AVX-512 VNNI).
//!
//! This crate knows nothing of tokenizers, sampling or scheduling; `lar-engine` drives it.

pub mod arch;
pub mod attention;
pub mod bert;
pub mod bert_ops;
#[cfg(feature = "candle")]
pub mod candle_backend;
pub mod error;
pub mod gemm_i8;
pub mod gguf;
pub mod gguf_write;
pub mod hf;
pub mod kv;
pub mod model;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod safetensors;
pub mod tensor;
pub mod testdata;

pub use error::{Error, Result};
pub use gguf::Gguf;
pub use kv::KvStore;
pub use model::{Hparams, Model, SeqBatch};
pub use pool::ThreadPool;
pub use safetensors::open_model;
