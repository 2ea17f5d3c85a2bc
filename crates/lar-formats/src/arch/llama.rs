//! Llama (Llama 2/3.x, Mistral, SmolLM): pre-norm blocks with RMS norm, grouped-query attention, rotary embeddings on
//! adjacent pairs (GGUF stores Q and K permuted for that), SwiGLU feed-forward, optional tied output embedding and
//! optional `rope_freqs` (Llama 3.1 scaling, applied in `model.rs`). Checkpoints read from a Hugging Face directory
//! keep Q and K unpermuted, which is the same rotation done NeoX-style (pairs `(i, i + d/2)`).

use crate::error::Result;
use crate::gguf::Gguf;
use crate::hparams::Hparams;

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    let mut hp = super::common(g, "llama")?;
    hp.rope_neox = g
        .get(crate::hf::HF_LAYOUT)
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(hp)
}
