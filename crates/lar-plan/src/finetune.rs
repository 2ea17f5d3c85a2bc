//! Memory for fine-tuning with LoRA (a 16-bit frozen base) or QLoRA (a 4-bit base), for two trainers:
//! - Lar's own (`lar finetune`, the default): the model file's weights as they are (mapped, as inference reads
//!   them), the adapter (fp32) with its gradient and AdamW's two moments, each block's input kept for the
//!   recomputation (always on), one block's activations and the backward's temporaries in f32, the attention
//!   probabilities of one block, one projection's LoRA dropout input (masks are made again, not kept), logits for
//!   a few rows at a time, and the runtime. Checked against `lar finetune`'s measured peak RSS
//!   (crates/lar-cli/tests/finetune.rs: within 10%).
//! - a PyTorch + PEFT trainer, by the usual accounting: frozen weights in bf16 or NF4, adapter, gradients and
//!   moments, 16-bit activations by sequence length and batch (all of them, or each layer's input with gradient
//!   checkpointing), the logits and their gradient, and the framework's own share.
//!
//! Every figure comes with its formula for `--explain`.

use serde::Serialize;

use crate::model::ModelInfo;
use crate::plan::Line;
use crate::size::fmt_bytes;

/// Frozen base precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// LoRA over 16-bit (bf16/f16) base weights.
    Lora,
    /// QLoRA: the base's linear layers in 4-bit NF4 with double-quantized block scales.
    Qlora,
}

impl std::str::FromStr for Method {
    type Err = crate::Error;
    /// `lora` or `qlora`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "lora" => Ok(Method::Lora),
            "qlora" => Ok(Method::Qlora),
            _ => Err(crate::Error::unknown(
                "fine-tuning method",
                s,
                "lora, qlora",
            )),
        }
    }
}

/// Whose training loop the plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    /// `lar finetune`.
    Lar,
    /// PyTorch with PEFT (and bitsandbytes for QLoRA).
    Peft,
}

