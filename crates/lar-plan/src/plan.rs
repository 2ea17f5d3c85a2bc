//! The memory plan: what running a model at a context length takes, split into weights, KV cache, compute buffers
//! and runtime overhead, each figure derived from the model's tensor table and shape and explained in words.
//!
//! The figures model Lar's own CPU runtime (checked against measured peak RSS by `bench/plan-rss.sh`):
//! - weights are memory-mapped; every tensor is read each token except `token_embd` when the output layer has its
//!   own weights (then only the rows of the tokens seen are touched);
//! - the KV cache holds K and V for every layer and cached token (`--kv-type`: f16 as Lar stores it, or q8_0 /
//!   q4_0 as llama.cpp can); sliding-window layers keep either the whole context (`SwaCache::Full`: Lar today,
//!   llama.cpp `--swa-full`) or their window (`SwaCache::Window`: llama.cpp's default);
//! - compute buffers are the activations of one batch of `batch` tokens (the engine's prefill chunk) plus logits;
//! - overhead is the runtime itself, the file's header (metadata and tokenizer, mapped) and the tokenizer's tables.
//!
//! With a GPU budget, layers go to the GPU from the last one down (llama.cpp's `-ngl` order) as long as their
//! weights, their KV and the GPU's compute buffer fit; the output layer follows when every layer does.

use serde::Serialize;

use crate::model::ModelInfo;
use crate::size::fmt_bytes;

/// Runtime memory of the `lar` process before any model: the binary's touched pages, thread stacks, allocator.
/// Measured: a 0.4 MB model with a 64-token vocabulary peaks at 8.8 MB RSS.
pub const RUNTIME_BYTES: u64 = 8 << 20;
/// Memory per vocabulary entry and per BPE merge, as the runtime holds them (metadata strings, the token table, the
/// lookup maps). Measured: Gemma 3's 262 144 tokens take 79 MB, SmolLM2's 49 152 tokens and 48 900 merges 22 MB.
pub const TOKEN_BYTES: u64 = 300;
pub const MERGE_BYTES: u64 = 160;
/// Tokens in one forward pass at most (the engine's prefill chunk; `max_batch_tokens`).
pub const BATCH_TOKENS: usize = 512;
/// Smallest context a plan may pick.
pub const MIN_CTX: usize = 256;

/// How K and V are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KvType {
    F16,
    Q8_0,
    Q4_0,
}

impl std::str::FromStr for KvType {
    type Err = crate::Error;
    /// `f16`, `q8_0` or `q4_0`.
    fn from_str(s: &str) -> crate::Result<Self> {
        [KvType::F16, KvType::Q8_0, KvType::Q4_0]
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| crate::Error::unknown("KV cache type", s, "f16, q8_0, q4_0"))
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl KvType {
    /// Bytes per element: f16 is 2; q8_0 packs 32 values in 34 bytes, q4_0 in 18.
    pub fn bytes_per_32(self) -> u64 {
        match self {
            KvType::F16 => 64,
            KvType::Q8_0 => 34,
            KvType::Q4_0 => 18,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }
}

/// What sliding-window layers cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwaCache {
    /// The whole context, like every other layer (Lar's engine today).
    Full,
    /// Only the window.
    Window,
}

impl std::str::FromStr for SwaCache {
    type Err = crate::Error;
    /// `full` or `window`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "full" => Ok(SwaCache::Full),
            "window" => Ok(SwaCache::Window),
            _ => Err(crate::Error::unknown(
                "sliding-window cache",
                s,
                "full, window",
            )),
        }
    }
}

impl std::fmt::Display for SwaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SwaCache::Full => "full",
            SwaCache::Window => "window",
        })
    }
}

/// What to plan for.
#[derive(Clone, Debug)]
pub struct Request {
    /// Context per sequence; `None`: the largest that fits, capped by the model's own.
    pub ctx: Option<usize>,
    /// Sequences served at once, each with its own context.
    pub parallel: usize,
    pub kv_type: KvType,
    pub swa: SwaCache,
    /// Memory this process may use on the CPU side, and on the GPU (0: none).
    pub ram_budget: u64,
    pub gpu_budget: u64,
    /// Memory bandwidth in bytes/s, for the decode estimate.
    pub bandwidth: Option<f64>,
}

