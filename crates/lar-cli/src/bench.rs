//! `lar bench MODEL -p 512 -n 128 -r 5`: speed of the engine, measured as llama-bench does: prompt processing of
//! `p` random tokens (in batches of 512) from an empty cache, and generation of `n` tokens one at a time from an
//! empty cache, each repeated `r` times after a warm-up (one full prompt pass and one generated token, as
//! llama-bench); medians, min and max, and peak RSS. Each test is a request through the engine's handle, as any
//! client's would be, so the figures include scheduling, sampling and streaming.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lar_engine::{Device, EngineConfig, Event, Request, physical_cores};
use lar_models::ThreadPool;
use lar_plan::gate::Load;
use lar_types::{FinishReason, SamplingParams};

use crate::bench_profile::Profile;
use crate::common::{gate, model_path, peak_rss_bytes};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file or a directory holding one (not needed with --bandwidth).
    pub model: Option<String>,
    /// Measure memory read bandwidth instead (GB/s with --threads threads over a 1 GiB buffer).
    #[arg(long)]
    pub bandwidth: bool,
    /// Prompt tokens.
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens.
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where the forward pass runs: cpu (our kernels), cuda or cuda:N (a build with `--features cuda`),
    /// candle-cpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
    /// Do not record this bench as a run (`lar runs`).
    #[arg(long)]
    pub no_record: bool,
    /// Also show where each token's time goes: milliseconds per token by kind of operation (matmul, attention,
    /// norms, activation quantization, sampling...) for the prompt and for decode, and the engine's rest.
    #[arg(long)]
    pub profile: bool,
    /// Measure with a LoRA adapter applied (every request runs with it).
    #[command(flatten)]
    pub lora: crate::common::LoraArgs,
}

const UBATCH: usize = 512;

pub(crate) struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

fn stats(mut v: Vec<f64>) -> Stats {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Stats {
        median,
        min: v.first().copied().unwrap_or(0.0),
        max: v.last().copied().unwrap_or(0.0),
    }
}

/// Median read bandwidth in GB/s: the pool's threads sum disjoint parts of a 1 GiB buffer, 5 times. The buffer is
/// advised for huge pages, as the repacked weights are (`quant::panels::Lines`), so the limit it sets is the one
/// decode runs against.
fn bandwidth(threads: usize) -> Result<f64> {
    let pool = ThreadPool::new(threads);
    let words = (1usize << 30) / 8;
    let mut map = memmap2::MmapMut::map_anon(words * 8).context("mapping 1 GiB to read")?;
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    for (i, c) in map.chunks_exact_mut(8).enumerate() {
        c.copy_from_slice(&(i as u64).to_le_bytes());
    }
    // SAFETY: the mapping is page aligned, `words · 8` bytes long, ours alone, and any bytes are valid u64s.
    let buf: &[u64] = unsafe { std::slice::from_raw_parts(map.as_ptr() as *const u64, words) };
    let parts = pool.n_threads();
    let sink = std::sync::atomic::AtomicU64::new(0);
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            pool.run(parts, &|i| {
                let s = lar_models::pool::split(words, parts, i);
                // Eight independent sums: one chain of adds would time the adds, not the memory.
                let lanes = buf[s].chunks_exact(8).fold([0u64; 8], |mut acc, c| {
                    for (a, &b) in acc.iter_mut().zip(c) {
                        *a = a.wrapping_add(b);
                    }
                    acc
                });
                let sum = lanes.iter().fold(0u64, |a, &b| a.wrapping_add(b));
                sink.fetch_add(sum, std::sync::atomic::Ordering::Relaxed);
            });
            (words * 8) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    Ok(rates[2])
}

