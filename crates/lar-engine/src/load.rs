//! Loading a model into a running engine: [`EngineConfig`] (context, KV budget, threads, device, batch limits)
//! and [`load`] / [`from_file`], which open the tokenizer and the weights, size the paged KV cache, pick the
//! backend and start an [`EngineHandle`].
//!
//! The KV cache is sized by what is asked of it, not by the context alone: `parallel` full contexts, or a byte
//! budget (`kv_budget`), which the planner's memory gate has already checked against the machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lar_models::{Gguf, Hparams, Model};
use lar_tokenizer::Tokenizer;

use crate::backend::{self, Device};
use crate::engine_core::{CoreConfig, EngineCore, Limits};
use crate::handle::EngineHandle;
use crate::{Error, Result};

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Context length per sequence; `None`: the model's own.
    pub ctx: Option<usize>,
    /// Threads for the forward pass; 0: the number of physical cores.
    pub threads: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Most tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences decoded together (raised to `parallel` when that is larger).
    pub max_seqs: usize,
    /// Full contexts the KV cache holds at once (sequences served in parallel at their longest).
    pub parallel: usize,
    /// Bytes the KV cache may use in all; overrides `parallel` when set.
    pub kv_budget: Option<u64>,
    /// Where the forward pass runs.
    pub device: Device,
    /// Tokens a consumer may fall behind before it is cancelled.
    pub event_buffer: usize,
    /// Reuse the cached K/V of prompt prefixes seen before (a chat's history, a shared system prompt).
    pub prefix_caching: bool,
    /// LoRA adapters loaded with the model, each by a name requests use (id = place in this list).
    pub loras: Vec<(String, PathBuf)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ctx: None,
            threads: 0,
            block_size: 16,
            max_batch_tokens: 512,
            max_seqs: 8,
            parallel: 1,
            kv_budget: None,
            device: Device::Cpu,
            event_buffer: 1024,
            prefix_caching: true,
            loras: Vec::new(),
        }
    }
}

/// Bytes of KV cache one token takes in every layer (K and V, f16, as [`lar_models::KvStore`] stores them).
pub fn kv_bytes_per_token(hp: &Hparams) -> u64 {
    (hp.n_layers * 2 * hp.kv_dim() * 2) as u64
}

/// Most threads a forward pass may be given.
pub const MAX_THREADS: usize = 1024;

/// The thread count to use: `threads`, or the physical cores for 0; more than [`MAX_THREADS`] is refused.
pub fn check_threads(threads: usize) -> Result<usize> {
    match threads {
        0 => Ok(physical_cores()),
        n if n > MAX_THREADS => Err(Error::Config(format!(
            "at most {MAX_THREADS} threads (got {n})"
        ))),
        n => Ok(n),
    }
}

/// Physical cores (the default thread count), falling back to logical ones.
pub use lar_plan::hw::physical_cores;

/// Loads a GGUF model file or a Hugging Face model directory and starts an engine on it.
pub fn load(path: &Path, cfg: &EngineConfig) -> Result<EngineHandle> {
    from_file(Arc::new(lar_models::open_model(path)?), cfg)
}

/// Starts an engine on the model of an opened file (which the caller may have planned first).
pub fn from_file(file: Arc<Gguf>, cfg: &EngineConfig) -> Result<EngineHandle> {
    let (core, template) = build(file, cfg)?;
    EngineHandle::start(core, template)
}

/// The engine core for the model of an opened file, not started, and the model's own chat template: for callers
/// that drive [`EngineCore::step`] themselves (tests that count steps).
pub fn build(file: Arc<Gguf>, cfg: &EngineConfig) -> Result<(EngineCore, Option<String>)> {
    let tokenizer = Tokenizer::from_gguf(&file)?;
    // Repacked for our CPU kernels only when they are the ones that run.
    let mut model = Model::from_gguf_with(file, cfg.device.is_cpu())?;
    let loras = add_loras(&mut model, cfg)?;
    if tokenizer.vocab.len() > model.hp.n_vocab {
        return Err(Error::Config(format!(
            "the tokenizer has {} tokens but the model's embedding only {}",
            tokenizer.vocab.len(),
            model.hp.n_vocab
        )));
    }
    let template = own_template(&model.file).map(str::to_string);
    let hp = model.hp.clone();
    let core_cfg = core_config(&hp, cfg)?;
    let threads = check_threads(cfg.threads)?;
    let backend = backend::open(
        model,
        &cfg.device,
        core_cfg.block_size,
        core_cfg.n_blocks,
        threads,
    )?;
    Ok((
        EngineCore::new(backend, Arc::new(tokenizer), core_cfg).with_loras(loras),
        template,
    ))
}