impl Request {
    /// Refuses a context or a number of sequences of 0 (nothing could run).
    pub fn check(&self) -> crate::Result<()> {
        if self.ctx == Some(0) || self.parallel == 0 {
            return Err(crate::Error::Invalid(
                "the context and the number of parallel sequences must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn new(ram_budget: u64) -> Self {
        Self {
            ctx: None,
            parallel: 1,
            kv_type: KvType::F16,
            swa: SwaCache::Full,
            ram_budget,
            gpu_budget: 0,
            bandwidth: None,
        }
    }
}

/// One figure and where it comes from.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub what: String,
    pub bytes: u64,
    pub why: String,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub ctx: usize,
    pub parallel: usize,
    pub kv_type: KvType,
    pub swa: SwaCache,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub compute_bytes: u64,
    pub overhead_bytes: u64,
    pub total_bytes: u64,
    /// Of the total, what goes to the GPU and what stays in RAM.
    pub gpu_bytes: u64,
    pub cpu_bytes: u64,
    pub gpu_layers: usize,
    pub ram_budget: u64,
    pub gpu_budget: u64,
    pub fits: bool,
    /// The largest context (per sequence) that fits these budgets, capped by the model's own; 0 if none does.
    pub max_ctx: usize,
    /// Bytes read per generated token with an empty and with a full context, and the decode speed the memory
    /// bandwidth allows for each.
    pub bytes_per_token: u64,
    pub bytes_per_token_full: u64,
    pub decode_tps: Option<f64>,
    pub decode_tps_full: Option<f64>,
    pub lines: Vec<Line>,
}

/// KV bytes of one token in one layer.
fn kv_token_layer(m: &ModelInfo, kv: KvType) -> u64 {
    (2 * m.kv_dim() as u64 * kv.bytes_per_32()).div_ceil(32)
}

/// Tokens a layer caches for a context of `ctx`.
fn cached_tokens(m: &ModelInfo, swa: SwaCache, swa_layer: bool, ctx: usize) -> u64 {
    match (swa, m.sliding_window) {
        (SwaCache::Window, Some(w)) if swa_layer => ctx.min(w) as u64,
        _ => ctx as u64,
    }
}

/// KV bytes of `layer` for `parallel` sequences of `ctx` tokens.
fn layer_kv(m: &ModelInfo, r: &Request, layer: usize, ctx: usize) -> u64 {
    r.parallel as u64
        * cached_tokens(m, r.swa, m.swa.get(layer).copied().unwrap_or(false), ctx)
        * kv_token_layer(m, r.kv_type)
}

/// Activations of one batch: f32 hidden state, normed copy, Q, K, V, attention output, projection, gate and up,
/// plus the 8-bit copies the quantized matmuls read.
fn activation_bytes(m: &ModelInfo, tokens: usize) -> u64 {
    let (d, q, kv, ff) = (m.n_embd, m.n_head * m.head_dim, m.kv_dim(), m.n_ff);
    tokens as u64 * (4 * (3 * d + 2 * q + 2 * kv + 2 * ff) + 2 * (d + ff)) as u64
}

/// The plan for exactly `ctx` tokens per sequence (no search).
fn plan_at(m: &ModelInfo, r: &Request, ctx: usize) -> Plan {
    let parallel = r.parallel.max(1);
    let batch = BATCH_TOKENS.min(ctx * parallel);
    let resident_embd = if m.tied_output { m.embd_bytes } else { 0 };
    let weights = m.layer_bytes.iter().sum::<u64>() + m.output_bytes + resident_embd;
    let kv: u64 = (0..m.n_layers).map(|l| layer_kv(m, r, l, ctx)).sum();
    let acts = activation_bytes(m, batch);
    // Logits of the last token of each sequence, and the sampler's working copies of them.
    let logits = 3 * 4 * m.n_vocab as u64 * parallel as u64;
    let compute = acts + logits;
    let header = m.file_bytes.saturating_sub(m.tensor_bytes());
    let tokenizer = TOKEN_BYTES * m.vocab_tokens as u64
        + MERGE_BYTES * m.vocab_merges as u64
        + m.tokenizer_json_bytes;
    let overhead = RUNTIME_BYTES + header + tokenizer;
    let total = weights + kv + compute + overhead;

    // GPU split: the GPU's compute buffer (activations and logits of a batch) first, then layers from the top;
    // what moves there (`offloaded`) leaves the CPU side.
    let (mut gpu_layers, mut offloaded) = (0usize, 0u64);
    let gpu_compute = acts + 4 * m.n_vocab as u64 * batch as u64;
    for l in (0..m.n_layers).rev() {
        let need = m.layer_bytes[l] + layer_kv(m, r, l, ctx);
        if gpu_compute + offloaded + need > r.gpu_budget {
            break;
        }
        offloaded += need;
        gpu_layers += 1;
    }
    if gpu_layers == m.n_layers
        && gpu_compute + offloaded + m.output_bytes + resident_embd <= r.gpu_budget
    {
        offloaded += m.output_bytes + resident_embd;
    }
    let gpu = if gpu_layers > 0 {
        gpu_compute + offloaded
    } else {
        0
    };
    let cpu = total - offloaded;
    let fits = cpu <= r.ram_budget && gpu <= r.gpu_budget;

    let per_token = weights + m.embd_bytes / m.n_vocab.max(1) as u64;
    let per_token_full = per_token + kv / parallel as u64;
    let tps = |b: u64| r.bandwidth.map(|bw| bw / b.max(1) as f64);
    let mut lines = explain(
        m,
        r,
        ctx,
        batch,
        [weights, kv, acts, logits, header, tokenizer],
    );
    if let Some(bw) = r.bandwidth {
        lines.push(Line {
            what: "decode speed bound".into(),
            bytes: per_token,
            why: format!(
                "each generated token reads the weights once ({}), plus the KV cache as it fills (up to {} \
                 at {ctx} tokens); at {:.1} GB/s that allows at most {:.0} tokens/s with an empty context and \
                 {:.0} with a full one",
                fmt_bytes(per_token),
                fmt_bytes(per_token_full - per_token),
                bw / 1e9,
                bw / per_token as f64,
                bw / per_token_full as f64
            ),
        });
    }
    Plan {
        ctx,
        parallel,
        kv_type: r.kv_type,
        swa: r.swa,
        weights_bytes: weights,
        kv_bytes: kv,
        compute_bytes: compute,
        overhead_bytes: overhead,
        total_bytes: total,
        gpu_bytes: gpu,
        cpu_bytes: cpu,
        gpu_layers,
        ram_budget: r.ram_budget,
        gpu_budget: r.gpu_budget,
        fits,
        max_ctx: 0,
        bytes_per_token: per_token,
        bytes_per_token_full: per_token_full,
        decode_tps: tps(per_token),
        decode_tps_full: tps(per_token_full),
        lines,
    }
}

/// Plans `m` for `r`: at `r.ctx`, or at the largest context that fits (capped by the model's own, at least
/// [`MIN_CTX`] or the model's own if smaller). `max_ctx` is filled either way.
pub fn plan(m: &ModelInfo, r: &Request) -> Plan {
    let cap = m.ctx_train.max(1);
    let fits = |c: usize| plan_at(m, r, c).fits;
    // Total memory grows with the context: binary search for the largest that fits.
    let max_ctx = if fits(cap) {
        cap
    } else if !fits(1) {
        0
    } else {
        let (mut lo, mut hi) = (1usize, cap);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) { lo = mid } else { hi = mid }
        }
        lo
    };
    let ctx = r.ctx.unwrap_or(if max_ctx >= MIN_CTX.min(cap) {
        // Round a searched context down to a multiple of 256, as people write them.
        if max_ctx == cap {
            cap
        } else {
            max_ctx / 256 * 256
        }
    } else {
        MIN_CTX.min(cap)
    });
    let mut p = plan_at(m, r, ctx.max(1));
    p.max_ctx = max_ctx;
    p
}

