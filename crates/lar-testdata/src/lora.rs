//! Reproducible random LoRA adapters for the adapter tests and their goldens (`cargo run -p lar-models --example
//! lora-adapter` writes the same ones for scripts/make-lora-goldens.py): strong enough that the adapted model's
//! logits differ clearly from the base's, weak enough that it still reads as language.

use std::collections::BTreeMap;

use lar_formats::Hparams;
use lar_formats::lora::{LoraAdapter, LoraPair, TARGETS, target_shape};

use crate::Rng;

/// The adapter the golden tests use: rank 8, alpha 16, on every projection of every block, and on the output
/// matrix when the model has one of its own (`untied`: llama.cpp adapts only tensors the file holds, and a tied
/// output is the embedding table's), of `strength` (see [`random_lora`]; Qwen's large activations want a
/// smaller one than SmolLM2's for the adapted model to stay a language model).
pub fn golden_lora(hp: &Hparams, untied: bool, strength: f32) -> LoraAdapter {
    let targets: Vec<&str> = TARGETS.iter().map(|(_, g)| *g).collect();
    random_lora(hp, 8, 16.0, &targets, untied, 0x10ad, strength)
}

/// The strength of the golden adapter for a model of architecture `arch`.
pub fn golden_strength(arch: &str) -> f32 {
    if arch == "llama" { 0.5 } else { 0.05 }
}

/// A rank-`rank` adapter on the block modules `targets` (GGUF names: `attn_q`, `ffn_down`, ...) of every layer,
/// and on `output.weight` if `output`; `A` has rows of unit scale for unit inputs, `B` entries of about
/// `strength / sqrt(rank)`, so each adapted output moves by about `strength * alpha / rank`.
pub fn random_lora(
    hp: &Hparams,
    rank: usize,
    alpha: f32,
    targets: &[&str],
    output: bool,
    seed: u64,
    strength: f32,
) -> LoraAdapter {
    let mut rng = Rng(seed | 1);
    let mut uniform = move || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0;
    let mut names: Vec<String> = (0..hp.n_layers)
        .flat_map(|l| targets.iter().map(move |t| format!("blk.{l}.{t}.weight")))
        .collect();
    if output {
        names.push("output.weight".into());
    }
    let mut tensors = BTreeMap::new();
    for name in names {
        let (n_out, n_in) = target_shape(hp, &name).expect("a target the model has");
        // Uniform(-1, 1) has variance 1/3.
        let sa = (3.0 / n_in as f32).sqrt();
        let sb = strength * (3.0 / rank as f32).sqrt();
        let a = (0..rank * n_in).map(|_| uniform() * sa).collect();
        let b = (0..n_out * rank).map(|_| uniform() * sb).collect();
        tensors.insert(
            name,
            LoraPair {
                rank,
                n_in,
                n_out,
                a,
                b,
            },
        );
    }
    LoraAdapter {
        arch: hp.arch.clone(),
        alpha: Some(alpha),
        tensors,
        base_model: None,
    }
}

/// A small Llama's shape (2 layers, 64 wide, 4 heads of 16, 2 KV heads, 96 FFN, 256 tokens): the base of the
/// LoRA fuzz target and its seeds.
pub fn small_llama() -> Hparams {
    Hparams {
        arch: "llama".into(),
        n_layers: 2,
        n_embd: 64,
        n_head: 4,
        n_head_kv: 2,
        head_dim: 16,
        n_ff: 96,
        n_vocab: 256,
        ctx_train: 256,
        rms_eps: 1e-5,
        rope_neox: false,
        rope_dim: 16,
        rope_base: 10000.0,
        rope_base_swa: 10000.0,
        sliding_window: None,
        swa_pattern: 0,
        attn_scale: 0.25,
        embed_scale: 1.0,
        activation: lar_formats::Activation::Silu,
        fused_qkv: false,
        fused_gate_up: false,
    }
}
