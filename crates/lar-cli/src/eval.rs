//! `lar eval perplexity MODEL FILE [--ctx 512] [--chunks N]`: a model's perplexity on a text, measured as
//! llama-perplexity does (lar_lab::perplexity), with a progress bar showing the running estimate. `lar eval choice
//! MODEL TASKS.jsonl`: multiple-choice accuracy by log-likelihood (lar_lab::choice). `--json` prints one object.
//! Every evaluation is recorded as a run (`lar runs`).

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
    /// Multiple-choice accuracy (JSONL: context, choices, answer) by log-likelihood: acc, acc_norm, acc_token.
    Choice(ChoiceArgs),
    /// Models side by side (quantizations of one model, say): size, prompt and generation speed, perplexity on a
    /// text; a table, and a chart of size against perplexity.
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Two or more models (files, directories or stored names).
    #[arg(required = true, num_args = 2..)]
    pub models: Vec<String>,
    /// The text for the perplexity.
    #[arg(long)]
    pub text: PathBuf,
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx: usize,
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Prompt tokens and generated tokens for the speeds (as `lar bench -p -n`).
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: usize,
    #[arg(short = 'n', long, default_value_t = 64)]
    pub n_gen: usize,
    #[arg(short = 'r', long, default_value_t = 2)]
    pub reps: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the chart of size against perplexity here (`.svg` or `.png`).
    #[arg(long)]
    pub chart: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Do not record the measurements as runs.
    #[arg(long)]
    pub no_record: bool,
}

#[derive(clap::Args, Debug)]
pub struct ChoiceArgs {
    /// A .gguf file, a directory holding one, or a stored model's name.
    pub model: String,
    /// The questions: JSONL with context, choices and answer (HellaSwag, ARC and MMLU shapes are read too).
    pub tasks: PathBuf,
    /// Only the first N questions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Longest question with a choice, in tokens.
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print one JSON object (the accuracies and every question's scores).
    #[arg(long)]
    pub json: bool,
    /// Do not record this evaluation as a run.
    #[arg(long)]
    pub no_record: bool,
}

#[derive(clap::Args, Debug)]
pub struct PplArgs {
    /// A .gguf file, a directory holding one, or a stored model's name.
    pub model: String,
    /// The text (UTF-8), at least two contexts long once tokenized.
    pub file: PathBuf,
    /// Tokens per chunk (default 512; with --kl-base, the reference's).
    #[arg(short = 'c', long)]
    pub ctx: Option<usize>,
    /// Save this model's predictions (the top tokens of every scored position) as the reference for KL
    /// divergence: later runs compare with it by --kl-base.
    #[arg(long, conflicts_with = "kl_base")]
    pub save_logits: Option<PathBuf>,
    /// Compare with a reference saved by --save-logits, as llama-perplexity --kl-divergence does: KL divergence
    /// (mean, percentiles), same top token, delta-p, perplexity ratio.
    #[arg(long)]
    pub kl_base: Option<PathBuf>,
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
        Cmd::Choice(a) => choice(a),
        Cmd::Compare(a) => compare(a),
    }
}

/// One model's row of `lar eval compare`.
#[derive(serde::Serialize)]
struct Row {
    model: String,
    bytes: u64,
    prompt_tps: f64,
    gen_tps: f64,
    perplexity: f64,
    stderr: f64,
    /// Mean KL divergence from the reference (the largest file) and how often both pick the same top token;
    /// `None` for the reference itself and for a model whose vocabulary differs.
    kld: Option<f64>,
    same_top: Option<f64>,
    reference: bool,
    run: Option<String>,
}

