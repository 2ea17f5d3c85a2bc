//! A decoder's shape and behaviour, read from its metadata by the architecture's file in `arch/`
//! ([`Hparams::from_gguf`]): what the planner sizes and the forward pass follows.

use crate::arch;
use crate::error::{Error, Result};
use crate::gguf::Gguf;

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `silu(gate) * up` (Llama, Qwen, Phi-3)
    Silu,
    /// `gelu_tanh(gate) * up` (Gemma)
    Gelu,
}

/// Shape and behaviour of a model, read from its metadata by the architecture's file.
#[derive(Clone, Debug)]
pub struct Hparams {
    pub arch: String,
    pub n_layers: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    /// Context length the model was trained for.
    pub ctx_train: usize,
    pub rms_eps: f32,
    /// Rotate pairs `(i, i + d/2)` rather than `(2i, 2i + 1)`.
    pub rope_neox: bool,
    pub rope_dim: usize,
    pub rope_base: f32,
    /// Rope base of sliding-window layers (Gemma 3 uses 10 000 there).
    pub rope_base_swa: f32,
    /// Window of sliding-window layers, in tokens (a query at `p` sees keys `p - window + 1 ..= p`).
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer is global, the others use the sliding window (0: none).
    pub swa_pattern: usize,
    pub attn_scale: f32,
    /// Multiplier of the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embed_scale: f32,
    pub activation: Activation,
    /// Q, K and V are one `attn_qkv` matrix (Phi-3).
    pub fused_qkv: bool,
    /// Gate and up are one `ffn_up` matrix of `2 * n_ff` rows, gate first (Phi-3).
    pub fused_gate_up: bool,
}

impl Hparams {
    /// The hyperparameters of the architecture `file` names (the file's metadata and tensor shapes only).
    pub fn from_gguf(file: &Gguf) -> Result<Self> {
        match file.architecture()? {
            "llama" => arch::llama::hparams(file),
            "gemma3" => arch::gemma3::hparams(file),
            "qwen2" => arch::qwen2::hparams(file),
            "qwen3" => arch::qwen3::hparams(file),
            "phi3" => arch::phi3::hparams(file),
            other => Err(Error::UnsupportedArch(other.to_string())),
        }
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    pub fn is_swa_layer(&self, layer: usize) -> bool {
        self.sliding_window.is_some()
            && self.swa_pattern > 0
            && layer % self.swa_pattern < self.swa_pattern - 1
    }
}