/// The chat template a model file carries (`tokenizer.chat_template`), if any.
fn own_template(file: &Gguf) -> Option<&str> {
    file.get("tokenizer.chat_template").and_then(|v| v.as_str())
}

/// Longest name an adapter may have.
pub const MAX_LORA_NAME: usize = 64;

/// Checks, before any weight is loaded, that a conversation can be rendered: `template` (a built-in name or Jinja
/// source) is given or the file has its own (`tokenizer.chat_template`); [`Error::NoTemplate`] otherwise.
pub fn check_chat_template(file: &Gguf, template: Option<&str>) -> Result<()> {
    if template.is_some() || own_template(file).is_some() {
        Ok(())
    } else {
        Err(Error::NoTemplate)
    }
}

/// Checks an adapter's name: what requests call it (`base+NAME`), so letters, digits, `.`, `_` and `-` only.
pub fn check_lora_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_LORA_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "adapter name '{name}': 1 to {MAX_LORA_NAME} letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Reads `cfg.loras`, checks each against the model, and adds them to it; their names by id.
fn add_loras(model: &mut Model, cfg: &EngineConfig) -> Result<Vec<String>> {
    if cfg.loras.is_empty() {
        return Ok(Vec::new());
    }
    if !cfg.device.is_cpu() {
        return Err(Error::Config(format!(
            "LoRA adapters run on the CPU backend only for now (device {})",
            cfg.device
        )));
    }
    let mut names = Vec::new();
    for (name, path) in &cfg.loras {
        check_lora_name(name)?;
        if names.contains(name) {
            return Err(Error::Config(format!("two adapters are named '{name}'")));
        }
        let adapter = lar_models::lora_files::LoraAdapter::open(path, &model.hp)?;
        let lora = lar_models::lora::Lora::new(name, &adapter, model.hp.n_layers)?;
        model.add_lora(lora);
        names.push(name.clone());
    }
    Ok(names)
}

/// The core's configuration for a model of shape `hp`: the context, and a cache of `parallel` contexts or of
/// `kv_budget` bytes (refused when it cannot hold one whole context).
pub fn core_config(hp: &Hparams, cfg: &EngineConfig) -> Result<CoreConfig> {
    let ctx = cfg.ctx.unwrap_or(hp.ctx_train).max(1);
    let bs = cfg.block_size.max(1);
    if cfg.parallel == 0 {
        return Err(Error::Config(
            "the number of parallel sequences must be at least 1".into(),
        ));
    }
    let n_blocks = match cfg.kv_budget {
        Some(bytes) => {
            let per_block = kv_bytes_per_token(hp) * bs as u64;
            let n = (bytes / per_block.max(1)) as usize;
            if n < ctx.div_ceil(bs) {
                return Err(Error::Config(format!(
                    "a KV budget of {bytes} bytes holds {} tokens, less than one context of {ctx} ({} bytes per \
                     token): lower the context or raise the budget",
                    n * bs,
                    kv_bytes_per_token(hp)
                )));
            }
            n
        }
        None => ctx
            .checked_mul(cfg.parallel)
            .ok_or_else(|| Error::Config("parallel x context overflows".into()))?
            .div_ceil(bs),
    };
    Ok(CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: hp.n_vocab,
            n_loras: cfg.loras.len(),
        },
        block_size: bs,
        n_blocks,
        max_batch_tokens: cfg.max_batch_tokens.max(1),
        max_seqs: cfg.max_seqs.max(cfg.parallel).max(1),
        reserve_per_seq: 1,
        event_buffer: cfg.event_buffer.max(1),
        prefix_caching: cfg.prefix_caching,
    })
}
