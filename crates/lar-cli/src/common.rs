//! What several subcommands share: finding the model file, the engine options, sampling flags.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lar_engine::{Engine, EngineConfig};
use lar_types::SamplingParams;

/// Resolves MODEL: a `.gguf` file, a directory holding exactly one or a Hugging Face model, or a store name.
pub fn model_path(model: &str) -> Result<PathBuf> {
    let p = Path::new(model);
    if !p.exists() {
        // A name in the store, checked (size and mtime of every file) before anything is loaded.
        let Ok(name) = lar_store::ModelName::parse(model) else {
            bail!(
                "model '{model}' not found (give a .gguf file, a model directory, or a name from `lar list`)"
            );
        };
        let store = crate::store::open()?;
        return match store.resolve(&name) {
            Ok(path) => Ok(path),
            // A starter alias not pulled yet: pull it, as `ollama run` does.
            Err(lar_store::Error::NotFound(_))
                if crate::store::ALIASES.iter().any(|(a, _)| *a == model) =>
            {
                crate::store::pull_into(&store, model, None)?;
                Ok(store.resolve(&name)?)
            }
            Err(lar_store::Error::NotFound(_)) => bail!(
                "model '{model}' not found: no such file, and no model of that name in the store (see `lar list`)"
            ),
            Err(e) => Err(e.into()),
        };
    }
    if p.is_dir() {
        // A Hugging Face directory (config.json + safetensors), or a folder holding one GGUF file.
        if p.join("config.json").exists() {
            return Ok(p.to_path_buf());
        }
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("reading {model}"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "gguf"))
            .collect();
        ggufs.sort();
        return match ggufs.len() {
            1 => Ok(ggufs.remove(0)),
            0 => bail!("{model} holds no .gguf file and no config.json"),
            n => bail!("{model} holds {n} .gguf files; name one"),
        };
    }
    Ok(p.to_path_buf())
}

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
}

impl EngineArgs {
    pub fn load(&self, model: &str) -> Result<Engine> {
        let path = model_path(model)?;
        if self.ctx == Some(0) {
            bail!("--ctx must be at least 1");
        }
        if self.threads > 1024 {
            bail!("--threads must be at most 1024");
        }
        let file = std::sync::Arc::new(
            lar_models::open_model(&path).with_context(|| format!("loading {}", path.display()))?,
        );
        // The planner first: a load that will not fit is refused with the numbers, before any OOM kill.
        let ctx = crate::plan::check_fits(&file, self.ctx)?;
        let cfg = EngineConfig {
            ctx: Some(ctx),
            threads: self.threads,
            device: lar_engine::runner::parse_device(&self.device)?,
            ..Default::default()
        };
        Engine::from_file(file, &cfg).with_context(|| format!("loading {}", path.display()))
    }
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
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            bail!("--temperature must be a number >= 0");
        }
        if !(0.0..=1.0).contains(&self.top_p) || !(0.0..=1.0).contains(&self.min_p) {
            bail!("--top-p and --min-p must be between 0 and 1");
        }
        Ok(SamplingParams {
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
        })
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
