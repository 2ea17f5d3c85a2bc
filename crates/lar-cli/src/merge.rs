//! `lar merge BASE ADAPTER -o OUT [--type T] [--scale S]`: a LoRA adapter baked into its base's weights, each
//! adapted tensor dequantized, given `scale * B · A`, and quantized again (into its own type, or the weights into
//! T as `lar quantize` writes them), so the result runs, and is shared, as a plain model. Recorded as a run with
//! its lineage (the base's and the adapter's sha256).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use lar_formats::lora::LoraAdapter;
use lar_lab::mixture::FileType;
use lar_lab::quantize::Options;
use serde_json::json;

use crate::common::model_path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The base model: a stored name, a GGUF file, or a Hugging Face directory.
    pub base: String,
    /// The adapter: a PEFT directory (or one of its files) or a GGUF adapter.
    pub adapter: PathBuf,
    /// The GGUF file to write.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// The weights' type or mixture (as `lar quantize --type`); default: every tensor keeps its type.
    #[arg(long = "type", short = 't')]
    pub ty: Option<String>,
    /// The adapter's strength (1: as trained).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not record this merge as a run.
    #[arg(long)]
    pub no_record: bool,
}

pub fn main(a: Args) -> Result<()> {
    if !a.scale.is_finite() {
        return Err(anyhow!("--scale: {} is not a number", a.scale));
    }
    let ft = match &a.ty {
        Some(t) => Some(FileType::parse(t).map_err(|e| anyhow!("--type: {e}"))?),
        None => None,
    };
    let threads =
        lar_engine::load::check_threads(a.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let src = model_path(&a.base)?;
    let g = lar_models::open_model(&src).with_context(|| format!("reading {}", a.base))?;
    let hp = lar_models::Hparams::from_gguf(&g)?;
    let adapter = LoraAdapter::open(&a.adapter, &hp)?;
    drop(g);
    let o = Options {
        threads,
        keep_types: ft.is_none(),
        allow_requantize: true,
        lora: Some((adapter, a.scale)),
        ..Options::new(ft.unwrap_or(FileType::F32))
    };
    let mut rec = crate::record::Recording::start(
        !a.no_record,
        "merge",
        &a.base,
        &src,
        json!({"adapter": a.adapter.display().to_string(), "type": a.ty, "scale": a.scale, "threads": threads}),
        threads,
        "cpu",
    );
    let result = crate::quantize::with_bar("merge", &src, &a.output, &o);
    rec.artifact(&a.output);
    let adapter_sha = lar_formats::lora::adapter_files(&a.adapter)
        .into_iter()
        .filter_map(|p| lar_lab::digest::sha256_of(&p).ok())
        .collect::<Vec<_>>();
    rec.lineage(
        json!({"source": a.base, "source_sha256": rec.model_sha256(),
                       "adapter": a.adapter.display().to_string(), "adapter_sha256": adapter_sha}),
    );
    let metrics = result.as_ref().map_or(Vec::new(), |s| {
        vec![
            ("output_bytes", s.output_bytes as f64),
            ("seconds", s.seconds),
        ]
    });
    rec.finish(&result, &metrics);
    let s = result?;
    println!(
        "wrote {} ({:.1} MiB; {} adapted tensors baked in) in {:.1} s",
        a.output.display(),
        s.output_bytes as f64 / (1 << 20) as f64,
        o.lora.as_ref().map_or(0, |(l, _)| l.tensors.len()),
        s.seconds
    );
    Ok(())
}
