//! Qwen 2 / 2.5: Llama's block with biases on Q, K and V, and NeoX rotary embeddings.

use crate::error::Result;
use crate::gguf::Gguf;
use crate::hparams::Hparams;

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    let mut hp = super::common(g, "qwen2")?;
    hp.rope_neox = true;
    Ok(hp)
}