fn compare(a: CompareArgs) -> Result<()> {
    let text = read_text(&a.text)?;
    // The largest file is the reference the others' KL divergence is measured from: it is measured first.
    let paths = a
        .models
        .iter()
        .map(|m| crate::common::model_path(m))
        .collect::<Result<Vec<_>>>()?;
    let size = |i: usize| std::fs::metadata(&paths[i]).map_or(0, |x| x.len());
    let mut order: Vec<usize> = (0..a.models.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(i)));
    let mut reference: Option<lar_lab::kld::Reference> = None;
    let mut rows = Vec::with_capacity(a.models.len());
    for (n, &i) in order.iter().enumerate() {
        let m = &a.models[i];
        eprintln!("[{}/{}] {m}", n + 1, a.models.len());
        let ctx = (a.ctx + 1).max(a.n_prompt.max(a.n_gen) + 4);
        let (engine, path, threads) = load(m, ctx, 2, a.threads, "cpu")?;
        let rec = Recording::start(
            !a.no_record,
            "eval.compare",
            m,
            &path,
            json!({"text": a.text.display().to_string(), "ctx": a.ctx, "chunks": a.chunks,
                   "n_prompt": a.n_prompt, "n_gen": a.n_gen, "threads": threads}),
            threads,
            &engine.model().device,
        );
        let opts = Options {
            ctx: a.ctx,
            chunks: a.chunks,
        };
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("  perplexity {msg} {bar:30} {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut progress = |done: usize, total: usize, est: f64| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{est:.4}"));
        };
        let is_reference = reference.is_none();
        let result = crate::bench::speeds(&engine, a.n_prompt, a.n_gen, a.reps.max(1), false)
            .and_then(|(pp, tg)| {
                let (p, kld) = match &reference {
                    None => {
                        let (p, r) =
                            lar_lab::kld::measure_reference(&engine, &text, opts, &mut progress)?;
                        reference = Some(r);
                        (p, None)
                    }
                    Some(r) if lar_lab::kld::comparable(&engine, &text, r) => {
                        let (p, k) =
                            lar_lab::kld::measure_against(&engine, &text, r, &mut progress)?;
                        (p, Some(k))
                    }
                    Some(_) => (
                        perplexity::measure(&engine, &text, opts, &mut progress)?,
                        None,
                    ),
                };
                Ok((pp.median, tg.median, p, kld))
            });
        bar.finish_and_clear();
        let metrics = result.as_ref().map_or(Vec::new(), |(pp, tg, p, k)| {
            let mut m = vec![
                ("prompt_tps", *pp),
                ("gen_tps", *tg),
                ("perplexity", p.perplexity),
                ("stderr", p.stderr),
            ];
            if let Some(k) = k {
                m.extend([("kld_mean", k.kld_mean), ("same_top", k.same_top)]);
            }
            m
        });
        rec.finish(&result, &metrics);
        let (pp, tg, p, kld) = result?;
        rows.push(Row {
            model: m.clone(),
            bytes: std::fs::metadata(&path).map_or(0, |x| x.len()),
            prompt_tps: pp,
            gen_tps: tg,
            perplexity: p.perplexity,
            stderr: p.stderr,
            kld: kld.as_ref().map(|k| k.kld_mean),
            same_top: kld.as_ref().map(|k| k.same_top),
            reference: is_reference,
            run: rec.id.clone(),
        });
    }
    // Back in the order given.
    let mut by_given: Vec<(usize, Row)> = order.into_iter().zip(rows).collect();
    by_given.sort_by_key(|(i, _)| *i);
    let rows: Vec<Row> = by_given.into_iter().map(|(_, r)| r).collect();
    let best = rows
        .iter()
        .map(|r| r.perplexity)
        .fold(f64::INFINITY, f64::min);
    if let Some(out) = &a.chart {
        let points: Vec<(String, f64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    short_name(&r.model),
                    r.bytes as f64 / (1 << 20) as f64,
                    r.perplexity,
                )
            })
            .collect();
        let svg =
            lar_lab::chart::scatter("Size and perplexity", "size (MiB)", "perplexity", &points);
        lar_lab::chart_file::write(out, &svg)?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "| model | size (MiB) | prompt t/s | gen t/s | perplexity | vs best | KLD vs largest | same top token |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let (kld, top) = match (r.reference, r.kld, r.same_top) {
            (true, _, _) => ("reference".to_string(), "reference".to_string()),
            (_, Some(k), Some(t)) => (format!("{k:.5}"), format!("{:.2}%", t * 100.0)),
            _ => ("other vocabulary".to_string(), "-".to_string()),
        };
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.4} +/- {:.4} | {:+.2}% | {kld} | {top} |",
            short_name(&r.model),
            r.bytes as f64 / (1 << 20) as f64,
            r.prompt_tps,
            r.gen_tps,
            r.perplexity,
            r.stderr,
            (r.perplexity / best - 1.0) * 100.0
        );
    }
    if let Some(out) = &a.chart {
        println!("chart: {}", out.display());
    }
    Ok(())
}

