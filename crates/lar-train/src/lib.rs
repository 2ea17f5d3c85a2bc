//! Fine-tuning on the machine you own: a LoRA trained on the model's own weights, in the format it is served in
//! (QLoRA when that format is quantized), on the CPU.
//!
//! [`net`] computes a batch's loss and its gradient with respect to the adapter (the forward is the engine's math;
//! the backward of every operation is in [`ops`], [`attention`] and [`linear`], each checked against finite
//! differences); [`adapter`] holds what is trained; [`optim`] is AdamW with clipping and a schedule; [`data`] turns
//! JSONL into token sequences with their loss spans; [`distill`] makes a teacher's targets for quantization-aware
//! repair; [`trainer`] runs the loop.

pub mod adapter;
pub mod alloc;
pub mod attention;
pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod dropout;
pub mod error;
pub mod linear;
pub mod net;
pub mod ops;
pub mod optim;
pub mod par;
pub mod rng;
pub mod simd;
pub mod trainer;

pub use adapter::Adapter;
pub use error::{Error, Result};
pub use net::{Batch, Dropout, Net};
