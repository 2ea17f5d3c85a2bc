//! The adapter being trained: one [`Pair`] per adapted projection of each block, initialised as PEFT does (`A`
//! Kaiming-uniform with bound `1/sqrt(n_in)`, `B` zero, so training starts from the base model exactly), and
//! handed to `lar_formats::lora` to be written in both forms (PEFT directory and llama.cpp GGUF).

use std::collections::BTreeMap;

use lar_formats::hparams::Hparams;
use lar_formats::lora::{LoraAdapter, LoraPair, MAX_RANK, TARGETS, target_shape};

use crate::error::{Error, Result};
use crate::linear::Pair;
use crate::rng::Rng;

/// A projection of a block by its index in [`TARGETS`] (q, k, v, o, gate, up, down).
pub type Target = usize;

/// Parses `--targets`: `all` or a comma list of `q,k,v,o,gate,up,down` (PEFT's `q_proj` names also accepted).
pub fn parse_targets(spec: &str) -> Result<Vec<Target>> {
    const SHORT: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];
    if spec.trim() == "all" {
        return Ok((0..7).collect());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let i = SHORT
            .iter()
            .position(|s| *s == part)
            .or_else(|| {
                TARGETS
                    .iter()
                    .position(|(peft, gguf)| *peft == part || *gguf == part)
            })
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown LoRA target '{part}' (use q,k,v,o,gate,up,down or all)"
                ))
            })?;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    if out.is_empty() {
        return Err(Error::Invalid("no LoRA targets given".into()));
    }
    out.sort_unstable();
    Ok(out)
}

/// The trainable adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    pub rank: usize,
    pub alpha: f32,
    pub layers: Vec<[Option<Pair>; 7]>,
}

impl Adapter {
    /// A fresh adapter of `rank` on `targets` of every block of a model with `hp`.
    pub fn new(
        hp: &Hparams,
        rank: usize,
        alpha: f32,
        targets: &[Target],
        seed: u64,
    ) -> Result<Self> {
        if rank == 0 || rank > MAX_RANK {
            return Err(Error::Invalid(format!(
                "LoRA rank {rank} (1 to {MAX_RANK})"
            )));
        }
        if !alpha.is_finite() || alpha <= 0.0 {
            return Err(Error::Invalid(format!(
                "LoRA alpha {alpha} must be positive"
            )));
        }
        for &t in targets {
            let fused = match t {
                0..=2 => hp.fused_qkv,
                4 | 5 => hp.fused_gate_up,
                _ => false,
            };
            if fused || t >= 7 {
                return Err(Error::Unsupported(format!(
                    "adapting {} of {} (its projections are fused in one matrix)",
                    TARGETS.get(t).map_or("?", |t| t.0),
                    hp.arch
                )));
            }
        }
        let mut layers = Vec::with_capacity(hp.n_layers);
        for il in 0..hp.n_layers {
            let mut slots: [Option<Pair>; 7] = Default::default();
            for &t in targets {
                let name = format!("blk.{il}.{}.weight", TARGETS[t].1);
                let (n_out, n_in) = target_shape(hp, &name).map_err(Error::Invalid)?;
                let mut rng = Rng::keyed(seed, &[il as u64, t as u64]);
                let bound = 1.0 / (n_in as f32).sqrt();
                let a = (0..rank * n_in)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                    .collect();
                slots[t] = Some(Pair {
                    rank,
                    n_in,
                    n_out,
                    a,
                    b: vec![0.0; n_out * rank],
                });
            }
            layers.push(slots);
        }
        Ok(Self {
            rank,
            alpha,
            layers,
        })
    }

    /// `alpha / rank`, the factor of every delta.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    pub fn pair(&self, layer: usize, t: Target) -> Option<&Pair> {
        self.layers.get(layer)?[t].as_ref()
    }

    /// Zeros of the same shape: a gradient or an optimizer moment.
    pub fn zeros_like(&self) -> Self {
        Self {
            layers: self
                .layers
                .iter()
                .map(|l| l.clone().map(|p| p.map(|p| p.zeros_like())))
                .collect(),
            ..*self
        }
    }

    /// Every matrix (each pair's `A` then `B`, block by block), in a fixed order.
    pub fn tensors(&self) -> Vec<&[f32]> {
        self.pairs().flat_map(|p| [&p.a[..], &p.b[..]]).collect()
    }

    /// [`Adapter::tensors`], mutably.
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.iter_mut().flatten())
            .flat_map(|p| [&mut p.a[..], &mut p.b[..]])
            .collect()
    }

    pub fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.layers.iter().flat_map(|l| l.iter().flatten())
    }

    pub fn n_params(&self) -> usize {
        self.pairs().map(|p| p.a.len() + p.b.len()).sum()
    }

    /// Every value set to zero (a gradient between steps).
    pub fn clear(&mut self) {
        for t in self.tensors_mut() {
            t.fill(0.0);
        }
    }

    /// As an adapter file's contents (rows in the base's order), ready for `LoraAdapter::write_dir`.
    pub fn to_lora(&self, hp: &Hparams, base_model: Option<String>) -> LoraAdapter {
        let mut tensors = BTreeMap::new();
        for (il, l) in self.layers.iter().enumerate() {
            for (t, p) in l.iter().enumerate() {
                if let Some(p) = p {
                    tensors.insert(
                        format!("blk.{il}.{}.weight", TARGETS[t].1),
                        LoraPair {
                            rank: p.rank,
                            n_in: p.n_in,
                            n_out: p.n_out,
                            a: p.a.clone(),
                            b: p.b.clone(),
                        },
                    );
                }
            }
        }
        LoraAdapter {
            arch: hp.arch.clone(),
            alpha: Some(self.alpha),
            tensors,
            base_model,
        }
    }
}
