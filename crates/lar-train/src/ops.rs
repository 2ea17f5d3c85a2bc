//! The backward of a block's per-row operations: RMS norm, rotary embeddings, the gated activations (SiLU and
//! GELU), and the losses over a row of logits (cross-entropy; KL divergence from a teacher's top tokens). Each forward is the engine's own (`lar_kernels::ops`), so what is
//! trained is what is served; each backward here is checked against finite differences of that forward
//! (`tests/gradients.rs`).

use lar_kernels::ops;

/// `dx` of `y = rms_norm(x) * w` for one row, given `dy` (overwrites `dx`).
///
/// With `s = 1/sqrt(mean(x²) + eps)` and `g = dy * w`: `dx = s * g - x * s³/n * Σ g·x`.
pub fn rms_norm_backward(x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) {
    let n = x.len() as f32;
    let ss: f32 = x.iter().map(|v| v * v).sum();
    let s = 1.0 / (ss / n + eps).sqrt();
    let gx: f32 = dy.iter().zip(w).zip(x).map(|((d, w), x)| d * w * x).sum();
    let c = s * s * s / n * gx;
    for (((o, d), w), xi) in dx.iter_mut().zip(dy).zip(w).zip(x) {
        *o = s * d * w - xi * c;
    }
}

/// RMS norm of each `d`-wide row of `x` into `out` (the engine's forward).
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, d: usize, out: &mut [f32]) {
    for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        ops::rms_norm(xi, w, eps, oi);
    }
}

/// [`rms_norm_backward`] of each `d`-wide row, the result added to `dx` (a residual stream's gradient).
pub fn rms_norm_rows_backward_add(
    x: &[f32],
    w: &[f32],
    eps: f32,
    d: usize,
    dy: &[f32],
    dx: &mut [f32],
) {
    let mut tmp = vec![0f32; d];
    for ((xi, di), oi) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
    {
        rms_norm_backward(xi, w, eps, di, &mut tmp);
        for (o, t) in oi.iter_mut().zip(&tmp) {
            *o += t;
        }
    }
}

/// The backward of [`lar_kernels::ops::rope`]: each pair rotated back by its angle (the rotation's transpose).
pub fn rope_backward(dx: &mut [f32], pos: usize, inv_freq: &[f32], neox: bool) {
    let half = inv_freq.len();
    for (i, &f) in inv_freq.iter().enumerate() {
        let (s, c) = (pos as f32 * f).sin_cos();
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (d0, d1) = (dx[a], dx[b]);
        dx[a] = d0 * c + d1 * s;
        dx[b] = -d0 * s + d1 * c;
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// `dg` and `du` of `h = act(g) * u`, given `dh`.
pub fn gated_backward(
    act: lar_formats::hparams::Activation,
    g: &[f32],
    u: &[f32],
    dh: &[f32],
    dg: &mut [f32],
    du: &mut [f32],
) {
    use lar_formats::hparams::Activation;
    for i in 0..g.len() {
        let x = g[i];
        let (a, da) = match act {
            Activation::Silu => {
                let sig = 1.0 / (1.0 + (-x).exp());
                (x * sig, sig * (1.0 + x * (1.0 - sig)))
            }
            Activation::Gelu => {
                let t = (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh();
                let dk = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
                (
                    0.5 * x * (1.0 + t),
                    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dk,
                )
            }
        };
        du[i] = dh[i] * a;
        dg[i] = dh[i] * u[i] * da;
    }
}

/// `h = act(g) * u` (the engine's forward) into `h`.
pub fn gated(act: lar_formats::hparams::Activation, g: &[f32], u: &[f32], h: &mut [f32]) {
    h.copy_from_slice(g);
    match act {
        lar_formats::hparams::Activation::Silu => ops::silu_mul(h, u),
        lar_formats::hparams::Activation::Gelu => ops::gelu_mul(h, u),
    }
}

/// Cross-entropy of one row of logits against `target`; turns the row into its gradient times `weight`
/// (`weight * (softmax - onehot)`) and returns the loss (`logsumexp - logit[target]`, in nats, unweighted).
pub fn cross_entropy(row: &mut [f32], target: usize, weight: f32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let loss = (sum.ln() as f32) - ((row[target] as f64).ln() as f32);
    let inv = (1.0 / sum) as f32 * weight;
    for v in row.iter_mut() {
        *v *= inv;
    }
    row[target] -= weight;
    loss
}

/// The KL divergence from a teacher's distribution, known by its top tokens (`(token, probability)`, with mass
/// `m <= 1`) and the rest (`1 - m`, all other tokens as one outcome), to the softmax `q` of one row of logits over
/// the same outcomes: `Σ_top p log(p/q) + (1-m) log((1-m)/q_rest)`. A true divergence (never negative, zero only
/// where the student matches the teacher on the top tokens and on the rest's total). Turns the row into its
/// gradient times `weight` (`q - p` on the top tokens, `q · (1 - (1-m)/q_rest)` elsewhere) and returns the
/// divergence (nats, unweighted).
pub fn kl_topk(row: &mut [f32], teacher: &[(u32, f32)], weight: f32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for v in row.iter() {
        sum += ((*v - max) as f64).exp();
    }
    let lse = max as f64 + sum.ln();
    let q: Vec<f64> = teacher
        .iter()
        .map(|&(t, _)| (row[t as usize] as f64 - lse).exp())
        .collect();
    let (mut kl, mut mass) = (0f64, 0f64);
    for (&(_, p), &qt) in teacher.iter().zip(&q) {
        if p > 0.0 {
            kl += p as f64 * ((p as f64).ln() - qt.ln());
            mass += p as f64;
        }
    }
    let p_rest = (1.0 - mass).max(0.0);
    let q_rest = (1.0 - q.iter().sum::<f64>()).max(1e-12);
    if p_rest > 0.0 {
        kl += p_rest * (p_rest.ln() - q_rest.ln());
    }
    let rest_factor = 1.0 - p_rest / q_rest;
    for v in row.iter_mut() {
        *v = ((*v as f64 - lse).exp() * rest_factor) as f32 * weight;
    }
    for (&(t, p), &qt) in teacher.iter().zip(&q) {
        row[t as usize] = (qt as f32 - p) * weight;
    }
    kl as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_of_a_certain_row_is_near_zero_and_its_gradient_sums_to_zero() {
        let mut row = vec![0.0, 30.0, -5.0, 1.0];
        let loss = cross_entropy(&mut row, 1, 1.0);
        assert!(loss < 1e-6, "{loss}");
        let sum: f32 = row.iter().sum();
        assert!(sum.abs() < 1e-6, "{sum}");
        let mut row = vec![0.0; 8];
        let loss = cross_entropy(&mut row, 3, 0.5);
        assert!((loss - 8f32.ln()).abs() < 1e-6);
        assert!((row[3] - (0.5 / 8.0 - 0.5)).abs() < 1e-7);
    }

    #[test]
    fn rope_backward_undoes_the_rotation() {
        let freqs = ops::rope_inv_freq(8, 10000.0);
        for neox in [false, true] {
            let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.3 - 1.0).collect();
            let mut y = x.clone();
            ops::rope(&mut y, 17, &freqs, neox);
            rope_backward(&mut y, 17, &freqs, neox);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5, "{a} {b}");
            }
        }
    }
}
