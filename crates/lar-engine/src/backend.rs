//! Where the forward pass runs, behind one trait: [`Backend::forward`] takes a batch of sequences (new tokens, their
//! positions, their block tables) and returns logits. The engine loop knows nothing else of a backend, so it is
//! tested with [`crate::scripted::ScriptedBackend`] as well as with the real ones:
//! - [`CpuBackend`]: our own kernels on the CPU (the model, its paged KV store and the thread pool);
//! - `CandleBackend` (feature `candle`): the forward pass on candle's tensors, on a CUDA GPU (feature `cuda`) or on
//!   candle's own CPU kernels, which is how that path is checked without a GPU.
//!
//! The scheduler's block ids mean the same in every backend: each keeps its cache in blocks of the engine's block
//! size, addressed by the block tables it is handed.

use std::fmt;
use std::str::FromStr;

use lar_models::{KvStore, Model, SeqBatch, ThreadPool};

use crate::{Error, Result};

/// One forward pass over a batch of sequences.
pub trait Backend: Send {
    /// Logits per sequence of the batch: one row of the vocabulary's size for its last token, or one per new token
    /// when the sequence asks for `logits_from`. Writes the new tokens' K and V at their positions.
    fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>>;
    /// The device, as [`Device`] prints it (`cpu`, `cuda:0`, `candle-cpu`, ...).
    fn device(&self) -> String;
}

/// Where the forward pass runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// Our kernels on the CPU.
    #[default]
    Cpu,
    /// candle's CPU kernels (the GPU path, checked without a GPU).
    CandleCpu,
    /// An NVIDIA GPU through candle (a build with the `cuda` feature); the ordinal.
    Cuda(usize),
}

impl Device {
    /// True when our own CPU kernels run (weights are then repacked for them at load).
    pub fn is_cpu(&self) -> bool {
        *self == Device::Cpu
    }
}

impl FromStr for Device {
    type Err = Error;
    /// `cpu`, `candle-cpu`, `cuda` (device 0) or `cuda:N`.
    fn from_str(spec: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "unknown device '{spec}': cpu, cuda, cuda:N or candle-cpu"
            ))
        };
        match spec {
            "cpu" => Ok(Device::Cpu),
            "candle-cpu" => Ok(Device::CandleCpu),
            "cuda" => Ok(Device::Cuda(0)),
            s => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Device::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::CandleCpu => f.write_str("candle-cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Our kernels: the model, a paged KV store of `n_blocks` blocks, and a thread pool.
pub struct CpuBackend {
    pub model: Model,
    kv: KvStore,
    pool: ThreadPool,
}

impl CpuBackend {
    pub fn new(model: Model, block_size: usize, n_blocks: usize, threads: usize) -> Self {
        let hp = &model.hp;
        Self {
            kv: KvStore::new(block_size, hp.n_layers, hp.kv_dim(), n_blocks),
            pool: ThreadPool::new(threads),
            model,
        }
    }
}

impl Backend for CpuBackend {
    fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.forward(batch, &mut self.kv, &self.pool)?)
    }
    fn device(&self) -> String {
        Device::Cpu.to_string()
    }
}

/// The candle backend: the model's weights uploaded to a candle device, with its cache there.
#[cfg(feature = "candle")]
pub struct CandleBackend {
    model: lar_models::candle_backend::CandleModel,
    device: Device,
}

#[cfg(feature = "candle")]
impl Backend for CandleBackend {
    fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.forward(batch)?)
    }
    fn device(&self) -> String {
        self.device.to_string()
    }
}

/// The backend for `device`, with a cache of `n_blocks` blocks of `block_size` positions. `threads` is for our
/// kernels; a candle device brings its own.
pub fn open(
    model: Model,
    device: &Device,
    block_size: usize,
    n_blocks: usize,
    threads: usize,
) -> Result<Box<dyn Backend>> {
    let spec = match device {
        Device::Cpu => {
            return Ok(Box::new(CpuBackend::new(
                model, block_size, n_blocks, threads,
            )));
        }
        Device::CandleCpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
    };
    #[cfg(feature = "candle")]
    {
        use lar_models::candle_backend::{CandleModel, device as open_device};
        let cm = CandleModel::new(&model, open_device(&spec)?, block_size, n_blocks)?;
        Ok(Box::new(CandleBackend {
            model: cm,
            device: device.clone(),
        }))
    }
    #[cfg(not(feature = "candle"))]
    Err(Error::Invalid(format!(
        "device '{spec}' needs the candle backend, and this build has none (build with default features)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        for (s, d) in [
            ("cpu", Device::Cpu),
            ("candle-cpu", Device::CandleCpu),
            ("cuda", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(s.parse::<Device>().unwrap(), d);
        }
        assert_eq!(Device::Cuda(0).to_string(), "cuda:0");
        for bad in ["tpu", "cuda:", "cuda:x", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err().to_string();
            assert!(e.contains("unknown device"), "{e}");
        }
    }
}
