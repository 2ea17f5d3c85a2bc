//! Model files, read and written, with no kernels: the GGUF reader ([`gguf`]: memory-mapped, every length
//! checked) and writers ([`gguf_write`] in memory, [`gguf_stream`] tensor by tensor), Hugging Face model directories ([`safetensors`] and [`hf`]: config,
//! tokenizer and safetensors weights presented as a GGUF file), GGML's type table ([`ggml_type`]), and a decoder's
//! hyperparameters from its metadata ([`hparams`], one file per architecture in `arch/`), and LoRA
//! adapters in PEFT's and llama.cpp's forms ([`lora`]).
//!
//! The tokenizer and the memory planner depend on this crate alone; `lar-models` adds the kernels and the forward
//! pass.

pub mod arch;
pub mod error;
pub mod ggml_type;
pub mod gguf;
pub mod gguf_stream;
pub mod gguf_write;
pub mod hf;
pub mod hf_export;
mod hf_spm;
pub mod hparams;
pub mod lora;
pub mod safetensors;
pub mod safetensors_write;

pub use error::{Error, Result};
pub use ggml_type::GgmlType;
pub use gguf::Gguf;
pub use hparams::{Activation, Hparams};
pub use safetensors::open_model;