fn explain(m: &ModelInfo, r: &Request, ctx: usize, batch: usize, f: [u64; 6]) -> Vec<Line> {
    let [weights, kv, acts, logits, header, tokenizer] = f;
    let layers: u64 = m.layer_bytes.iter().sum();
    let embd = if m.tied_output {
        format!(
            "token_embd {} (also the output layer, so read in full every token)",
            fmt_bytes(m.embd_bytes)
        )
    } else {
        format!(
            "token_embd {} is not counted: only the rows of the tokens seen are read",
            fmt_bytes(m.embd_bytes)
        )
    };
    let types = m
        .by_type
        .iter()
        .map(|t| format!("{} {}", t.ty, fmt_bytes(t.bytes)))
        .collect::<Vec<_>>()
        .join(", ");
    let per = kv_token_layer(m, r.kv_type);
    let swa = match (m.sliding_window, r.swa) {
        (None, _) => String::new(),
        (Some(w), SwaCache::Full) => format!(
            "; {} of the layers slide over a {w}-token window but cache the whole context here (Lar's engine; \
             the `window` sliding-window option plans llama.cpp's windowed cache)",
            m.swa_layers
        ),
        (Some(w), SwaCache::Window) => format!(
            "; {} layers slide over a {w}-token window and cache only min(ctx, {w}) tokens",
            m.swa_layers
        ),
    };
    vec![
        Line {
            what: "weights".into(),
            bytes: weights,
            why: format!(
                "the tensor table: {} layers of {} on average ({} in all), output and norms {}, {embd}; by type: {types}",
                m.n_layers,
                fmt_bytes(layers / m.n_layers.max(1) as u64),
                fmt_bytes(layers),
                fmt_bytes(m.output_bytes)
            ),
        },
        Line {
            what: "KV cache".into(),
            bytes: kv,
            why: format!(
                "K and V of {} KV heads x {} dims = {} values per token per layer, stored as {} ({per} bytes per \
                 token per layer), x {} layers x {ctx} tokens x {} sequence(s){swa}",
                m.n_head_kv,
                m.head_dim,
                2 * m.kv_dim(),
                r.kv_type.name(),
                m.n_layers,
                r.parallel.max(1)
            ),
        },
        Line {
            what: "compute buffers".into(),
            bytes: acts + logits,
            why: format!(
                "activations of a {batch}-token batch (the prefill chunk): f32 hidden, Q ({} wide), K and V ({} \
                 wide), FFN gate and up ({} wide) and their 8-bit copies: {}; logits over {} tokens and the \
                 sampler's copies: {}",
                m.n_head * m.head_dim,
                m.kv_dim(),
                m.n_ff,
                fmt_bytes(acts),
                m.n_vocab,
                fmt_bytes(logits)
            ),
        },
        Line {
            what: "overhead".into(),
            bytes: RUNTIME_BYTES + header + tokenizer,
            why: format!(
                "the runtime {} (binary, threads, allocator), the file's header {} (metadata and vocabulary, \
                 mapped), the tokenizer's tables {} ({} tokens x {TOKEN_BYTES} B + {} merges x {MERGE_BYTES} B, \
                 measured on GGUF vocabularies{})",
                fmt_bytes(RUNTIME_BYTES),
                fmt_bytes(header),
                fmt_bytes(tokenizer),
                m.vocab_tokens,
                m.vocab_merges,
                if m.tokenizer_json_bytes > 0 {
                    format!(
                        ", + the tokenizer.json text {}",
                        fmt_bytes(m.tokenizer_json_bytes)
                    )
                } else {
                    String::new()
                }
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of round numbers to check the arithmetic by hand.
    fn round_model(swa_layers: usize) -> ModelInfo {
        ModelInfo {
            arch: "llama".into(),
            n_layers: 4,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 128,
            n_vocab: 1000,
            ctx_train: 4096,
            sliding_window: (swa_layers > 0).then_some(100),
            swa_layers,
            swa: (0..4).map(|l| l < swa_layers).collect(),
            n_params: 0,
            file_bytes: 1_000_000 + 10_000,
            layer_bytes: vec![200_000; 4],
            embd_bytes: 100_000,
            output_bytes: 100_000,
            tied_output: false,
            by_type: vec![],
            layer_type: "Q4_K".into(),
            head_type: "Q8_0".into(),
            vocab_tokens: 1000,
            vocab_merges: 0,
            tokenizer_json_bytes: 0,
        }
    }

    #[test]
    fn arithmetic_by_hand() {
        let m = round_model(0);
        let mut r = Request::new(u64::MAX);
        r.ctx = Some(1000);
        let p = plan(&m, &r);
        // Untied output: token_embd not resident.
        assert_eq!(p.weights_bytes, 4 * 200_000 + 100_000);
        // 2 (K,V) x 2 heads x 16 dims x 2 bytes = 128 B per token per layer; 4 layers x 1000 tokens.
        assert_eq!(p.kv_bytes, 128 * 4 * 1000);
        // Batch 512: 4 x (3*64 + 2*64 + 2*32 + 2*128) + 2 x (64 + 128) = 2944 B per token; logits 3 x 4 x 1000.
        assert_eq!(p.compute_bytes, 512 * 2944 + 12_000);
        assert_eq!(p.overhead_bytes, RUNTIME_BYTES + 10_000 + 300_000);
        assert_eq!(
            p.total_bytes,
            p.weights_bytes + p.kv_bytes + p.compute_bytes + p.overhead_bytes
        );
        assert!(p.fits);
        assert_eq!(p.max_ctx, 4096);
    }

    #[test]
    fn kv_types_parallel_and_windows() {
        let m = round_model(0);
        let mut r = Request::new(u64::MAX);
        r.ctx = Some(1024);
        r.kv_type = KvType::Q8_0;
        // 64 values per token per layer in q8_0: 64 x 34 / 32 = 68 bytes.
        assert_eq!(plan(&m, &r).kv_bytes, 68 * 4 * 1024);
        r.kv_type = KvType::Q4_0;
        r.parallel = 3;
        assert_eq!(plan(&m, &r).kv_bytes, 36 * 4 * 1024 * 3);
        // Three sliding layers of 100 tokens and one full: windowed cache vs full.
        let m = round_model(3);
        r.kv_type = KvType::F16;
        r.parallel = 1;
        r.swa = SwaCache::Window;
        assert_eq!(plan(&m, &r).kv_bytes, 128 * (1024 + 3 * 100));
        r.swa = SwaCache::Full;
        assert_eq!(plan(&m, &r).kv_bytes, 128 * 4 * 1024);
    }

    #[test]
    fn largest_context_that_fits() {
        let m = round_model(0);
        // Everything but the KV cache, at a context of at least one full batch (512 B of KV per token).
        let base = plan_at(&m, &Request::new(u64::MAX), 512).total_bytes - 512 * 512;
        // Room for exactly 3000 tokens of KV.
        let r = Request::new(base + 512 * 3000);
        let p = plan(&m, &r);
        assert_eq!(p.max_ctx, 3000);
        assert_eq!(p.ctx, 2816, "rounded down to a multiple of 256");
        assert!(p.fits);
        let mut r2 = r.clone();
        r2.ctx = Some(3001);
        let p = plan(&m, &r2);
        assert!(!p.fits);
        assert_eq!(p.max_ctx, 3000);
        // Nothing fits in 1 MB.
        let p = plan(&m, &Request::new(1 << 20));
        assert_eq!((p.max_ctx, p.fits), (0, false));
    }

    #[test]
    fn gpu_split_from_the_top() {
        let m = round_model(0);
        let mut r = Request::new(u64::MAX);
        r.ctx = Some(1000);
        let acts = activation_bytes(&m, 512);
        let gpu_compute = acts + 4 * 1000 * 512;
        let layer = 200_000 + 128 * 1000;
        r.gpu_budget = gpu_compute + 2 * layer + 10;
        let p = plan(&m, &r);
        assert_eq!(p.gpu_layers, 2);
        assert_eq!(p.gpu_bytes, gpu_compute + 2 * layer);
        assert_eq!(p.cpu_bytes, p.total_bytes - 2 * layer);
        // Every layer and the output layer.
        r.gpu_budget = gpu_compute + 4 * layer + 100_000;
        let p = plan(&m, &r);
        assert_eq!((p.gpu_layers, p.gpu_bytes), (4, r.gpu_budget));
        // A budget below the compute buffer offloads nothing.
        r.gpu_budget = gpu_compute / 2;
        assert_eq!(plan(&m, &r).gpu_layers, 0);
    }

    #[test]
    fn decode_bound_from_bandwidth() {
        let m = round_model(0);
        let mut r = Request::new(u64::MAX);
        r.ctx = Some(1000);
        r.bandwidth = Some(1e9);
        let p = plan(&m, &r);
        // Weights read per token: 900 000 + one embedding row (100 000 / 1000).
        assert_eq!(p.bytes_per_token, 900_100);
        assert_eq!(p.bytes_per_token_full, 900_100 + 512_000);
        assert!((p.decode_tps.unwrap() - 1e9 / 900_100.0).abs() < 1e-6);
    }
}
