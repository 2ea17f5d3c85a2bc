//! `lar finetune BASE DATA.jsonl [-o DIR] ...`: a LoRA trained on the base model's own weights (QLoRA when they
//! are quantized), written to DIR in both forms (PEFT and llama.cpp GGUF) for `lar run/chat/serve --lora DIR`.
//!
//! A progress bar shows the loss, the held-out loss, tokens/s and the time left; a checkpoint is written every
//! `--save-every` steps and on Ctrl-C, and `--resume` continues from it exactly. DIR also gets the run's log
//! (`training_log.json`) and its loss chart (`loss.svg`); the run is recorded in `lar runs` with its settings, the
//! data's sha256, the loss curves and the adapter's files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use lar_models::{Model, ThreadPool};
use lar_tokenizer::Tokenizer;
use lar_train::data::{Encoder, Example};
use lar_train::optim::Schedule;
use lar_train::trainer::{Config, StepLog, Trainer};
use lar_train::{Adapter, Net, adapter::parse_targets};
use serde_json::{Value, json};

use crate::common::{model_path, peak_rss_bytes};
use crate::run::template_source;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The base model: a stored name, a GGUF file, or a Hugging Face directory.
    pub base: String,
    /// Training data, JSONL: `{"messages": [...]}`, `{"prompt", "completion"}` or `{"text"}` per line.
    pub data: PathBuf,
    /// The adapter's directory (PEFT files and adapter.gguf; the log, the chart and checkpoints beside them).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    #[arg(long, default_value_t = 32.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f32,
    /// Projections adapted: a comma list of q,k,v,o,gate,up,down, or all.
    #[arg(long, default_value = "all")]
    pub targets: String,
    /// Passes over the data (unless --steps).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Optimizer steps in all (instead of --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f32,
    /// Steps of linear warmup.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// cosine, linear or constant.
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Tokens per micro-batch (sequences are packed up to it).
    #[arg(long, default_value_t = 2048)]
    pub batch_tokens: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Longest example, in tokens (longer ones are skipped and reported).
    #[arg(long, default_value_t = 1024)]
    pub seq_len: usize,
    /// Memory for blocks' activations kept from each forward for its backward (e.g. 2GiB), so those blocks are
    /// not computed again: faster, the same bits. Default 0: gradient checkpointing for every block (what
    /// `lar plan --finetune` plans).
    #[arg(long)]
    pub activation_memory: Option<String>,
    /// Share of the examples held out for the eval loss.
    #[arg(long, default_value_t = 0.1)]
    pub eval_split: f32,
    /// Held-out examples from another file instead of --eval-split's share of DATA (DATA's format: JSONL, or
    /// plain text with --qat); every example of DATA is then trained on.
    #[arg(long, conflicts_with = "eval_split")]
    pub eval_data: Option<PathBuf>,
    /// Held-out loss every N steps (0: about ten times in the run).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0: only at the end and on Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Continue the run whose checkpoint is in the output directory.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Chat template for chat data (a built-in name or a file); default: the model's own.
    #[arg(long)]
    pub template: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Quantization-aware repair: DATA is plain text, and the adapter learns the --teacher's next-token
    /// distribution over it.
    #[arg(long, requires = "teacher")]
    pub qat: bool,
    /// The teacher for --qat: the same model in higher precision (a stored name, a GGUF file or a Hugging Face
    /// directory).
    #[arg(long, requires = "qat")]
    pub teacher: Option<String>,
    /// The teacher's top tokens kept per position (with --qat).
    #[arg(long, default_value_t = 32)]
    pub top_k: usize,
    /// Do not record this fine-tune as a run.
    #[arg(long)]
    pub no_record: bool,
}

impl Args {
    fn config(&self) -> Result<Config> {
        let schedule: Schedule = self
            .schedule
            .parse()
            .map_err(|e| anyhow!("--schedule: {e}"))?;
        let adamw = lar_train::optim::AdamW {
            weight_decay: self.weight_decay,
            ..Default::default()
        };
        let cfg = Config {
            rank: self.rank,
            alpha: self.alpha,
            dropout: self.dropout,
            targets: parse_targets(&self.targets).map_err(|e| anyhow!("--targets: {e}"))?,
            epochs: self.epochs,
            steps: self.steps,
            lr: self.lr,
            warmup: self.warmup,
            schedule,
            batch_tokens: self.batch_tokens,
            grad_accum: self.grad_accum,
            seq_len: self.seq_len,
            eval_split: self.eval_split,
            seed: self.seed,
            max_grad_norm: self.max_grad_norm,
            adamw,
        };
        cfg.check()?;
        Ok(cfg)
    }
}

