//! Qwen 3 (dense): Llama's block with RMS norm on each Q and K head before the rotary embedding (NeoX), no biases,
//! and a head dimension of its own (`attention.key_length`, not `n_embd / n_head`).

use crate::error::Result;
use crate::gguf::Gguf;
use crate::hparams::Hparams;

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    let mut hp = super::common(g, "qwen3")?;
    hp.rope_neox = true;
    Ok(hp)
}