pub fn main(args: Args) -> Result<()> {
    if args.bandwidth {
        let threads = if args.threads == 0 {
            physical_cores()
        } else {
            args.threads
        };
        let bw = bandwidth(threads)?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"threads": threads, "read_gb_per_s": bw})
            );
        } else {
            println!("read bandwidth with {threads} threads: {bw:.1} GB/s");
        }
        return Ok(());
    }
    let Some(model) = &args.model else {
        bail!("give a model (or --bandwidth)")
    };
    if args.reps == 0 || (args.n_prompt == 0 && args.n_gen == 0) {
        bail!("nothing to measure: give -r >= 1 and -p or -n > 0");
    }
    let threads =
        lar_engine::load::check_threads(args.threads).map_err(|e| anyhow!("--threads: {e}"))?;
    let device: Device = args.device.parse().map_err(|e| anyhow!("--device: {e}"))?;
    let path = model_path(model)?;
    let file = Arc::new(lar_models::open_model(&path)?);
    // Room for the longer test and the token sampled after it.
    let ctx = args.n_prompt.max(args.n_gen) + 4;
    // Planned first, like run and chat: a bench that will not fit is refused with the numbers.
    gate(
        &file,
        Load {
            ctx: Some(ctx),
            ..Load::default()
        },
    )?;
    let cfg = EngineConfig {
        ctx: Some(ctx),
        threads,
        device,
        max_batch_tokens: UBATCH,
        loras: args
            .lora
            .lora
            .iter()
            .map(|p| (crate::common::LoraArgs::NAME.to_string(), p.clone()))
            .collect(),
        ..Default::default()
    };
    // The engine like any other client: the prompt in chunks of 512 through its scheduler, each generated token
    // sampled (greedy) and streamed.
    let engine =
        lar_engine::from_file(file, &cfg).with_context(|| format!("loading {}", path.display()))?;
    let rec = crate::record::Recording::start(
        !args.no_record,
        "bench",
        model,
        &path,
        serde_json::json!({"n_prompt": args.n_prompt, "n_gen": args.n_gen, "repetitions": args.reps,
                           "threads": threads, "lora": args.lora.lora.as_ref().map(|p| p.display().to_string()),
                           "lora_scale": args.lora.lora_scale}),
        threads,
        &engine.model().device,
    );
    let mut prof = args.profile.then(Profile::start);
    let measured = speeds_with(
        &engine,
        (args.n_prompt, args.n_gen, args.reps),
        true,
        prof.as_mut(),
        args.lora.slot(),
    );
    let metrics = match &measured {
        Ok((p, g)) => {
            let mut m = Vec::new();
            if args.n_prompt > 0 {
                m.extend([
                    ("prompt_tps", p.median),
                    ("prompt_tps_min", p.min),
                    ("prompt_tps_max", p.max),
                ]);
            }
            if args.n_gen > 0 {
                m.extend([
                    ("gen_tps", g.median),
                    ("gen_tps_min", g.min),
                    ("gen_tps_max", g.max),
                ]);
            }
            if let Some(r) = peak_rss_bytes() {
                m.push(("peak_rss_bytes", r as f64));
            }
            m
        }
        Err(_) => Vec::new(),
    };
    rec.finish(&measured, &metrics);
    let (p, g) = measured?;
    let rss = peak_rss_bytes();
    if args.json {
        let v = serde_json::json!({
            "model": path.display().to_string(),
            "threads": threads,
            "device": engine.model().device,
            "n_prompt": args.n_prompt,
            "n_gen": args.n_gen,
            "repetitions": args.reps,
            "prompt_tps": p.median,
            "prompt_tps_min": p.min,
            "prompt_tps_max": p.max,
            "gen_tps": g.median,
            "gen_tps_min": g.min,
            "gen_tps_max": g.max,
            "peak_rss_bytes": rss,
            "simd": format!("{:?}", lar_models::quant::simd_level()),
            "profile": prof.as_ref().map(Profile::json),
        });
        println!("{v}");
    } else {
        println!("| model | threads | test | t/s (median) | min | max |");
        println!("|---|---|---|---|---|---|");
        // The model as it was named (a store name, or the file's name), not the blob it resolved to.
        let name = std::path::Path::new(model)
            .file_name()
            .map_or(model.clone(), |n| n.to_string_lossy().into_owned());
        if args.n_prompt > 0 {
            println!(
                "| {name} | {threads} | pp{} | {:.2} | {:.2} | {:.2} |",
                args.n_prompt, p.median, p.min, p.max
            );
        }
        if args.n_gen > 0 {
            println!(
                "| {name} | {threads} | tg{} | {:.2} | {:.2} | {:.2} |",
                args.n_gen, g.median, g.min, g.max
            );
        }
        if let Some(r) = rss {
            println!("peak RSS: {:.1} MiB", r as f64 / (1 << 20) as f64);
        }
        if let Some(p) = &prof {
            println!("\n{}", p.table());
        }
    }
    Ok(())
}

