//! Phi-3: Llama's block with Q, K and V fused in one `attn_qkv` matrix (rows in that order) and gate and up fused in
//! one `ffn_up` (gate rows first, SwiGLU), NeoX rotary embeddings. The fused matrices are split into row views at
//! load time, so the forward pass is Llama's. The 128k variants' `rope_factors_long/short` are not supported yet.

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::hparams::Hparams;

pub fn hparams(g: &Gguf) -> Result<Hparams> {
    let mut hp = super::common(g, "phi3")?;
    if g.tensor("rope_factors_long.weight").is_some()
        || g.tensor("blk.0.rope_factors_long.weight").is_some()
    {
        return Err(Error::Unsupported(
            "Phi-3 long-context rope factors (the 128k variants)".into(),
        ));
    }
    hp.rope_neox = true;
    hp.fused_qkv = true;
    hp.fused_gate_up = true;
    Ok(hp)
}
