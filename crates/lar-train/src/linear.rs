//! A frozen projection with a LoRA beside it: `y = x · Wᵀ + s · (x · Aᵀ) · Bᵀ`, forward and backward.
//!
//! `W` stays in the file's format (any type the engine runs: QLoRA when it is quantized). Its forward is the
//! engine's own matmul ([`frozen`]: activations quantized as in serving). Its backward needs the transposed
//! product `dX = dY · W`, which no serving kernel computes: [`frozen_backward`] runs it on AMX tiles where the CPU
//! has them (`lar_kernels::quant::amx_transposed`: 16 bits of each gradient, sums within ~2^-16), else dequantizes
//! a block of `W`'s rows at a time (shared by the threads) and multiplies every token's gradient by it in f32,
//! four rows per pass so each gradient row is loaded once per four weight rows. [`frozen_backward_reference`] and [`frozen_reference`] are the
//! plain twins (dequantized rows, f32 sums) the fast paths and the finite-difference checks are held to.
//!
//! The LoRA's `A` `[rank, n_in]` and `B` `[n_out, rank]` are f32 (PEFT's layout); [`lora_forward`] keeps
//! `u = x · Aᵀ` for [`lora_backward`], which accumulates both matrices' gradients.

use lar_kernels::pool::{ThreadPool, split};
use lar_kernels::quant::{GgmlType, amx_transposed};
use lar_kernels::tensor::{ActSet, SyncPtr, Weight, matmul};

use crate::simd;

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

/// `dx += dy · w`: the gradient of [`frozen`]'s input, for `w.rows`-wide rows of `dy`. The rows are read from
/// the file; where the engine packed the weight, the file's pages are given back afterwards, so a step holds at
/// most one weight twice (the packed copy is what the forward reads).
pub fn frozen_backward(w: &Weight, dy: &[f32], dx: &mut [f32], pool: &ThreadPool) {
    frozen_backward_resident(w, dy, dx, pool);
    w.release_file_pages();
}

/// [`frozen_backward`] that leaves the file's pages resident: for a caller that runs it several times over the
/// same weight (the output head, a few rows at a time) and gives them back once at the end.
pub fn frozen_backward_resident(w: &Weight, dy: &[f32], dx: &mut [f32], pool: &ThreadPool) {
    let (rows, cols) = (w.rows, w.cols);
    let n = dy.len() / rows;
    if amx_transposed::fits(n, cols) {
        let row = |r: usize, out: &mut [f32]| w.dequantize_row(r, out);
        let exact = w.ty == GgmlType::BF16;
        return amx_transposed::accumulate(rows, cols, exact, &row, dy, dx, pool);
    }
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
            let mine = split(n, tasks.min(n), task);
            let mut t = mine.start;
            while t < mine.end {
                let k = (mine.end - t).min(4);
                // SAFETY: token rows t..t+k of dx are this task's only.
                let dxs =
                    unsafe { std::slice::from_raw_parts_mut(dxp.get().add(t * cols), k * cols) };
                let gs: Vec<&[f32]> = (t..t + k)
                    .map(|i| &dy[i * rows + start..][..count])
                    .collect();
                accumulate_rows(&gs, wb, dxs);
                t += k;
            }
        });
    }
}

/// For each of up to four token rows `i`: `dx[i] += Σ_r g[i][r] · wb[r]` over the rows of a dequantized block.
/// Four weight rows and four tokens a pass: each weight element loaded once feeds four tokens, and each gradient
/// element is loaded and stored once per four weight rows.
fn accumulate_rows(g: &[&[f32]], wb: &[f32], dx: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if lar_kernels::quant::simd_level().avx2() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { accumulate_rows_avx2(g, wb, dx) };
    }
    accumulate_rows_generic(g, wb, dx);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn accumulate_rows_avx2(g: &[&[f32]], wb: &[f32], dx: &mut [f32]) {
    accumulate_rows_generic(g, wb, dx);
}

