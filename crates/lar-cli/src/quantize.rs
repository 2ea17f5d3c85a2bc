//! `lar quantize IN OUT --type T [--pure] [--allow-requantize] [--output-tensor-type T] [--token-embedding-type T]
//! [--tensor-type PATTERN=TYPE]... [--imatrix FILE]`: a GGUF model rewritten with its weights in type T (or a k-quant mixture), as llama-quantize writes them (lar_lab::quantize), with a
//! progress bar; recorded as a run with its lineage (the source's sha256, the type) and the output as an artifact.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lar_lab::mixture::{self, FileType};
use lar_lab::quantize::{self, Options};
use serde_json::json;

use crate::common::model_path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The source: a GGUF file (F32, F16 or BF16; quantized with --allow-requantize), a directory holding one, or
    /// a stored model's name.
    pub input: String,
    /// The GGUF file to write.
    pub output: PathBuf,
    /// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, F16, BF16
    /// or F32 (Q3_K, Q4_K and Q5_K mean their _M mixtures).
    #[arg(long = "type", short = 't')]
    pub ty: String,
    /// Every quantized tensor in --type's base type (no mixture, no Q6_K/Q8_0 for the output tensor).
    #[arg(long)]
    pub pure: bool,
    /// Quantize a source that is already quantized.
    #[arg(long)]
    pub allow_requantize: bool,
    #[arg(long)]
    pub output_tensor_type: Option<String>,
    #[arg(long)]
    pub token_embedding_type: Option<String>,
    /// An importance matrix (`lar imatrix` or llama-imatrix, GGUF) to weigh each weight's error by.
    #[arg(long)]
    pub imatrix: Option<PathBuf>,
    /// PATTERN=TYPE: tensors whose name matches the regular expression get TYPE (repeatable; the first match wins).
    #[arg(long = "tensor-type", value_name = "PATTERN=TYPE")]
    pub tensor_types: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Do not record this quantization as a run.
    #[arg(long)]
    pub no_record: bool,
}

/// [`quantize::quantize`] with a progress bar of tensors labelled `what`.
pub fn with_bar(
    what: &str,
    src: &std::path::Path,
    dst: &std::path::Path,
    o: &Options,
) -> Result<quantize::Summary> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} {{bar:30}} {{pos}}/{{len}} tensors {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = quantize::quantize(src, dst, o, &mut |done, total, name| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(name.to_string());
    })
    .map_err(anyhow::Error::from);
    bar.finish_and_clear();
    result
}

pub fn main(a: Args) -> Result<()> {
    let ft = FileType::parse(&a.ty).map_err(|e| anyhow!("--type: {e}"))?;
    let output_type = a
        .output_tensor_type
        .as_deref()
        .map(mixture::parse_tensor_type)
        .transpose()
        .map_err(|e| anyhow!("--output-tensor-type: {e}"))?;
    let token_embedding_type = a
        .token_embedding_type
        .as_deref()
        .map(mixture::parse_tensor_type)
        .transpose()
        .map_err(|e| anyhow!("--token-embedding-type: {e}"))?;
    let overrides = a
        .tensor_types
        .iter()
        .map(|s| mixture::parse_override(s))
        .collect::<Result<Vec<_>, _>>()?;
    let threads =
        lar_engine::load::check_threads(a.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let src = model_path(&a.input)?;
    let imatrix = a
        .imatrix
        .as_deref()
        .map(lar_lab::imatrix::Imatrix::load)
        .transpose()?;
    let imatrix_sha = a
        .imatrix
        .as_deref()
        .and_then(|p| lar_lab::digest::sha256_of(p).ok());
    let o = Options {
        imatrix,
        pure: a.pure,
        allow_requantize: a.allow_requantize,
        output_type,
        token_embedding_type,
        overrides: overrides.clone(),
        threads,
        ..Options::new(ft)
    };
    let overrides: Vec<String> = overrides
        .iter()
        .map(|(p, t)| format!("{p}={}", t.name()))
        .collect();
    let mut rec = crate::record::Recording::start(
        !a.no_record,
        "quantize",
        &a.input,
        &src,
        json!({"type": ft.name(), "pure": a.pure, "tensor_types": overrides, "imatrix": a.imatrix.as_ref().map(|p| p.display().to_string()), "allow_requantize": a.allow_requantize,
               "output_tensor_type": output_type.map(|t| t.name()),
               "token_embedding_type": token_embedding_type.map(|t| t.name()), "threads": threads}),
        threads,
        "cpu",
    );
    let result = with_bar("quantize", &src, &a.output, &o);
    let out_sha = result.as_ref().ok().and_then(|_| rec.artifact(&a.output));
    let metrics = result.as_ref().map_or(Vec::new(), |s| {
        vec![
            ("output_bytes", s.output_bytes as f64),
            ("source_bytes", s.source_bytes as f64),
            ("tensors_quantized", s.quantized as f64),
            ("seconds", s.seconds),
        ]
    });
    rec.lineage(
        json!({"source": a.input, "source_sha256": rec.model_sha256(), "type": ft.name(),
                       "pure": a.pure,
               "imatrix": a.imatrix.as_ref().map(|p| p.display().to_string()), "imatrix_sha256": imatrix_sha}),
    );
    rec.finish(&result, &metrics);
    let s = result?;
    if a.json {
        let mut v = serde_json::to_value(&s)?;
        v["output"] = json!(a.output.display().to_string());
        v["sha256"] = json!(out_sha);
        v["run"] = json!(rec.id);
        println!("{v}");
    } else {
        let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
        println!(
            "wrote {} ({:.1} MiB from {:.1} MiB; {} of {} tensors quantized: {}) in {:.1} s",
            a.output.display(),
            s.output_bytes as f64 / (1 << 20) as f64,
            s.source_bytes as f64 / (1 << 20) as f64,
            s.quantized,
            s.tensors,
            types.join(", "),
            s.seconds
        );
        if let Some(id) = &rec.id {
            println!("recorded as run {id} (lar runs show {})", &id[..8]);
        }
    }
    Ok(())
}
