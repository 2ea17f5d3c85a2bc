//! LoRA adapters bound to a model and applied in its forward pass, per sequence: each adapted projection's output
//! rows of a sequence get `scale * (x · Aᵀ) · Bᵀ` added, where `scale` is the adapter's `alpha / rank` times the
//! sequence's own strength. The base matmul is shared by the whole batch; only the low-rank delta is per sequence,
//! so sequences with different adapters (or none) run in one batch, which llama-server cannot do.
//!
//! `B` is kept transposed (`[rank, n_out]`) so the second product is `rank` vectorized axpys over the output row.
//! [`apply_reference`] is the plain twin the fast path is tested against. Reading the adapter files is
//! `lar_formats::lora`; this file only runs them.

use std::ops::Range;

use lar_formats::lora::LoraAdapter;

use crate::error::{Error, Result};
use crate::ops;
use crate::pool::ThreadPool;
use crate::tensor::SyncPtr;

/// The adapted matrices of a block, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

const PROJS: [(Proj, &str); 7] = [
    (Proj::Q, "attn_q"),
    (Proj::K, "attn_k"),
    (Proj::V, "attn_v"),
    (Proj::O, "attn_output"),
    (Proj::Gate, "ffn_gate"),
    (Proj::Up, "ffn_up"),
    (Proj::Down, "ffn_down"),
];

/// One adapted matrix: `A` `[rank, n_in]`, `B` transposed to `[rank, n_out]`, and `alpha / rank`.
#[derive(Clone, Debug)]
pub struct Delta {
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub a: Vec<f32>,
    pub bt: Vec<f32>,
    pub scale: f32,
}

/// An adapter bound to a model's shape.
#[derive(Clone, Debug)]
pub struct Lora {
    pub name: String,
    layers: Vec<[Option<Delta>; 7]>,
    output: Option<Delta>,
    n_params: usize,
}

/// The rows of one sequence of a batch and the strength of its adapter.
pub struct Rows<'a> {
    pub rows: Range<usize>,
    pub lora: &'a Lora,
    pub scale: f32,
}

impl Lora {
    /// Binds an adapter (already checked against the base by `lar_formats::lora`) to a model of `n_layers`.
    pub fn new(name: &str, adapter: &LoraAdapter, n_layers: usize) -> Result<Self> {
        let mut layers: Vec<[Option<Delta>; 7]> =
            (0..n_layers).map(|_| Default::default()).collect();
        let mut output = None;
        for (tensor, p) in &adapter.tensors {
            let mut bt = vec![0f32; p.rank * p.n_out];
            for o in 0..p.n_out {
                for r in 0..p.rank {
                    bt[r * p.n_out + o] = p.b[o * p.rank + r];
                }
            }
            let delta = Delta {
                rank: p.rank,
                n_in: p.n_in,
                n_out: p.n_out,
                a: p.a.clone(),
                bt,
                scale: p.scale(adapter.alpha),
            };
            if tensor == "output.weight" {
                output = Some(delta);
                continue;
            }
            let slot = tensor
                .strip_prefix("blk.")
                .and_then(|r| r.split_once('.'))
                .and_then(|(l, r)| {
                    let l: usize = l.parse().ok()?;
                    let m = r.strip_suffix(".weight")?;
                    let i = PROJS.iter().position(|(_, n)| *n == m)?;
                    Some((l, i))
                })
                .filter(|(l, _)| *l < n_layers);
            let Some((l, i)) = slot else {
                return Err(Error::Invalid(format!(
                    "LoRA adapter {name}: '{tensor}' is not a matrix this model adapts"
                )));
            };
            layers[l][i] = Some(delta);
        }
        Ok(Self {
            name: name.to_string(),
            layers,
            output,
            n_params: adapter.n_params(),
        })
    }

    /// The delta of block `layer`'s projection `p`, if the adapter has one.
    pub fn delta(&self, layer: usize, p: Proj) -> Option<&Delta> {
        self.layers.get(layer)?[p as usize].as_ref()
    }

    pub fn output(&self) -> Option<&Delta> {
        self.output.as_ref()
    }

    /// Bytes the bound adapter holds (A and B in f32).
    pub fn bytes(&self) -> usize {
        self.n_params * 4
    }
}