impl std::str::FromStr for Trainer {
    type Err = crate::Error;
    /// `lar` or `peft`.
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "lar" => Ok(Trainer::Lar),
            "peft" => Ok(Trainer::Peft),
            _ => Err(crate::Error::unknown("trainer", s, "lar, peft")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub trainer: Trainer,
    pub method: Method,
    pub rank: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub checkpointing: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub trainer: Trainer,
    pub method: Method,
    pub rank: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub checkpointing: bool,
    pub adapter_params: u64,
    pub weights_bytes: u64,
    pub adapter_bytes: u64,
    pub gradients_bytes: u64,
    pub optimizer_bytes: u64,
    pub activations_bytes: u64,
    pub overhead_bytes: u64,
    pub total_bytes: u64,
    pub lines: Vec<Line>,
}

/// Memory a training framework holds before the model (CUDA context, allocator pools): a typical PyTorch figure.
pub const FRAMEWORK_BYTES: u64 = 512 << 20;
/// NF4 with block size 64, absmax in 8 bits and one fp32 per 256 blocks: 4 + 8/64 + 32/(64*256) bits.
const NF4_BITS: f64 = 4.0 + 8.0 / 64.0 + 32.0 / (64.0 * 256.0);

/// The linear layers LoRA adapts in each block (all of them, as PEFT's `target_modules="all-linear"`):
/// `(inputs, outputs)` of Q, K, V, O, gate, up, down.
fn linears(m: &ModelInfo) -> [(u64, u64); 7] {
    let (d, q, kv, ff) = (
        m.n_embd as u64,
        (m.n_head * m.head_dim) as u64,
        m.kv_dim() as u64,
        m.n_ff as u64,
    );
    [(d, q), (d, kv), (d, kv), (q, d), (d, ff), (d, ff), (ff, d)]
}

pub fn plan(m: &ModelInfo, r: &Request) -> Plan {
    match r.trainer {
        Trainer::Lar => plan_lar(m, r),
        Trainer::Peft => plan_peft(m, r),
    }
}

/// `lar finetune`'s memory (the figures of `lar_train`'s loop: see the module's header).
fn plan_lar(m: &ModelInfo, r: &Request) -> Plan {
    let layers = m.n_layers as u64;
    let rank = r.rank.max(1) as u64;
    let seq = r.seq_len.max(1) as u64;
    let tokens = seq * r.batch.max(1) as u64;
    let lin = linears(m);
    let adapter_params = layers * lin.iter().map(|(i, o)| rank * (i + o)).sum::<u64>();
    let resident_embd = if m.tied_output { m.embd_bytes } else { 0 };
    let head_bytes = if m.tied_output {
        m.embd_bytes
    } else {
        m.output_bytes
    };
    // Where the engine repacks the head's type, its rows are read from the file too while the repacked copy
    // stays (the transposed product; the pages are given back after each pass): the largest matrix, twice.
    let repacked_head = if crate::hw::repacks(&m.head_type) {
        head_bytes
    } else {
        0
    };
    let weights = m.layer_bytes.iter().sum::<u64>() + m.output_bytes + resident_embd;
    let (adapter, grads, optim) = (4 * adapter_params, 4 * adapter_params, 8 * adapter_params);
    let (d, q, kv, ff) = (
        m.n_embd as u64,
        (m.n_head * m.head_dim) as u64,
        m.kv_dim() as u64,
        m.n_ff as u64,
    );
    // Floats per token: each block's input (kept), one block's activations (the raw heads and projections only
    // where a norm's backward needs them: Qwen 3's and Gemma 3's per-head norms, Gemma 3's post-norms), the LoRA
    // dropout's input and its gradient (one projection's at a time: masks are made again, not kept) and rank-r
    // products, the backward's temporaries.
    let kept = layers * d;
    let qk_norm = matches!(m.arch.as_str(), "qwen3" | "gemma3");
    let post_norms = m.arch == "gemma3";
    let tape = 3 * d
        + 2 * q
        + 2 * kv
        + 3 * ff
        + if qk_norm { q + kv } else { 0 }
        + if post_norms { 2 * d } else { 0 };
    let dropout = 2 * d.max(q).max(ff) + 7 * rank;
    // (plus the transposed product's scratch: the gradient of the widest projection's output as BF16 hi + lo
    // planes, 4 bytes a value, kept by the thread between calls)
    let backward = 7 * d + 5 * ff + 2 * q + 2 * kv;
    let probs = m.n_head as u64 * seq * seq * r.batch.max(1) as u64 * 4;
    // Logits of HEAD_ROWS rows (lar_train::net::HEAD_ROWS) and the transposed product's block of converted
    // weights (4 MiB on AMX; a 512 KiB dequantized block elsewhere).
    let head = 64 * m.n_vocab as u64 * 4 + (4 << 20);
    let activations = 4 * tokens * (kept + tape + dropout + backward) + probs + head;
    let header = m.file_bytes.saturating_sub(m.tensor_bytes());
    let tokenizer = crate::plan::TOKEN_BYTES * m.vocab_tokens as u64
        + crate::plan::MERGE_BYTES * m.vocab_merges as u64
        + m.tokenizer_json_bytes;
    let overhead = crate::plan::RUNTIME_BYTES + header + tokenizer;
    let total = weights + repacked_head + adapter + grads + optim + activations + overhead;
    let mut lines = vec![
        Line {
            what: "base weights (frozen)".into(),
            bytes: weights,
            why: format!(
                "the file's weights as they are ({}), mapped: Lar trains on them in place (QLoRA when they \
                 are quantized), reading every matrix and the output head",
                m.layer_type
            ),
        },
        Line {
            what: "adapter".into(),
            bytes: adapter,
            why: format!(
                "rank {rank} A and B matrices on Q, K, V, O, gate, up and down of {layers} layers: \
                 {adapter_params} parameters in fp32"
            ),
        },
        Line {
            what: "gradients".into(),
            bytes: grads,
            why: "one fp32 gradient per adapter parameter".into(),
        },
        Line {
            what: "optimizer".into(),
            bytes: optim,
            why: "AdamW's two fp32 moments per adapter parameter".into(),
        },
        Line {
            what: "activations".into(),
            bytes: activations,
            why: format!(
                "{tokens} tokens (sequence {seq} x batch {}), f32: each layer's input kept for the recomputation \
                 ({kept} values per token), one layer's activations ({tape}), one projection's LoRA dropout input and \
                 its gradient and the rank-{rank} products ({dropout}), the backward's temporaries and the transposed product's scratch ({backward}); one layer's attention \
                 probabilities ({} heads x {seq}^2: {}); logits for 64 rows at a time and a converted block of \
                 weights ({})",
                r.batch,
                m.n_head,
                fmt_bytes(probs),
                fmt_bytes(head)
            ),
        },
        Line {
            what: "overhead".into(),
            bytes: overhead,
            why: format!(
                "the runtime {}, the file's header {} and the tokenizer's tables {}",
                fmt_bytes(crate::plan::RUNTIME_BYTES),
                fmt_bytes(header),
                fmt_bytes(tokenizer)
            ),
        },
    ];
    if repacked_head > 0 {
        lines.insert(
            1,
            Line {
                what: "output head, repacked".into(),
                bytes: repacked_head,
                why: format!(
                    "the engine keeps the output head ({}) repacked for this CPU's kernels, and the backward \
                     reads its rows from the file as well (given back after each pass): the largest matrix twice",
                    m.head_type
                ),
            },
        );
    }
    Plan {
        trainer: Trainer::Lar,
        method: r.method,
        rank: r.rank,
        seq_len: r.seq_len,
        batch: r.batch,
        checkpointing: true,
        adapter_params,
        weights_bytes: weights,
        adapter_bytes: adapter,
        gradients_bytes: grads,
        optimizer_bytes: optim,
        activations_bytes: activations,
        overhead_bytes: overhead,
        total_bytes: total,
        lines,
    }
}

/// A PyTorch + PEFT trainer's memory, by the usual accounting.
fn plan_peft(m: &ModelInfo, r: &Request) -> Plan {
    let layers = m.n_layers as u64;
    let rank = r.rank.max(1) as u64;
    let tokens = (r.seq_len.max(1) * r.batch.max(1)) as u64;
    let lin = linears(m);
    let linear_params = layers * lin.iter().map(|(i, o)| i * o).sum::<u64>();
    let other_params = m.n_params.saturating_sub(linear_params);
    let adapter_params = layers * lin.iter().map(|(i, o)| rank * (i + o)).sum::<u64>();
    let (weights, wwhy) = match r.method {
        Method::Lora => (
            2 * m.n_params,
            format!("{} parameters in bf16 (2 bytes each)", m.n_params),
        ),
        Method::Qlora => {
            let q = (linear_params as f64 * NF4_BITS / 8.0).ceil() as u64;
            (
                q + 2 * other_params,
                format!(
                    "{linear_params} linear-layer parameters in NF4 ({NF4_BITS:.3} bits with block scales: {}) and \
                     the other {other_params} (embeddings, norms) in bf16",
                    fmt_bytes(q)
                ),
            )
        }
    };
    let adapter = 4 * adapter_params;
    let grads = 4 * adapter_params;
    let optim = 8 * adapter_params;
    // Activations kept for the backward pass, 16-bit, per token and layer: the layer input and normed input,
    // Q, K, V, the attention output, the FFN's normed input, gate, up, their product and the activation, and
    // the rank-r LoRA intermediates; attention itself memory-efficient (no seq x seq scores kept).
    let (d, q, kv, ff) = (
        m.n_embd as u64,
        (m.n_head * m.head_dim) as u64,
        m.kv_dim() as u64,
        m.n_ff as u64,
    );
    let per_layer_token = 2 * (4 * d + 2 * q + 2 * kv + 4 * ff + 7 * rank);
    let kept = if r.checkpointing {
        // Each layer's input, plus one layer's full set while it is recomputed.
        tokens * (layers * 2 * d + per_layer_token)
    } else {
        tokens * layers * per_layer_token
    };
    let logits = tokens * m.n_vocab as u64 * 4 * 2;
    let activations = kept + logits;
    let total = weights + adapter + grads + optim + activations + FRAMEWORK_BYTES;
    let lines = vec![
        Line {
            what: "base weights (frozen)".into(),
            bytes: weights,
            why: wwhy,
        },
        Line {
            what: "adapter".into(),
            bytes: adapter,
            why: format!(
                "rank {rank} A and B matrices on Q, K, V, O, gate, up and down of {layers} layers: \
                 {adapter_params} parameters in fp32"
            ),
        },
        Line {
            what: "gradients".into(),
            bytes: grads,
            why: "one fp32 gradient per adapter parameter (the base is frozen: none)".into(),
        },
        Line {
            what: "optimizer".into(),
            bytes: optim,
            why: "AdamW's two fp32 moments per adapter parameter".into(),
        },
        Line {
            what: "activations".into(),
            bytes: activations,
            why: format!(
                "{tokens} tokens (sequence {} x batch {}); {} per token per layer in 16-bit ({}), {}; logits and \
                 their gradient in fp32 over {} tokens: {}",
                r.seq_len,
                r.batch,
                fmt_bytes(per_layer_token),
                "inputs, Q, K, V, attention output, FFN gate, up and product",
                if r.checkpointing {
                    "with gradient checkpointing only each layer's input is kept, plus one layer recomputed"
                } else {
                    "every layer's kept (no checkpointing)"
                },
                m.n_vocab,
                fmt_bytes(logits)
            ),
        },
        Line {
            what: "framework".into(),
            bytes: FRAMEWORK_BYTES,
            why: "CUDA context and allocator pools of a training framework (typical)".into(),
        },
    ];
    Plan {
        trainer: Trainer::Peft,
        method: r.method,
        rank: r.rank,
        seq_len: r.seq_len,
        batch: r.batch,
        checkpointing: r.checkpointing,
        adapter_params,
        weights_bytes: weights,
        adapter_bytes: adapter,
        gradients_bytes: grads,
        optimizer_bytes: optim,
        activations_bytes: activations,
        overhead_bytes: FRAMEWORK_BYTES,
        total_bytes: total,
        lines,
    }
}
