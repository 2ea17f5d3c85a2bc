//! What fits on this machine, and why.
//!
//! - [`hw`]: what this machine has (CPU, cores, SIMD, memory, GPUs, free disk);
//! - [`budget`]: what a model may spend (available RAM, cgroup limits, `LAR_MEMORY_LIMIT`; memory bandwidth);
//! - [`model`]: a model's shape and bytes from its tensor table; [`plan`]: weights, KV cache, compute buffers,
//!   overhead, the GPU/CPU split, the largest context and the decode speed bound, each explained;
//! - [`gate`]: the check every model load passes (the context to run at, or a refusal with the figures);
//! - [`finetune`]: memory for LoRA and QLoRA fine-tuning;
//! - [`size`]: byte sizes in and out.

pub mod budget;
pub mod error;
pub mod finetune;
pub mod gate;
pub mod hw;
pub mod model;
pub mod plan;
pub mod size;

pub use error::{Error, Refusal, Result};
pub use model::ModelInfo;
pub use plan::{KvType, Plan, Request, SwaCache, plan};
