//! `lar plan MODEL`: what running (or fine-tuning) a model takes on this machine, from the model's tensor table,
//! and whether it fits; `--explain` says where each figure comes from, `--json` gives them to programs. (The gate
//! every load passes is `lar_plan::gate`.)

use anyhow::Result;
use lar_plan::finetune::{self, Method, Trainer};
use lar_plan::size::{fmt_bytes, parse_bytes};
use lar_plan::{KvType, ModelInfo, Plan, Request, SwaCache};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file, a model directory, a store name, or `hf:ORG/REPO[:QUANT][@REVISION]` (planned from the
    /// remote file's header, read with an HTTP Range request; without a quant, every GGUF of the repository is
    /// planned and the best that fits is recommended).
    pub model: String,
    /// Context length per sequence; default: the largest that fits, capped by the model's own.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Sequences served at once, each with its own context.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// How the KV cache is stored (Lar stores f16; q8_0 and q4_0 as llama.cpp's `--cache-type-k/v`).
    #[arg(long, default_value_t = KvType::F16)]
    pub kv_type: KvType,
    /// What sliding-window layers cache: the whole context (Lar) or only their window (llama.cpp's default).
    #[arg(long, default_value_t = SwaCache::Full)]
    pub swa: SwaCache,
    /// GPU memory to plan for (e.g. 8GiB); default: the free memory of the first GPU found, else none.
    #[arg(long, value_parser = parse_bytes)]
    pub gpu_mem: Option<u64>,
    /// RAM to plan for; default: available RAM (or LAR_MEMORY_LIMIT, or a cgroup limit).
    #[arg(long, value_parser = parse_bytes)]
    pub ram: Option<u64>,
    /// Say where each figure comes from.
    #[arg(long)]
    pub explain: bool,
    /// One JSON object (total_bytes, weights_bytes, kv_bytes, compute_bytes, overhead_bytes, max_ctx, gpu_layers,
    /// ...).
    #[arg(long)]
    pub json: bool,
    /// Plan fine-tuning instead: LoRA over 16-bit weights or QLoRA over 4-bit ones.
    #[arg(long)]
    pub finetune: Option<Method>,
    /// LoRA rank (with --finetune).
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Training sequence length (with --finetune).
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Sequences per training step (with --finetune).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Keep every layer's activations instead of recomputing them (with --finetune --trainer peft).
    #[arg(long)]
    pub no_checkpointing: bool,
    /// Whose training loop to plan for (with --finetune): lar (`lar finetune`) or peft (PyTorch + PEFT).
    #[arg(long, default_value = "lar")]
    pub trainer: Trainer,
}

/// The RAM budget: a flag, else what the machine (or `LAR_MEMORY_LIMIT`, or a cgroup) allows.
fn ram_budget(flag: Option<u64>) -> Result<(u64, String)> {
    if let Some(b) = flag {
        return Ok((b, "--ram".into()));
    }
    let b = lar_plan::budget::ram_budget()?;
    Ok((b.bytes, b.source))
}

pub(crate) fn request(args: &Args) -> Result<(Request, String, String)> {
    let (ram, ram_source) = ram_budget(args.ram)?;
    let hw = lar_plan::hw::detect(&lar_store::default_home());
    let (gpu, gpu_source) = match args.gpu_mem {
        Some(b) => (b, "--gpu-mem".to_string()),
        None => match hw
            .gpus
            .iter()
            .find_map(|g| Some((g.free_bytes?, g.name.clone())))
        {
            Some((b, name)) => (b, format!("free memory of {name}")),
            None => (0, "no GPU with known free memory".into()),
        },
    };
    let mut r = Request::new(ram);
    r.ctx = args.ctx;
    r.parallel = args.parallel;
    r.kv_type = args.kv_type;
    r.swa = args.swa;
    r.gpu_budget = gpu;
    r.check()
        .map_err(|e| anyhow::anyhow!("--ctx/--parallel: {e}"))?;
    r.bandwidth = Some(lar_plan::budget::memory_bandwidth(hw.physical_cores));
    Ok((r, ram_source, gpu_source))
}

