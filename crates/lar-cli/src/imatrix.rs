//! `lar imatrix MODEL TEXT -o FILE [--ctx 512] [--chunks N]`: an importance matrix (lar_lab::imatrix) of MODEL
//! over TEXT, in llama.cpp's GGUF imatrix format, for `lar quantize --imatrix` or llama-quantize; with a progress
//! bar, recorded as a run with the file as its artifact.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lar_lab::imatrix::{self, Options};
use serde_json::json;

use crate::common::model_path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a GGUF file (F32, F16, BF16 or quantized), a directory holding one, or a stored model's name.
    pub model: String,
    /// The text to run it over (UTF-8): at least two chunks of --ctx tokens.
    pub text: PathBuf,
    /// The importance matrix to write (GGUF).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// At most this many chunks.
    #[arg(long)]
    pub chunks: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Do not record this as a run.
    #[arg(long)]
    pub no_record: bool,
}

pub fn main(a: Args) -> Result<()> {
    let text = crate::eval::read_text(&a.text)?;
    let threads =
        lar_engine::load::check_threads(a.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let src = model_path(&a.model)?;
    let rec = crate::record::Recording::start(
        !a.no_record,
        "imatrix",
        &a.model,
        &src,
        json!({"text": a.text.display().to_string(), "ctx": a.ctx, "chunks": a.chunks, "threads": threads}),
        threads,
        "cpu",
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("imatrix {bar:30} {pos}/{len} chunks {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let opts = Options {
        ctx: a.ctx,
        chunks: a.chunks,
        threads,
    };
    let dataset = a.text.display().to_string();
    let result = imatrix::collect(&src, &text, &dataset, opts, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .and_then(|(m, s)| m.save(&a.output).map(|_| s))
    .map_err(anyhow::Error::from);
    bar.finish_and_clear();
    let sha = result.as_ref().ok().and_then(|_| rec.artifact(&a.output));
    let metrics = result.as_ref().map_or(Vec::new(), |s| {
        vec![
            ("matrices", s.matrices as f64),
            ("tokens", s.tokens as f64),
            ("seconds", s.seconds),
            ("tokens_per_second", s.tokens as f64 / s.seconds.max(1e-9)),
        ]
    });
    rec.finish(&result, &metrics);
    let s = result?;
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["output"] = json!(a.output.display().to_string());
        v["sha256"] = json!(sha);
        v["run"] = json!(rec.id);
        println!("{v}");
    } else {
        println!(
            "wrote {} ({} matrices from {} chunks of {} tokens) in {:.1} s",
            a.output.display(),
            s.matrices,
            s.chunks,
            a.ctx,
            s.seconds
        );
    }
    Ok(())
}
