//! A frozen projection with a LoRA beside it: `y = x · Wᵀ + s · (x · Aᵀ) · Bᵀ`, forward and backward.
//!
//! `W` stays in the file's format (any type the engine runs: QLoRA when it is quantized). Its forward is the
//! engine's own matmul ([`frozen`]: activations quantized as in serving). Its backward needs the transposed
//! product `dX = dY · W`, which no serving kernel computes: [`frozen_backward`] dequantizes a block of `W`'s rows
//! at a time (shared by the threads) and multiplies every token's gradient by it, four rows per pass so each
//! gradient row is loaded once per four weight rows. [`frozen_backward_reference`] and [`frozen_reference`] are the
//! plain twins (dequantized rows, f32 sums) the fast paths and the finite-difference checks are held to.
//!
//! The LoRA's `A` `[rank, n_in]` and `B` `[n_out, rank]` are f32 (PEFT's layout); [`lora_forward`] keeps
//! `u = x · Aᵀ` for [`lora_backward`], which accumulates both matrices' gradients.

use lar_kernels::pool::{ThreadPool, split};
use lar_kernels::tensor::{ActSet, SyncPtr, Weight, matmul};

/// `out = x · wᵀ` by the engine's kernels, for `w.cols`-wide rows of `x`.
pub fn frozen(w: &Weight, x: &[f32], out: &mut [f32], pool: &ThreadPool) {
    let n = x.len() / w.cols;
    let mut acts = ActSet::new(x, n, w.cols, pool);
    matmul(w, acts.for_weight(w), out, pool);
}

/// The plain twin of [`frozen`]: each row of `w` dequantized, f32 dot products.
pub fn frozen_reference(w: &Weight, x: &[f32], out: &mut [f32]) {
    let mut row = vec![0f32; w.cols];
    for r in 0..w.rows {
        w.dequantize_row(r, &mut row);
        for (t, xt) in x.chunks_exact(w.cols).enumerate() {
            out[t * w.rows + r] = xt.iter().zip(&row).map(|(a, b)| a * b).sum();
        }
    }
}

/// `dx += dy · w`: the gradient of [`frozen`]'s input, for `w.rows`-wide rows of `dy`.
pub fn frozen_backward(w: &Weight, dy: &[f32], dx: &mut [f32], pool: &ThreadPool) {
    let (rows, cols) = (w.rows, w.cols);
    let n = dy.len() / rows;
    // A block of rows about 512 KB in f32, a multiple of four rows.
    let block = ((1 << 17) / cols).clamp(4, rows.next_multiple_of(4)) & !3;
    let mut buf = vec![0f32; block * cols];
    let tasks = pool.n_threads();
    let dxp = SyncPtr(dx.as_mut_ptr());
    for start in (0..rows).step_by(block) {
        let count = block.min(rows - start);
        let bp = SyncPtr(buf.as_mut_ptr());
        pool.run(tasks.min(count), &|task| {
            for r in split(count, tasks.min(count), task) {
                // SAFETY: row r of the block is written by this task only.
                let out = unsafe { std::slice::from_raw_parts_mut(bp.get().add(r * cols), cols) };
                w.dequantize_row(start + r, out);
            }
        });
        let wb = &buf[..count * cols];
        pool.run(tasks.min(n), &|task| {
            for t in split(n, tasks.min(n), task) {
                // SAFETY: token row t of dx is this task's only.
                let dxt = unsafe { std::slice::from_raw_parts_mut(dxp.get().add(t * cols), cols) };
                accumulate_rows(&dy[t * rows + start..][..count], wb, dxt);
            }
        });
    }
}

/// `dx += Σ_r g[r] · wb[r]` over the rows of a dequantized block, four rows a pass.
fn accumulate_rows(g: &[f32], wb: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if lar_kernels::quant::simd_level().avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { accumulate_rows_avx2(g, wb, dx) };
    }
    accumulate_rows_generic(g, wb, dx);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_rows_avx2(g: &[f32], wb: &[f32], dx: &mut [f32]) {
    accumulate_rows_generic(g, wb, dx);
}