/// A model's file name (or its name as given).
fn short_name(m: &str) -> String {
    std::path::Path::new(m)
        .file_name()
        .map_or(m.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The model named `model` loaded with a context of `ctx` and room for `parallel` sequences; its file's path.
fn load(
    model: &str,
    ctx: usize,
    parallel: usize,
    threads: usize,
    device: &str,
) -> Result<(lar_engine::EngineHandle, PathBuf, usize)> {
    let threads =
        lar_engine::load::check_threads(threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let device: Device = device.parse().map_err(|e| anyhow!("--device: {e}"))?;
    let path = model_path(model)?;
    let file = Arc::new(lar_models::open_model(&path)?);
    gate(
        &file,
        Load {
            ctx: Some(ctx),
            parallel,
            ..Load::default()
        },
    )?;
    let cfg = EngineConfig {
        ctx: Some(ctx),
        threads,
        device,
        parallel,
        ..Default::default()
    };
    let engine =
        lar_engine::from_file(file, &cfg).with_context(|| format!("loading {}", path.display()))?;
    Ok((engine, path, threads))
}

pub fn read_text(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| anyhow!("{} is not UTF-8 text ({e})", path.display()))
}

fn choice(a: ChoiceArgs) -> Result<()> {
    let text = read_text(&a.tasks)?;
    let mut items = lar_lab::choice::parse_tasks(&text)
        .with_context(|| format!("reading {}", a.tasks.display()))?;
    if let Some(n) = a.limit {
        items.truncate(n.max(1));
    }
    let (engine, path, threads) = load(&a.model, a.ctx, 4, a.threads, &a.device)?;
    let rec = Recording::start(
        !a.no_record,
        "eval.choice",
        &a.model,
        &path,
        json!({"tasks": a.tasks.display().to_string(), "questions": items.len(), "threads": threads}),
        threads,
        &engine.model().device,
    );
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("questions {bar:30} {pos}/{len}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let result = lar_lab::choice::evaluate(&engine, &items, &mut |done, _| {
        bar.set_position(done as u64)
    })
    .map_err(anyhow::Error::from);
    bar.finish_and_clear();
    let metrics = result.as_ref().map_or(Vec::new(), |r| {
        vec![
            ("acc", r.acc.value),
            ("acc_stderr", r.acc.stderr),
            ("acc_norm", r.acc_norm.value),
            ("acc_norm_stderr", r.acc_norm.stderr),
            ("acc_token", r.acc_token.value),
            ("acc_token_stderr", r.acc_token.stderr),
            ("questions", r.tasks as f64),
            ("seconds", r.seconds),
        ]
    });
    rec.finish(&result, &metrics);
    let r = result?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["run"] = json!(rec.id);
        println!("{v}");
    } else {
        println!("| metric | value | stderr |\n|---|---|---|");
        for (k, acc) in [
            ("acc", r.acc),
            ("acc_norm", r.acc_norm),
            ("acc_token", r.acc_token),
        ] {
            println!("| {k} | {:.4} | {:.4} |", acc.value, acc.stderr);
        }
        println!("{} questions in {:.1} s", r.tasks, r.seconds);
        if let Some(id) = &rec.id {
            println!("recorded as run {id} (lar runs show {})", &id[..8]);
        }
    }
    Ok(())
}

