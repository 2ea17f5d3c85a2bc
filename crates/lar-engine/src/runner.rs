//! Where the forward pass runs, behind one call: our own kernels on the CPU (the model, its paged KV store and the
//! thread pool), or the candle backend on a device ([`lar_models::candle_backend`]: CUDA with the `cuda` feature, or
//! candle's own CPU kernels, which is how that path is checked without a GPU). The scheduler's block ids mean the same
//! in both: the candle backend keeps its cache on the device with the same blocks.

use lar_models::{KvStore, Model, SeqBatch, ThreadPool};

use crate::{Error, Result};

/// A device spec as `--device` takes it: `cpu` (our kernels), `candle-cpu`, `cuda`, `cuda:N`. Returns the candle
/// device to open, or `None` for our CPU kernels.
pub fn parse_device(spec: &str) -> Result<Option<String>> {
    match spec {
        "cpu" => Ok(None),
        "candle-cpu" => Ok(Some("cpu".into())),
        s if s == "cuda" || s.starts_with("cuda:") => Ok(Some(s.into())),
        other => Err(Error::Invalid(format!(
            "unknown device '{other}': cpu, cuda, cuda:N or candle-cpu"
        ))),
    }
}

pub struct Runner {
    pub model: Model,
    kv: KvStore,
    pool: ThreadPool,
    #[cfg(feature = "candle")]
    candle: Option<lar_models::candle_backend::CandleModel>,
    device: String,
}

impl Runner {
    /// `model` on `device` (a candle device from [`parse_device`], or `None` for our CPU kernels), with a cache of
    /// `n_blocks` blocks of `block_size` positions.
    pub fn new(
        model: Model,
        device: Option<&str>,
        block_size: usize,
        n_blocks: usize,
        threads: usize,
    ) -> Result<Self> {
        let hp = &model.hp;
        // Our kernels' threads; a candle device brings its own.
        let pool = ThreadPool::new(if device.is_some() { 1 } else { threads });
        let Some(dev) = device else {
            return Ok(Self {
                kv: KvStore::new(block_size, hp.n_layers, hp.kv_dim(), n_blocks),
                model,
                pool,
                #[cfg(feature = "candle")]
                candle: None,
                device: "cpu".into(),
            });
        };
        #[cfg(feature = "candle")]
        {
            use lar_models::candle_backend::{CandleModel, device as open};
            let cm = CandleModel::new(&model, open(dev)?, block_size, n_blocks)?;
            Ok(Self {
                // The cache lives on the device: none here.
                kv: KvStore::new(block_size, hp.n_layers, hp.kv_dim(), 0),
                model,
                pool,
                candle: Some(cm),
                device: if dev == "cpu" { "candle-cpu" } else { dev }.to_string(),
            })
        }
        #[cfg(not(feature = "candle"))]
        Err(Error::Invalid(format!(
            "device '{dev}' needs the candle backend, and this build has none (build with default features)"
        )))
    }

    /// Logits per sequence of the batch, as [`Model::forward`].
    pub fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>> {
        #[cfg(feature = "candle")]
        if let Some(cm) = self.candle.as_mut() {
            return Ok(cm.forward(batch)?);
        }
        Ok(self.model.forward(batch, &mut self.kv, &self.pool)?)
    }

    /// `cpu` for our kernels, else the device as `--device` named it (`cuda`, `cuda:1`, `candle-cpu`).
    pub fn device(&self) -> &str {
        &self.device
    }
}