/// The default output directory: `<data file stem>-lora` beside the data.
fn default_output(data: &Path) -> PathBuf {
    let stem = data
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("adapter");
    data.with_file_name(format!("{stem}-lora"))
}

pub fn main(a: Args) -> Result<()> {
    lar_train::alloc::keep_freed_memory();
    let cfg = a.config()?;
    let threads =
        lar_engine::load::check_threads(a.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let out = a.output.clone().unwrap_or_else(|| default_output(&a.data));
    let ckpt = out.join("checkpoint");
    if a.resume && !ckpt.join(lar_train::checkpoint::STATE).exists() {
        return Err(anyhow!("--resume: no checkpoint in {}", ckpt.display()));
    }
    let src = model_path(&a.base)?;
    let file = lar_models::open_model(&src).with_context(|| format!("reading {}", a.base))?;
    let model = Model::from_gguf(Arc::new(file)).with_context(|| format!("loading {}", a.base))?;
    let tok = Tokenizer::from_gguf(&model.file)?;
    let template = match template_source(&a.template)? {
        Some(t) => Some(t),
        None => model
            .file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    };
    let text = read_text(&a.data)?;
    let eval_text = a.eval_data.as_deref().map(read_text).transpose()?;
    let data_sha = lar_lab::audit::sha256_hex(text.as_bytes());
    let eval_sha = eval_text
        .as_ref()
        .map(|t| lar_lab::audit::sha256_hex(t.as_bytes()));
    // What a checkpoint must have been trained on to be resumed: the data, and the held-out file if any.
    let ckpt_sha = match &eval_sha {
        Some(e) => lar_lab::audit::sha256_hex(format!("{data_sha} {e}").as_bytes()),
        None => data_sha.clone(),
    };
    let pool = ThreadPool::new(threads);
    let eval_path = a.eval_data.clone().unwrap_or_default();
    // The training examples, the held-out ones from --eval-data, and (--qat) what the teacher said of each.
    let (examples, taught, held) = match &a.teacher {
        Some(teacher) if a.qat => {
            let t = crate::finetune_qat::Teacher::load(teacher, &model)?;
            // Two chunks at least, one of them held out, unless the held-out text is another file.
            let min = if eval_text.is_some() { 1 } else { 2 };
            let (e, tt) = t.examples("the text", &tok, &text, cfg.seq_len, a.top_k, min, &pool)?;
            let held = match &eval_text {
                Some(x) => {
                    let what = eval_path.display().to_string();
                    Some(t.examples(&what, &tok, x, cfg.seq_len, a.top_k, 1, &pool)?)
                }
                None => None,
            };
            (e, Some(tt), held)
        }
        _ => {
            let read =
                |path: &Path, x: &str| read_jsonl(path, &tok, template.as_deref(), x, cfg.seq_len);
            let held = match &eval_text {
                Some(x) => Some((read(&eval_path, x)?, Vec::new())),
                None => None,
            };
            (read(&a.data, &text)?, None, held)
        }
    };
    let mut net = Net::new(&model, &pool);
    if let Some(m) = &a.activation_memory {
        let bytes =
            lar_plan::size::parse_bytes(m).map_err(|e| anyhow!("--activation-memory: {e}"))?;
        net.keep_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    let (mut tr, held_taught) = match held {
        Some((h, ht)) => (Trainer::with_eval(net, cfg.clone(), examples, h)?, Some(ht)),
        None => (Trainer::new(net, cfg.clone(), examples)?, None),
    };
    // What the teacher said of the held-out examples (their lines index it).
    let taught = taught.map(|t| held_taught.unwrap_or(t));
    let mut history = json!({"train": [], "eval": []});
    if a.resume {
        history = tr.resume(&ckpt, &ckpt_sha)?;
        eprintln!("resuming at step {} of {}", tr.step, tr.total_steps());
    }
    eprintln!(
        "fine-tuning {} on {} examples ({} held out): {} steps, rank {}, {} trainable parameters, {threads} threads",
        a.base,
        tr.n_train(),
        tr.n_eval(),
        tr.total_steps(),
        cfg.rank,
        tr.adapter.n_params()
    );
    let mut rec = crate::record::Recording::start(
        !a.no_record,
        "finetune",
        &a.base,
        &src,
        json!({"data": a.data.display().to_string(), "data_sha256": data_sha, "config": cfg,
               "eval_data": a.eval_data.as_ref().map(|p| p.display().to_string()),
               "eval_data_sha256": eval_sha, "resumed_at": a.resume.then_some(tr.step), "threads": threads}),
        threads,
        "cpu",
    );
    rec.lineage(
        json!({"source": a.base, "source_sha256": rec.model_sha256(), "data_sha256": data_sha}),
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    }
    let before = match &taught {
        Some(_) => {
            let fresh = Adapter::new(&model.hp, cfg.rank, cfg.alpha, &cfg.targets, cfg.seed)?;
            Some(crate::finetune_qat::measure(
                &Net::new(&model, &pool),
                &fresh,
                tr.eval_examples(),
            )?)
        }
        None => None,
    };
    let result = train(
        &a,
        &mut tr,
        &mut history,
        &ckpt,
        &ckpt_sha,
        &interrupted,
        &rec,
    );
    let finished = result.is_ok() && tr.is_done();
    let written = result.and_then(|summary| {
        tr.save_checkpoint(&ckpt, &ckpt_sha, history.clone())?;
        let hp = &model.hp;
        tr.adapter
            .to_lora(hp, Some(a.base.clone()))
            .write_dir(&out, hp)?;
        write_log(&out, &history, &a.base)?;
        Ok(summary)
    });
    for f in ["adapter_model.safetensors", "adapter.gguf", "loss.svg"] {
        rec.artifact(&out.join(f));
    }
    let mut repair = None;
    if let (Some(before), Some(taught), Ok(_)) = (before, &taught, &written) {
        let after = crate::finetune_qat::measure(
            &Net::new(&model, &pool),
            &tr.adapter,
            tr.eval_examples(),
        )?;
        repair = Some(crate::finetune_qat::report(
            before,
            after,
            tr.eval_examples(),
            taught,
        ));
    }
    let metrics: Vec<(&str, f64)> = match &written {
        Ok(s) => {
            let mut m = vec![
                ("loss", s.loss as f64),
                ("tokens_per_s", s.tokens_per_s as f64),
            ];
            if let Some(e) = s.eval_loss {
                m.push(("eval_loss", e as f64));
            }
            if let Some(r) = peak_rss_bytes() {
                m.push(("peak_rss_bytes", r as f64));
            }
            m.extend(repair.iter().flat_map(|r| r.1.iter().copied()));
            m
        }
        Err(_) => Vec::new(),
    };
    let written = written.and_then(|s| {
        if finished {
            Ok(s)
        } else {
            Err(anyhow!(
                "interrupted at step {} of {}: the checkpoint is in {}; continue with --resume",
                tr.step,
                tr.total_steps(),
                ckpt.display()
            ))
        }
    });
    rec.finish(&written, &metrics);
    let s = written?;
    if let Some((line, _)) = &repair {
        println!("{line}");
    }
    let peak = peak_rss_bytes()
        .map(|b| format!(", peak memory {:.1} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    println!(
        "adapter written to {} (loss {:.4}{}, {:.0} tokens/s{peak}); use it with `lar run {} --lora {}`",
        out.display(),
        s.loss,
        s.eval_loss
            .map(|e| format!(", held-out loss {e:.4}"))
            .unwrap_or_default(),
        s.tokens_per_s,
        a.base,
        out.display()
    );
    Ok(())
}

/// A data file's text: refused, naming the first bad byte, when it is not UTF-8.
fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{}: not UTF-8 text (at byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The examples of a JSONL file, what was skipped reported.
fn read_jsonl(
    path: &Path,
    tok: &Tokenizer,
    template: Option<&str>,
    text: &str,
    seq_len: usize,
) -> Result<Vec<Example>> {
    let enc = Encoder::new(tok, template)?;
    let (examples, skipped) = enc
        .read(text, seq_len)
        .with_context(|| format!("reading {}", path.display()))?;
    if !skipped.too_long.is_empty() {
        let lines: Vec<String> = skipped
            .too_long
            .iter()
            .map(|(l, n)| format!("{l} ({n} tokens)"))
            .collect();
        eprintln!(
            "{}: skipped {} examples longer than --seq-len {}: lines {}",
            path.display(),
            lines.len(),
            seq_len,
            lines.join(", ")
        );
    }
    if !skipped.no_loss.is_empty() {
        eprintln!(
            "{}: skipped {} examples with nothing to train on (no assistant turn or empty completion): lines {:?}",
            path.display(),
            skipped.no_loss.len(),
            skipped.no_loss
        );
    }
    Ok(examples)
}

/// The end of a run.
struct Summary {
    loss: f32,
    eval_loss: Option<f32>,
    tokens_per_s: f32,
}

/// Steps until the plan is done or Ctrl-C; the history grows as it goes.
fn train(
    a: &Args,
    tr: &mut Trainer,
    history: &mut Value,
    ckpt: &Path,
    data_sha: &str,
    interrupted: &AtomicBool,
    rec: &crate::record::Recording,
) -> Result<Summary> {
    let total = tr.total_steps();
    let eval_every = if a.eval_every > 0 {
        a.eval_every
    } else {
        total.div_ceil(10).max(1)
    };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "finetune {bar:30} {pos}/{len} steps {msg} [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(tr.step as u64);
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut last: Option<StepLog> = None;
    let mut eval_loss = None;
    while !tr.is_done() && !interrupted.load(Ordering::SeqCst) {
        let log = tr.step()?;
        tokens += log.tokens;
        rec.step("loss", log.step as i64, log.loss as f64);
        if let Some(list) = history["train"].as_array_mut() {
            list.push(json!(log));
        }
        if log.step % eval_every == 0 || tr.is_done() {
            eval_loss = tr.eval_loss()?;
            if let Some(e) = eval_loss {
                rec.step("eval_loss", log.step as i64, e as f64);
                if let Some(list) = history["eval"].as_array_mut() {
                    list.push(json!({"step": log.step, "loss": e}));
                }
            }
        }
        if a.save_every > 0 && log.step % a.save_every == 0 && !tr.is_done() {
            tr.save_checkpoint(ckpt, data_sha, history.clone())?;
        }
        let tps = tokens as f32 / t0.elapsed().as_secs_f32().max(1e-3);
        bar.set_position(log.step as u64);
        bar.set_message(format!(
            "loss {:.4}{} {tps:.0} tok/s",
            log.loss,
            eval_loss
                .map(|e| format!(" eval {e:.4}"))
                .unwrap_or_default()
        ));
        last = Some(log);
    }
    bar.finish_and_clear();
    let loss = last.as_ref().map_or(f32::NAN, |l| l.loss);
    Ok(Summary {
        loss,
        eval_loss,
        tokens_per_s: tokens as f32 / t0.elapsed().as_secs_f32().max(1e-3),
    })
}

/// `training_log.json` and `loss.svg` in the output directory.
fn write_log(out: &Path, history: &Value, base: &str) -> Result<()> {
    let curve = |key: &str| -> Vec<(f64, f64)> {
        history[key]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|p| Some((p["step"].as_f64()?, p["loss"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut series = vec![("training loss".to_string(), curve("train"))];
    let eval = curve("eval");
    if !eval.is_empty() {
        series.push(("held-out loss".to_string(), eval));
    }
    let svg = lar_lab::chart::lines(
        &format!("Fine-tune of {base}"),
        "step",
        "loss (nats/token)",
        &series,
    );
    lar_formats::lora::write_atomic(&out.join("loss.svg"), svg.as_bytes())?;
    let json = serde_json::to_vec_pretty(history)?;
    lar_formats::lora::write_atomic(&out.join("training_log.json"), &json)?;
    Ok(())
}