#[inline(always)]
fn accumulate_rows_generic(g: &[f32], wb: &[f32], dx: &mut [f32]) {
    let cols = dx.len();
    let mut quads = g.chunks_exact(4);
    let mut r = 0;
    for q in quads.by_ref() {
        let (w0, w1, w2, w3) = (
            &wb[r * cols..][..cols],
            &wb[(r + 1) * cols..][..cols],
            &wb[(r + 2) * cols..][..cols],
            &wb[(r + 3) * cols..][..cols],
        );
        for j in 0..cols {
            dx[j] += q[0] * w0[j] + q[1] * w1[j] + q[2] * w2[j] + q[3] * w3[j];
        }
        r += 4;
    }
    for &a in quads.remainder() {
        for (d, w) in dx.iter_mut().zip(&wb[r * cols..][..cols]) {
            *d += a * w;
        }
        r += 1;
    }
}

/// The plain twin of [`frozen_backward`]: row by row, token by token.
pub fn frozen_backward_reference(w: &Weight, dy: &[f32], dx: &mut [f32]) {
    let mut row = vec![0f32; w.cols];
    let n = dy.len() / w.rows;
    for r in 0..w.rows {
        w.dequantize_row(r, &mut row);
        for t in 0..n {
            let g = dy[t * w.rows + r];
            for (d, v) in dx[t * w.cols..(t + 1) * w.cols].iter_mut().zip(&row) {
                *d += g * v;
            }
        }
    }
}

/// A trainable low-rank pair: `A` `[rank, n_in]`, `B` `[n_out, rank]`, row-major f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub rank: usize,
    pub n_in: usize,
    pub n_out: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

impl Pair {
    /// A pair of zeros of the same shape (a gradient or an optimizer moment).
    pub fn zeros_like(&self) -> Self {
        Self {
            a: vec![0.0; self.a.len()],
            b: vec![0.0; self.b.len()],
            ..*self
        }
    }
}

/// `u = x · Aᵀ` (kept for the backward) and `out += s · u · Bᵀ`.
pub fn lora_forward(p: &Pair, s: f32, x: &[f32], u: &mut [f32], out: &mut [f32]) {
    let r = p.rank;
    for ((xt, ut), ot) in x
        .chunks_exact(p.n_in)
        .zip(u.chunks_exact_mut(r))
        .zip(out.chunks_exact_mut(p.n_out))
    {
        for (k, uk) in ut.iter_mut().enumerate() {
            *uk = dot(xt, &p.a[k * p.n_in..(k + 1) * p.n_in]);
        }
        for (o, y) in ot.iter_mut().enumerate() {
            *y += s * dot(ut, &p.b[o * r..(o + 1) * r]);
        }
    }
}

/// Gradients of [`lora_forward`] given `dy`: adds to `g` (the pair's gradient) and to `dx` (`du · A`).
pub fn lora_backward(
    p: &Pair,
    s: f32,
    x: &[f32],
    u: &[f32],
    dy: &[f32],
    g: &mut Pair,
    dx: &mut [f32],
) {
    let r = p.rank;
    let mut du = vec![0f32; r];
    for (((xt, ut), dyt), dxt) in x
        .chunks_exact(p.n_in)
        .zip(u.chunks_exact(r))
        .zip(dy.chunks_exact(p.n_out))
        .zip(dx.chunks_exact_mut(p.n_in))
    {
        du.fill(0.0);
        for (o, &d) in dyt.iter().enumerate() {
            if d == 0.0 {
                continue;
            }
            let sd = s * d;
            axpy(sd, ut, &mut g.b[o * r..(o + 1) * r]);
            axpy(sd, &p.b[o * r..(o + 1) * r], &mut du);
        }
        for (k, &duk) in du.iter().enumerate() {
            axpy(duk, xt, &mut g.a[k * p.n_in..(k + 1) * p.n_in]);
            axpy(duk, &p.a[k * p.n_in..(k + 1) * p.n_in], dxt);
        }
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = a.mul_add(*xi, *yi);
    }
}