/// Adds every sequence's delta for one projection: `out[t] += s * Bᵀ(A x[t])` for the rows `t` of each sequence
/// in `seqs`; `pick` finds the delta in a sequence's adapter. `x` holds `n_in`-wide rows, `out` `n_out`-wide.
pub fn apply<'a>(
    seqs: &[Rows<'a>],
    pick: impl Fn(&'a Lora) -> Option<&'a Delta> + Sync,
    x: &[f32],
    out: &mut [f32],
    pool: &ThreadPool,
) {
    let jobs: Vec<(&Delta, usize, f32)> = seqs
        .iter()
        .filter_map(|s| pick(s.lora).map(|d| (d, s, s.scale)))
        .flat_map(|(d, s, scale)| s.rows.clone().map(move |t| (d, t, scale)))
        .collect();
    let Some(n_out) = jobs.first().map(|j| j.0.n_out) else {
        return;
    };
    let n = jobs.len();
    let tasks = if n >= 4 { pool.n_threads().min(n) } else { 1 };
    let outp = SyncPtr(out.as_mut_ptr());
    pool.run(tasks, &|task| {
        let mut tmp = Vec::new();
        for &(d, t, scale) in &jobs[crate::pool::split(n, tasks, task)] {
            // SAFETY: each token row `t` appears once in `jobs`, and each task takes its own jobs, so no two tasks
            // write the same output row; `out` outlives `run`.
            let row = unsafe { std::slice::from_raw_parts_mut(outp.get().add(t * n_out), n_out) };
            one_row(d, scale, &x[t * d.n_in..(t + 1) * d.n_in], row, &mut tmp);
        }
    });
}

fn one_row(d: &Delta, scale: f32, x: &[f32], out: &mut [f32], tmp: &mut Vec<f32>) {
    tmp.clear();
    tmp.extend(
        d.a.chunks_exact(d.n_in)
            .map(|a_r| scale * d.scale * ops::dot_f32(a_r, x)),
    );
    for (r, &w) in tmp.iter().enumerate() {
        ops::axpy_f32(w, &d.bt[r * d.n_out..(r + 1) * d.n_out], out);
    }
}

/// [`apply`] as plain loops over `B` in its file layout, accumulated in f64: the reference twin.
pub fn apply_reference(d: &Delta, scale: f32, x: &[f32], out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(d.n_in).zip(out.chunks_exact_mut(d.n_out)) {
        let ax: Vec<f64> = (0..d.rank)
            .map(|r| {
                (0..d.n_in)
                    .map(|i| d.a[r * d.n_in + i] as f64 * xr[i] as f64)
                    .sum()
            })
            .collect();
        for (o, v) in or.iter_mut().enumerate() {
            let s: f64 = (0..d.rank)
                .map(|r| d.bt[r * d.n_out + o] as f64 * ax[r])
                .sum();
            *v += (scale as f64 * d.scale as f64 * s) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(rank: usize, n_in: usize, n_out: usize) -> Delta {
        let v = |n: usize, k: f32| (0..n).map(|i| ((i as f32 + k) * 0.731).sin()).collect();
        Delta {
            rank,
            n_in,
            n_out,
            a: v(rank * n_in, 0.5),
            bt: v(rank * n_out, 2.0),
            scale: 0.75,
        }
    }

    /// The pooled, vectorized path against the plain twin, on a batch of three sequences where the middle one
    /// runs without the adapter (its rows must stay as they were).
    #[test]
    fn apply_matches_the_reference_and_leaves_other_rows_alone() {
        let d = delta(3, 37, 53);
        let lora = Lora {
            name: "t".into(),
            layers: vec![[Some(d.clone()), None, None, None, None, None, None]],
            output: None,
            n_params: 0,
        };
        let n = 9;
        let x: Vec<f32> = (0..n * 37).map(|i| (i as f32 * 0.05).cos()).collect();
        let base: Vec<f32> = (0..n * 53).map(|i| i as f32 * 0.01).collect();
        for threads in [1, 3] {
            let pool = ThreadPool::new(threads);
            let mut out = base.clone();
            let seqs = [
                Rows {
                    rows: 0..4,
                    lora: &lora,
                    scale: 1.0,
                },
                Rows {
                    rows: 6..9,
                    lora: &lora,
                    scale: 0.5,
                },
            ];
            apply(&seqs, |l| l.delta(0, Proj::Q), &x, &mut out, &pool);
            let mut want = base.clone();
            apply_reference(&d, 1.0, &x[..4 * 37], &mut want[..4 * 53]);
            apply_reference(&d, 0.5, &x[6 * 37..], &mut want[6 * 53..]);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-4,
                    "threads {threads}, element {i}: {a} vs {b}"
                );
            }
            assert_eq!(out[4 * 53..6 * 53], base[4 * 53..6 * 53]);
            // An adapter without this projection changes nothing.
            let mut same = base.clone();
            apply(&seqs, |l| l.delta(0, Proj::K), &x, &mut same, &pool);
            assert_eq!(same, base);
        }
    }
}
