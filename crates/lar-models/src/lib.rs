//! The models: the decoder forward pass over a batch of sequences ([`model`]: every architecture from the data in
//! its `Hparams`), BERT-family encoders for sentence embeddings ([`bert`]), and the same decoder on candle's tensors
//! for GPUs ([`candle_backend`], feature `candle`). The kernels they run are `lar-kernels` and the files they read
//! `lar-formats`; both are re-exported here under their module names.
//!
//! This crate knows nothing of tokenizers, sampling or scheduling; `lar-engine` drives it.

pub mod bert;
#[cfg(feature = "candle")]
pub mod candle_backend;
pub mod lora;
pub mod model;

pub use lar_formats::lora as lora_files;
pub use lar_formats::{Gguf, Hparams, gguf, gguf_write, hf, open_model, safetensors};
pub use lar_kernels::{
    Error, KvStore, LoraSlot, Result, SeqBatch, ThreadPool, attention, bert_ops, error, gemm_i8,
    kv, ops, pool, profile, quant, tensor,
};
pub use model::Model;
