//! Gemma 3: embeddings scaled by `sqrt(n_embd)`; RMS norms before and after both attention and feed-forward
//! (`post_attention_norm`, `post_ffw_norm`; GGUF stores the norm weights with Gemma's `+1` already added); RMS norm on
//! each Q and K head; NeoX rotary embeddings with base 10 000 on sliding-window layers and the model's base on the
//! global ones (every sixth layer is global); GELU (tanh) feed-forward; attention scaled by `1/sqrt(head_dim)`.

use crate::error::Result;
use crate::gguf::Gguf;
use crate::hparams::{Activation, Hparams};

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    let mut hp = super::common(g, "gemma3")?;
    hp.rms_eps = g
        .get_f64("gemma3.attention.layer_norm_rms_epsilon")
        .unwrap_or(1e-6) as f32;
    hp.rope_neox = true;
    hp.rope_base = g.get_f64("gemma3.rope.freq_base").unwrap_or(1_000_000.0) as f32;
    hp.rope_base_swa = 10_000.0;
    hp.sliding_window = Some(g.get_u64("gemma3.attention.sliding_window").unwrap_or(512) as usize);
    hp.swa_pattern = 6;
    hp.attn_scale = 1.0 / (hp.head_dim as f32).sqrt();
    hp.embed_scale = (hp.n_embd as f32).sqrt();
    hp.activation = Activation::Gelu;
    Ok(hp)
}
