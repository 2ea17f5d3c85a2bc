//! Memory for fine-tuning with LoRA (a 16-bit frozen base) or QLoRA (a 4-bit NF4 base), by the usual accounting:
//! frozen weights, the adapter (fp32) with its gradients and AdamW's two moments, activations by sequence length
//! and batch (all of them, or only each layer's input with gradient checkpointing), the logits and their gradient,
//! and the framework's own share. Every figure comes with its formula for `--explain`.

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

#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub rank: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub checkpointing: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
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
