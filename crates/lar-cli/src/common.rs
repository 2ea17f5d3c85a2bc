//! What several subcommands share: the engine flags, sampling flags, and how the library's errors are shown with
//! the flag that caused them. No policy lives here: model resolution is `lar_store::resolve`, the memory gate
//! `lar_plan::gate`, parameter ranges `SamplingParams::validate`, engine limits `lar_engine::load`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use lar_engine::{EngineConfig, EngineHandle};
use lar_plan::gate::Load;
use lar_plan::size::parse_bytes;
use lar_types::{ParamError, SamplingParams};

pub use crate::store::model_path;

#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Context length (tokens); default: the largest that fits in memory, capped by the model's own.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Threads; default: the number of physical cores.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where the forward pass runs: cpu (our kernels), cuda or cuda:N (through candle; a build with
    /// `--features cuda`), candle-cpu (the GPU path on candle's CPU kernels, for checking it).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Sequences the KV cache holds at full context at once (the memory gate plans for all of them).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Bytes the KV cache may use in all (e.g. 2GiB), instead of `--parallel` full contexts.
    #[arg(long, value_parser = parse_bytes)]
    pub kv_budget: Option<u64>,
}

impl EngineArgs {
    /// The engine's configuration from the flags (the context is set once the gate has decided it).
    pub fn config(&self) -> Result<EngineConfig> {
        Ok(EngineConfig {
            threads: lar_engine::load::check_threads(self.threads)
                .map_err(|e| anyhow!("--threads: {e}"))?,
            device: self.device.parse().map_err(|e| anyhow!("--device: {e}"))?,
            parallel: self.parallel,
            kv_budget: self.kv_budget,
            ..Default::default()
        })
    }

    /// Resolves `model`, passes the memory gate, and starts an engine on it.
    pub fn load(&self, model: &str) -> Result<EngineHandle> {
        self.load_with(model, &LoraArgs::default())
    }

    /// [`Self::load`] with the adapter of `lora` loaded beside the model.
    pub fn load_with(&self, model: &str, lora: &LoraArgs) -> Result<EngineHandle> {
        self.load_checked(model, lora, |_| Ok(()))
    }

    /// [`Self::load_with`], with `check` run on the file's metadata after the memory gate and before the weights
    /// load (so a request that cannot run fails at once).
    pub fn load_checked(
        &self,
        model: &str,
        lora: &LoraArgs,
        check: impl FnOnce(&lar_formats::gguf::Gguf) -> lar_engine::Result<()>,
    ) -> Result<EngineHandle> {
        // Flags first: a bad one is reported before anything is read or pulled.
        let mut cfg = self.config()?;
        if let Some(p) = &lora.lora {
            cfg.loras = vec![(LoraArgs::NAME.to_string(), p.clone())];
        }
        let path = model_path(model)?;
        let file =
            Arc::new(lar_models::open_model(&path).with_context(|| format!("loading {model}"))?);
        let load = Load {
            ctx: self.ctx,
            parallel: self.parallel,
            kv_budget: self.kv_budget,
        };
        cfg.ctx = Some(gate(&file, load)?);
        check(&file)?;
        lar_engine::from_file(file, &cfg).with_context(|| format!("loading {model}"))
    }
}

/// `--lora PATH [--lora-scale S]`: the one adapter `lar run` and `lar chat` run with.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LoraArgs {
    /// A LoRA adapter to run with: a PEFT directory (adapter_config.json + adapter_model.safetensors), either of
    /// its files, or a GGUF adapter (llama.cpp's `--lora` files).
    #[arg(long)]
    pub lora: Option<PathBuf>,
    /// The adapter's strength: 1 as trained, 0 the bare model.
    #[arg(long, default_value_t = 1.0, requires = "lora")]
    pub lora_scale: f32,
}

impl LoraArgs {
    /// The name the adapter is loaded under.
    pub const NAME: &str = "lora";

    /// The slot requests name the adapter by (it is the only one, id 0), if one was given.
    pub fn slot(&self) -> Option<lar_models::LoraSlot> {
        self.lora.as_ref().map(|_| lar_models::LoraSlot {
            id: 0,
            scale: self.lora_scale,
        })
    }
}

/// The memory gate before a load: the context to run at, or the planner's refusal with the flag that helps.
pub fn gate(file: &lar_models::Gguf, load: Load) -> Result<usize> {
    let info = lar_plan::ModelInfo::from_gguf(file)?;
    let e = match lar_plan::gate::check(&info, &load) {
        Ok(a) => return Ok(a.ctx),
        Err(e) => e,
    };
    let r = match &e {
        lar_plan::Error::NotEnoughMemory(r) => r,
        lar_plan::Error::Invalid(_) => return Err(anyhow!("--ctx/--parallel: {e}")),
        _ => return Err(e.into()),
    };
    let hint = match r.max_ctx {
        0 => String::new(),
        c => format!(": try --ctx {c}"),
    };
    let (ctx, parallel) = (r.ctx, r.parallel);
    Err(anyhow!(
        "{e}{hint} (details: `lar plan MODEL --ctx {ctx} --parallel {parallel} --explain`)"
    ))
}

/// A parameter error as the command line shows it: with the flag's name.
pub fn param_error(e: ParamError) -> anyhow::Error {
    anyhow!(
        "--{}: {} must be {} (got {})",
        e.param.replace('_', "-"),
        e.param,
        e.expected,
        e.got
    )
}

#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Same seed, same output.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    pub fn params(&self) -> Result<SamplingParams> {
        let p = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ..SamplingParams::default()
        };
        p.validate().map_err(param_error)?;
        Ok(p)
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