/// Prompt processing of `n_prompt` random tokens and generation of `n_gen`, each `reps` times after a warm-up
/// (see the module's header): medians, min and max in tokens/s; `bar`: show a progress bar.
pub(crate) fn speeds(
    engine: &lar_engine::EngineHandle,
    n_prompt: usize,
    n_gen: usize,
    reps: usize,
    bar: bool,
) -> Result<(Stats, Stats)> {
    speeds_with(engine, (n_prompt, n_gen, reps), bar, None, None)
}

/// [`speeds`], each timed run's operations added to `prof`'s phases where it is given.
fn speeds_with(
    engine: &lar_engine::EngineHandle,
    (n_prompt, n_gen, reps): (usize, usize, usize),
    bar: bool,
    mut prof: Option<&mut Profile>,
    lora: Option<lar_models::LoraSlot>,
) -> Result<(Stats, Stats)> {
    let n_vocab = engine.model().n_vocab;
    let mut rng = lar_engine::sampler::Rng::new(42);
    let mut random_tokens = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % n_vocab as u64) as u32)
            .collect()
    };
    let run = |prompt: Vec<u32>, n: usize| -> Result<lar_types::GenerationStats> {
        let params = SamplingParams {
            ignore_eos: true,
            ..SamplingParams::greedy(n)
        };
        let stream = engine.submit(Request {
            lora,
            ..Request::new(prompt, params)
        })?;
        for ev in stream {
            if let Event::Done(f) = ev {
                return match f.reason {
                    FinishReason::Length => Ok(f.stats),
                    r => Err(anyhow!(
                        "the benchmark's request ended with {r:?}: {}",
                        f.error.unwrap_or_default()
                    )),
                };
            }
        }
        bail!("the engine stopped")
    };
    // Warm-up as llama-bench does it: one full prompt pass and one generated token, so the weights are paged in
    // and the cache blocks allocated before anything is timed.
    run(random_tokens(n_prompt.max(1)), 2)?;
    if prof.is_some() {
        // The warm-up is not measured.
        let _ = lar_models::profile::take();
    }
    let pb = if bar {
        ProgressBar::new((reps * 2) as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message("bench");
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        if n_prompt > 0 {
            // Prompt processing: the time to the first token (the prompt's passes and one sampled token).
            let st = run(random_tokens(n_prompt), 1)?;
            pp.push(st.prompt_tps());
            if let Some(p) = prof.as_deref_mut() {
                p.prompt
                    .add(Duration::from_secs_f64(st.prompt_secs), n_prompt);
            }
        }
        pb.inc(1);
        if n_gen > 0 {
            // Generation: n_gen decode passes after the first token.
            let st = run(random_tokens(1), n_gen + 1)?;
            tg.push(st.gen_tps());
            if let Some(p) = prof.as_deref_mut() {
                // The one-token prompt's pass is a one-token pass like the others: n_gen + 1 of them.
                let wall = Duration::from_secs_f64(st.prompt_secs + st.gen_secs);
                p.decode.add(wall, n_gen + 1);
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((stats(pp), stats(tg)))
}