#[inline(always)]
fn accumulate_rows_generic(g: &[&[f32]], wb: &[f32], dx: &mut [f32]) {
    let count = g[0].len();
    let cols = wb.len() / count.max(1);
    if g.len() == 4 {
        let (d0, rest) = dx.split_at_mut(cols);
        let (d1, rest) = rest.split_at_mut(cols);
        let (d2, d3) = rest.split_at_mut(cols);
        let d3 = &mut d3[..cols];
        let quads = count / 4 * 4;
        for r in (0..quads).step_by(4) {
            let w0 = &wb[r * cols..][..cols];
            let w1 = &wb[(r + 1) * cols..][..cols];
            let w2 = &wb[(r + 2) * cols..][..cols];
            let w3 = &wb[(r + 3) * cols..][..cols];
            let a: [[f32; 4]; 4] = std::array::from_fn(|i| std::array::from_fn(|k| g[i][r + k]));
            for j in 0..cols {
                let (v0, v1, v2, v3) = (w0[j], w1[j], w2[j], w3[j]);
                d0[j] += a[0][0] * v0 + a[0][1] * v1 + a[0][2] * v2 + a[0][3] * v3;
                d1[j] += a[1][0] * v0 + a[1][1] * v1 + a[1][2] * v2 + a[1][3] * v3;
                d2[j] += a[2][0] * v0 + a[2][1] * v1 + a[2][2] * v2 + a[2][3] * v3;
                d3[j] += a[3][0] * v0 + a[3][1] * v1 + a[3][2] * v2 + a[3][3] * v3;
            }
        }
        for r in quads..count {
            let w = &wb[r * cols..][..cols];
            for (i, d) in [&mut *d0, &mut *d1, &mut *d2, &mut *d3]
                .into_iter()
                .enumerate()
            {
                let a = g[i][r];
                for (x, v) in d.iter_mut().zip(w) {
                    *x += a * v;
                }
            }
        }
        return;
    }
    for (i, d) in dx.chunks_exact_mut(cols).enumerate() {
        for r in 0..count {
            let a = g[i][r];
            for (x, v) in d.iter_mut().zip(&wb[r * cols..][..cols]) {
                *x += a * v;
            }
        }
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

/// `B` `[n_out, rank]` transposed to `[rank, n_out]`, so products over the output run as long vectors.
fn transposed(p: &Pair) -> Vec<f32> {
    let mut bt = vec![0f32; p.b.len()];
    for o in 0..p.n_out {
        for k in 0..p.rank {
            bt[k * p.n_out + o] = p.b[o * p.rank + k];
        }
    }
    bt
}

/// `u = x · Aᵀ` (kept for the backward) and `out += s · u · Bᵀ`, token rows shared out over the pool.
pub fn lora_forward(
    p: &Pair,
    s: f32,
    x: &[f32],
    u: &mut [f32],
    out: &mut [f32],
    pool: &ThreadPool,
) {
    let (r, n, n_in, n_out) = (p.rank, x.len() / p.n_in, p.n_in, p.n_out);
    let bt = transposed(p);
    let (up, op) = (SyncPtr(u.as_mut_ptr()), SyncPtr(out.as_mut_ptr()));
    let tasks = pool.n_threads().min(n);
    pool.run(tasks, &|task| {
        let mine = split(n, tasks, task);
        // SAFETY: token rows `mine` of `u` and `out` are this task's only.
        let ut =
            unsafe { std::slice::from_raw_parts_mut(up.get().add(mine.start * r), mine.len() * r) };
        for (t, ur) in mine.clone().zip(ut.chunks_exact_mut(r)) {
            simd::dots(
                &x[t * n_in..][..n_in],
                |k| &p.a[k * n_in..][..n_in],
                0..r,
                ur,
            );
        }
        let ut = &*ut;
        simd::combine_rows(
            mine.start,
            mine.end,
            |_| 0..r,
            |t, k| s * ut[(t - mine.start) * r + k],
            |k| &bt[k * n_out..][..n_out],
            // SAFETY: as above.
            |t| unsafe { std::slice::from_raw_parts_mut(op.get().add(t * n_out), n_out) },
        );
    });
}

/// Gradients of [`lora_forward`] given `dy`: adds to `g` (the pair's gradient) and to `dx` (`du · A`), where
/// `du = s · dy · B`. Each product is shared out over the pool by the rows it writes.
#[allow(clippy::too_many_arguments)]
pub fn lora_backward(
    p: &Pair,
    s: f32,
    x: &[f32],
    u: &[f32],
    dy: &[f32],
    g: &mut Pair,
    dx: &mut [f32],
    pool: &ThreadPool,
) {
    let (r, n, n_in, n_out) = (p.rank, x.len() / p.n_in, p.n_in, p.n_out);
    let threads = pool.n_threads();
    let bt = transposed(p);
    // du[t, k] = s · dy[t] · Bᵀ[k]; then dx[t] += Σ_k du[t, k] · A[k]: token rows shared out.
    let mut du = vec![0f32; n * r];
    let (dup, dxp) = (SyncPtr(du.as_mut_ptr()), SyncPtr(dx.as_mut_ptr()));
    let tasks = threads.min(n);
    pool.run(tasks, &|task| {
        let mine = split(n, tasks, task);
        // SAFETY: token rows `mine` of du and of dx are this task's only.
        let dut = unsafe {
            std::slice::from_raw_parts_mut(dup.get().add(mine.start * r), mine.len() * r)
        };
        for (t, dr) in mine.clone().zip(dut.chunks_exact_mut(r)) {
            simd::dots(
                &dy[t * n_out..][..n_out],
                |k| &bt[k * n_out..][..n_out],
                0..r,
                dr,
            );
            dr.iter_mut().for_each(|d| *d *= s);
        }
        let dut = &*dut;
        simd::combine_rows(
            mine.start,
            mine.end,
            |_| 0..r,
            |t, k| dut[(t - mine.start) * r + k],
            |k| &p.a[k * n_in..][..n_in],
            // SAFETY: as above.
            |t| unsafe { std::slice::from_raw_parts_mut(dxp.get().add(t * n_in), n_in) },
        );
    });
    // gBᵀ[k] = s · Σ_t u[t, k] · dy[t], then added to gB; gA[k] += Σ_t du[t, k] · x[t].
    let mut gbt = vec![0f32; r * n_out];
    outer_sum(u, s, dy, &mut gbt, (n, r), pool);
    for o in 0..n_out {
        for k in 0..r {
            g.b[o * r + k] += gbt[k * n_out + o];
        }
    }
    outer_sum(&du, 1.0, x, &mut g.a, (n, r), pool);
}

/// `out[k] += scale · Σ_t coef[t, k] · rows[t]` for `coef` `[n, r]`, `rows` `[n, w]`, `out` `[r, w]`: a sum of
/// outer products (a LoRA matrix's gradient), columns shared out over the pool 64 at a time.
fn outer_sum(
    coef: &[f32],
    scale: f32,
    rows: &[f32],
    out: &mut [f32],
    (n, r): (usize, usize),
    pool: &ThreadPool,
) {
    let w = out.len() / r;
    let op = SyncPtr(out.as_mut_ptr());
    let chunks = w.div_ceil(64);
    let tasks = pool.n_threads().min(chunks);
    pool.run(tasks, &|task| {
        for c in split(chunks, tasks, task) {
            let cols = c * 64..((c + 1) * 64).min(w);
            simd::combine_rows(
                0,
                r,
                |_| 0..n,
                |k, t| scale * coef[t * r + k],
                |t| &rows[t * w + cols.start..t * w + cols.end],
                // SAFETY: these columns of `out` are this task's only.
                |k| unsafe {
                    std::slice::from_raw_parts_mut(op.get().add(k * w + cols.start), cols.len())
                },
            );
        }
    });
}