pub fn main(args: Args) -> Result<()> {
    if let Some(src) = args.model.strip_prefix("hf:") {
        return crate::plan_remote::main(src, &args);
    }
    let path = crate::common::model_path(&args.model)?;
    let file = lar_models::open_model(&path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let info = ModelInfo::from_gguf(&file)?;
    report(&args.model, &info, &args)
}

/// Plans one model and prints the plan (or the fine-tuning plan) as asked.
pub fn report(name: &str, info: &ModelInfo, args: &Args) -> Result<()> {
    if let Some(method) = args.finetune {
        if args.trainer == Trainer::Lar && args.no_checkpointing {
            anyhow::bail!(
                "--no-checkpointing: `lar finetune` always recomputes each layer (plan a PyTorch trainer with --trainer peft)"
            );
        }
        let p = finetune::plan(
            info,
            &finetune::Request {
                trainer: args.trainer,
                method,
                rank: args.rank,
                seq_len: args.seq_len,
                batch: args.batch,
                checkpointing: !args.no_checkpointing,
            },
        );
        if args.json {
            println!("{}", serde_json::to_string_pretty(&p)?);
            return Ok(());
        }
        println!("{name}: {}", summary(info));
        println!(
            "fine-tuning with {:?} ({}), rank {}, sequence {} x batch {}{}:",
            method,
            match args.trainer {
                Trainer::Lar => "lar finetune",
                Trainer::Peft => "PyTorch + PEFT",
            },
            p.rank,
            p.seq_len,
            p.batch,
            if p.checkpointing {
                ", gradient checkpointing"
            } else {
                ""
            }
        );
        print_lines(&p.lines, args.explain);
        println!("  {:<22}{:>12}", "total", fmt_bytes(p.total_bytes));
        return Ok(());
    }
    let (r, ram_source, gpu_source) = request(args)?;
    let p = lar_plan::plan(info, &r);
    if args.json {
        let mut v = serde_json::to_value(&p)?;
        v["model"] = name.into();
        v["model_info"] = serde_json::to_value(info)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{name}: {}", summary(info));
    print_plan(info, &p, args.explain, &ram_source, &gpu_source);
    Ok(())
}

/// One line: architecture, size, main type, context.
pub fn summary(info: &ModelInfo) -> String {
    format!(
        "{}, {:.1}M parameters, mostly {}, {} on disk, trained context {}",
        info.arch,
        info.n_params as f64 / 1e6,
        info.main_type(),
        fmt_bytes(info.file_bytes),
        info.ctx_train
    )
}

fn print_lines(lines: &[lar_plan::plan::Line], explain: bool) {
    for l in lines {
        println!("  {:<22}{:>12}", l.what, fmt_bytes(l.bytes));
        if explain {
            println!("{}", wrap(&l.why, 6, 110));
        }
    }
}

fn print_plan(info: &ModelInfo, p: &Plan, explain: bool, ram_source: &str, gpu_source: &str) {
    println!(
        "at context {} x {} sequence(s), KV cache {}:",
        p.ctx,
        p.parallel,
        p.kv_type.name()
    );
    let (main, bound) = p.lines.split_at(p.lines.len().min(4));
    print_lines(main, explain);
    println!("  {:<22}{:>12}", "total", fmt_bytes(p.total_bytes));
    let verdict = if p.fits { "fits" } else { "DOES NOT FIT" };
    println!(
        "  {verdict}: {} in RAM of {} ({ram_source}){}",
        fmt_bytes(p.cpu_bytes),
        fmt_bytes(p.ram_budget),
        if p.gpu_budget > 0 {
            format!(
                ", {} on the GPU of {} ({gpu_source})",
                fmt_bytes(p.gpu_bytes),
                fmt_bytes(p.gpu_budget)
            )
        } else {
            String::new()
        }
    );
    if p.gpu_budget > 0 {
        println!(
            "  GPU layers: {} of {} (from the last layer down{})",
            p.gpu_layers,
            info.n_layers,
            if p.gpu_layers == info.n_layers && p.gpu_bytes > 0 {
                ", output layer too if it fit"
            } else {
                ""
            }
        );
    }
    match p.max_ctx {
        0 => println!("  no context fits these budgets"),
        c if c >= info.ctx_train => println!("  largest context: {c} (the model's own)"),
        c => println!("  largest context that fits: {c}"),
    }
    if let (Some(a), Some(b)) = (p.decode_tps, p.decode_tps_full) {
        println!("  decode: at most {a:.0} tokens/s with an empty context, {b:.0} with a full one");
    }
    if explain {
        for l in bound {
            println!("{}", wrap(&l.why, 6, 110));
        }
    }
}

/// Word-wraps `text` at `width` columns, indented by `indent`.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + w.len() > width {
            out.push_str(&" ".repeat(indent));
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    out.push_str(&" ".repeat(indent));
    out.push_str(&line);
    out
}
