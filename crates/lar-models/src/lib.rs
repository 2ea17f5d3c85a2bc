//! Model files and the math that runs them, on the CPU.
//!
//! - [`gguf`]: the GGUF reader (memory-mapped, every length checked);
//! - [`quant`]: GGML block types, dequantization, activation quantizers and dot kernels (AVX2 with reference twins);
//! - [`tensor`], [`ops`], [`pool`]: weight views, matrix multiplication, f32 ops, the thread pool;
//! - [`model`] and `arch/`: one decoder forward pass, batched over sequences, over the paged [`kv`] store.
//!
//! This crate knows nothing of tokenizers, sampling or scheduling; `lar-engine` drives it.

pub mod arch;
pub mod error;
pub mod gguf;
pub mod kv;
pub mod model;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod tensor;

pub use error::{Error, Result};
pub use gguf::Gguf;
pub use kv::KvStore;
pub use model::{Hparams, Model, SeqBatch};
pub use pool::ThreadPool;

/// Where the test models live: `$LAR_MODELS`, else `~/.cache/lar/models` (filled by `scripts/fetch-models.sh`).
pub mod testdata {
    use std::path::PathBuf;

    pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
    pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

    pub fn models_dir() -> PathBuf {
        match std::env::var_os("LAR_MODELS") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/lar/models"),
        }
    }

    /// The path of a test model; panics with instructions when it has not been fetched (tests must not silently skip).
    pub fn model(file: &str) -> PathBuf {
        let p = models_dir().join(file);
        assert!(
            p.exists(),
            "{} is missing: run scripts/fetch-models.sh",
            p.display()
        );
        p
    }

    /// The repository's `tests/golden` directory.
    pub fn golden_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
    }
}
