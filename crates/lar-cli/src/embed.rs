//! `lar embed MODEL "text"...`: sentence embeddings as JSON, from a sentence-transformers directory (BERT family:
//! all-MiniLM, bge, e5). Texts come from the arguments, or one per line on standard input.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use lar_engine::SentenceEmbedder;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A sentence-transformers model directory (config.json, model.safetensors, tokenizer.json) or a store name.
    pub model: String,
    /// Texts to embed; none: one per line from standard input.
    pub texts: Vec<String>,
    /// Refuse texts longer than the model's maximum instead of cutting them.
    #[arg(long)]
    pub no_truncate: bool,
    /// Compute in the checkpoint's own precision (F32/F16/BF16) instead of Q8_0 projections: vectors equal to
    /// sentence-transformers' to 1e-5 in cosine instead of 1e-3, about 2x slower.
    #[arg(long)]
    pub exact: bool,
    /// Threads; default: the number of physical cores.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn main(args: Args) -> Result<()> {
    let path = crate::common::model_path(&args.model)?;
    if !path.is_dir() {
        bail!(
            "{} is not a model directory (lar embed reads sentence-transformers directories)",
            path.display()
        );
    }
    let mut e = SentenceEmbedder::open_with(&path, args.threads, !args.exact)
        .with_context(|| format!("loading {}", path.display()))?;
    e.truncate = !args.no_truncate;
    let texts: Vec<String> = if args.texts.is_empty() {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
            .context("reading texts from standard input (one per line, UTF-8)")?
    } else {
        args.texts
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = e.embed_texts(&refs)?;
    let out = serde_json::json!({
        "model": args.model,
        "dim": vectors.first().map_or(0, Vec::len),
        "embeddings": vectors,
    });
    // A closed pipe (`| head`) ends the output quietly.
    match writeln!(std::io::stdout().lock(), "{out}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
