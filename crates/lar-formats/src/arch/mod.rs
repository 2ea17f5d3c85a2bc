//! One file per architecture: each reads its hyperparameters from GGUF metadata into [`Hparams`]. The metadata
//! keys common to all (`{arch}.block_count`, `{arch}.embedding_length`, ...) are read once here.

pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::hparams::{Activation, Hparams};

/// The hyperparameters every architecture names the same way; arch files then adjust what differs.
pub(crate) fn common(g: &Gguf, arch: &str) -> Result<Hparams> {
    let key = |k: &str| format!("{arch}.{k}");
    let get = |k: &str| -> Result<usize> {
        let v = g.get_u64(&key(k))?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0 && v < 1 << 24)
            .ok_or_else(|| Error::Invalid(format!("{} = {v} is out of range", key(k))))
    };
    let get_or = |k: &str, default: usize| {
        if g.get(&key(k)).is_some() {
            get(k)
        } else {
            Ok(default)
        }
    };
    let n_layers = get("block_count")?;
    if n_layers > g.tensors.len() {
        return Err(Error::Invalid(format!(
            "{} layers but only {} tensors",
            n_layers,
            g.tensors.len()
        )));
    }
    let n_embd = get("embedding_length")?;
    let n_head = get("attention.head_count")?;
    let n_head_kv = get_or("attention.head_count_kv", n_head)?;
    let head_dim = get_or("attention.key_length", n_embd / n_head)?;
    let n_ff = get("feed_forward_length")?;
    let n_vocab = g
        .tensor("token_embd.weight")
        .and_then(|t| t.dims.get(1).copied())
        .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
    let ctx_train = get_or("context_length", 2048)?;
    let rms_eps = g
        .get_f64(&key("attention.layer_norm_rms_epsilon"))
        .unwrap_or(1e-5) as f32;
    let rope_base = g.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32;
    let rope_dim = get_or("rope.dimension_count", head_dim)?;
    Ok(Hparams {
        arch: arch.to_string(),
        n_layers,
        n_embd,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        n_vocab,
        ctx_train,
        rms_eps,
        rope_neox: false,
        rope_dim,
        rope_base,
        rope_base_swa: rope_base,
        sliding_window: None,
        swa_pattern: 0,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        embed_scale: 1.0,
        activation: Activation::Silu,
        fused_qkv: false,
        fused_gate_up: false,
    })
}