fn perplexity(a: PplArgs) -> Result<()> {
    let text = read_text(&a.file)?;
    let reference = a
        .kl_base
        .as_deref()
        .map(lar_lab::kld::Reference::load)
        .transpose()?;
    let opts = match &reference {
        Some(r) => {
            if a.ctx.is_some_and(|c| c != r.ctx) || a.chunks.is_some_and(|c| c != r.chunks) {
                anyhow::bail!(
                    "the reference was measured with --ctx {} --chunks {}: leave them out, or give those",
                    r.ctx,
                    r.chunks
                );
            }
            Options {
                ctx: r.ctx,
                chunks: Some(r.chunks),
            }
        }
        None => Options {
            ctx: a.ctx.unwrap_or(512),
            chunks: a.chunks,
        },
    };
    // Each chunk and the one token sampled after it; two chunks in flight.
    let (engine, path, threads) = load(&a.model, opts.ctx + 1, 2, a.threads, &a.device)?;
    let rec = Recording::start(
        !a.no_record,
        "eval.perplexity",
        &a.model,
        &path,
        json!({"ctx": opts.ctx, "chunks": opts.chunks, "text": a.file.display().to_string(),
               "text_bytes": text.len(), "threads": threads,
               "kl_base": a.kl_base.as_ref().map(|p| p.display().to_string())}),
        threads,
        &engine.model().device,
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("perplexity {msg} {bar:30} {pos}/{len} chunks, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |done: usize, total: usize, est: f64| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("{est:.4}"));
        rec.step("perplexity", done as i64, est);
    };
    let result = match (&reference, &a.save_logits) {
        (Some(r), _) => lar_lab::kld::measure_against(&engine, &text, r, &mut progress)
            .map(|(p, k)| (p, Some(k))),
        (None, Some(out)) => lar_lab::kld::measure_reference(&engine, &text, opts, &mut progress)
            .and_then(|(p, r)| r.save(out).map(|_| (p, None))),
        (None, None) => perplexity::measure(&engine, &text, opts, &mut progress).map(|p| (p, None)),
    }
    .map_err(anyhow::Error::from);
    bar.finish_and_clear();
    let metrics = result.as_ref().map_or(Vec::new(), |(p, k)| {
        let mut m = vec![
            ("perplexity", p.perplexity),
            ("stderr", p.stderr),
            ("tokens", p.tokens as f64),
            ("seconds", p.seconds),
            ("tokens_per_second", p.tokens as f64 / p.seconds.max(1e-9)),
        ];
        if let Some(k) = k {
            m.extend([
                ("kld_mean", k.kld_mean),
                ("kld_p99", k.kld_p99),
                ("same_top", k.same_top),
                ("delta_p_rms", k.delta_p_rms),
                ("ppl_ratio", k.ppl_ratio),
            ]);
        }
        m
    });
    rec.finish(&result, &metrics);
    let (p, kld) = result?;
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        v["run"] = json!(rec.id);
        if let Some(k) = &kld {
            v["kld"] = serde_json::to_value(k)?;
        }
        println!("{v}");
    } else {
        if let Some(k) = &kld {
            println!(
                "KL divergence: mean {:.6} +/- {:.6}, median {:.6}, 90% {:.6}, 99% {:.6}, max {:.6}",
                k.kld_mean, k.kld_stderr, k.kld_median, k.kld_p90, k.kld_p99, k.kld_max
            );
            println!(
                "same top token: {:.3} +/- {:.3} %; delta-p mean {:.3} %, RMS {:.3} %; PPL ratio {:.6} ({:.4} vs {:.4})",
                k.same_top * 100.0,
                k.same_top_stderr * 100.0,
                k.delta_p_mean * 100.0,
                k.delta_p_rms * 100.0,
                k.ppl_ratio,
                k.ppl,
                k.ppl_base
            );
        }
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
        if let Some(out) = &a.save_logits {
            println!(
                "reference saved to {} (compare with --kl-base)",
                out.display()
            );
        }
        if let Some(id) = &rec.id {
            println!("recorded as run {id} (lar runs show {})", &id[..8]);
        }
    }
    Ok(())
}
