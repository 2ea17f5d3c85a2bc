//! `lar plan hf:...`: planning a model that is not downloaded, from its GGUF header read with HTTP Range requests
//! (or its config.json and safetensors headers), and recommending the quant of a repository that fits best.

use anyhow::{Result, bail};

pub fn main(_src: &str, _args: &crate::plan::Args) -> Result<()> {
    bail!("remote planning is not wired yet")
}
