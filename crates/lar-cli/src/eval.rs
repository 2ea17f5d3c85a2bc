//! `lar eval perplexity MODEL FILE [--ctx 512] [--chunks N]`: a model's perplexity on a text, measured as
//! llama-perplexity does (lar_lab::perplexity), with a progress bar showing the running estimate; `--json` prints
//! one object. Every evaluation is recorded as a run (`lar runs`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lar_engine::{Device, EngineConfig};
use lar_lab::perplexity::{self, Options};
use lar_plan::gate::Load;
use serde_json::json;

use crate::common::{gate, model_path};
use crate::record::Recording;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Perplexity on a text file, as llama-perplexity measures it (the second half of each chunk scored).
    Perplexity(PplArgs),
}

#[derive(clap::Args, Debug)]
pub struct PplArgs {
    /// A .gguf file, a directory holding one, or a stored model's name.
    pub model: String,
    /// The text (UTF-8), at least two contexts long once tokenized.
    pub file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx: usize,
    /// At most this many chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where the forward pass runs: cpu, cuda or cuda:N (a build with `--features cuda`), candle-cpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object: perplexity, stderr, tokens, chunks, ctx, seconds, run.
    #[arg(long)]
    pub json: bool,
    /// Do not record this evaluation as a run.
    #[arg(long)]
    pub no_record: bool,
}

pub fn main(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Perplexity(a) => perplexity(a),
    }
}

fn perplexity(a: PplArgs) -> Result<()> {
    let text = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let text = String::from_utf8(text)
        .map_err(|e| anyhow!("{} is not UTF-8 text ({e})", a.file.display()))?;
    let threads =
        lar_engine::load::check_threads(a.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let device: Device = a.device.parse().map_err(|e| anyhow!("--device: {e}"))?;
    let path = model_path(&a.model)?;
    let file = Arc::new(lar_models::open_model(&path)?);
    // Each chunk and the one token sampled after it; two chunks in flight.
    let ctx = a.ctx + 1;
    gate(
        &file,
        Load {
            ctx: Some(ctx),
            parallel: 2,
            ..Load::default()
        },
    )?;
    let cfg = EngineConfig {
        ctx: Some(ctx),
        threads,
        device,
        parallel: 2,
        ..Default::default()
    };
    let engine =
        lar_engine::from_file(file, &cfg).with_context(|| format!("loading {}", path.display()))?;
    let opts = Options {
        ctx: a.ctx,
        chunks: a.chunks,
    };
    let rec = Recording::start(
        !a.no_record,
        "eval.perplexity",
        &a.model,
        &path,
        json!({"ctx": a.ctx, "chunks": a.chunks, "text": a.file.display().to_string(),
               "text_bytes": text.len(), "threads": threads}),
        threads,
        &engine.model().device,
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("perplexity {msg} {bar:30} {pos}/{len} chunks, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = perplexity::measure(&engine, &text, opts, &mut |done, total, est| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("{est:.4}"));
        rec.step("perplexity", done as i64, est);
    })
    .map_err(anyhow::Error::from);
    bar.finish_and_clear();
    let metrics = result.as_ref().map_or(Vec::new(), |p| {
        vec![
            ("perplexity", p.perplexity),
            ("stderr", p.stderr),
            ("tokens", p.tokens as f64),
            ("seconds", p.seconds),
            ("tokens_per_second", p.tokens as f64 / p.seconds.max(1e-9)),
        ]
    });
    rec.finish(&result, &metrics);
    let p = result?;
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        v["run"] = json!(rec.id);
        println!("{v}");
    } else {
        let running: Vec<String> = p
            .running
            .iter()
            .enumerate()
            .map(|(i, x)| format!("[{}]{x:.4}", i + 1))
            .collect();
        println!("{}", running.join(","));
        println!(
            "perplexity: {:.4} +/- {:.5} ({} tokens scored in {} chunks of {}; {:.1} s, {:.0} tokens/s)",
            p.perplexity,
            p.stderr,
            p.tokens,
            p.chunks,
            p.ctx,
            p.seconds,
            (p.chunks * p.ctx) as f64 / p.seconds.max(1e-9)
        );
        if let Some(id) = &rec.id {
            println!("recorded as run {id} (lar runs show {})", &id[..8]);
        }
    }
    Ok(())
}
