//! An opt-in breakdown of where the forward pass spends its time, by kind of operation (`lar bench --profile`).
//!
//! The model and the engine wrap each step in a [`span`]; while profiling is off (the default) a span is one relaxed
//! atomic load and nothing else, so the instrumentation stays in the release build. While it is on, each span adds
//! its wall time to its kind's counter. Spans are taken on the thread that drives a forward pass (the parallel loops
//! inside a step are part of that step's time), so the kinds add up to the pass's time; what is left of a request's
//! wall time is the engine's own (scheduling, streaming).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The kinds of work a forward pass is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Token embedding lookups (rows dequantized).
    Embed,
    /// RMS norms of the residual stream (and QK norms).
    Norm,
    /// Activation rows quantized for the weights' dot products.
    Quantize,
    /// The blocks' weight matrix products (Q/K/V, output projection, FFN).
    Matmul,
    /// Rotary embeddings and the K/V cache writes.
    Rope,
    /// Attention over the cache.
    Attention,
    /// The FFN's gated activation.
    Activation,
    /// Residual adds and biases.
    Residual,
    /// The final norm and the vocabulary projection (logits).
    Logits,
    /// Sampling the next token from the logits (the engine).
    Sample,
    /// LoRA adapters' low-rank products.
    Lora,
}

impl Op {
    /// Every kind, in the order of a forward pass.
    pub const ALL: [Op; 11] = [
        Op::Embed,
        Op::Norm,
        Op::Quantize,
        Op::Matmul,
        Op::Rope,
        Op::Attention,
        Op::Activation,
        Op::Residual,
        Op::Lora,
        Op::Logits,
        Op::Sample,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Embed => "embed",
            Op::Norm => "norm",
            Op::Quantize => "quantize activations",
            Op::Matmul => "matmul",
            Op::Rope => "rope + kv write",
            Op::Attention => "attention",
            Op::Activation => "ffn activation",
            Op::Residual => "residual + bias",
            Op::Logits => "logits",
            Op::Sample => "sample",
            Op::Lora => "lora",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];

/// Turns profiling on or off (process-wide).
pub fn enable(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Whether profiling is on.
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The time each kind has taken since the last call, and the counters set back to zero.
pub fn take() -> Vec<(Op, Duration)> {
    Op::ALL
        .iter()
        .map(|&op| {
            let ns = NANOS[op as usize].swap(0, Ordering::Relaxed);
            (op, Duration::from_nanos(ns))
        })
        .collect()
}

/// A running step of kind `op`: its time is counted when it is dropped.
#[must_use = "a span measures until it is dropped"]
pub struct Span {
    op: Op,
    start: Option<Instant>,
}

/// Starts a span of kind `op` (nothing is measured while profiling is off).
#[inline]
pub fn span(op: Op) -> Span {
    Span {
        op,
        start: enabled().then(Instant::now),
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if let Some(s) = self.start {
            NANOS[self.op as usize].fetch_add(s.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test only: the counters are process-wide.
    #[test]
    fn spans_count_only_while_enabled() {
        {
            let _s = span(Op::Attention);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(take().iter().all(|(_, d)| d.is_zero()));
        enable(true);
        {
            let _s = span(Op::Attention);
            std::thread::sleep(Duration::from_millis(2));
        }
        enable(false);
        let t = take();
        let att = t.iter().find(|(op, _)| *op == Op::Attention).unwrap().1;
        assert!(att >= Duration::from_millis(2), "{att:?}");
        assert!(take().iter().all(|(_, d)| d.is_zero()), "take resets");
    }
}
