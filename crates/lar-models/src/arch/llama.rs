//! Llama (Llama 2/3.x, Mistral, SmolLM): pre-norm blocks with RMS norm, grouped-query attention, rotary embeddings on
//! adjacent pairs (GGUF stores Q and K permuted for that), SwiGLU feed-forward, optional tied output embedding and
//! optional `rope_freqs` (Llama 3.1 scaling, applied in `model.rs`).

use crate::error::Result;
use crate::gguf::Gguf;
use crate::model::Hparams;

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    super::common(g, "llama")
}
