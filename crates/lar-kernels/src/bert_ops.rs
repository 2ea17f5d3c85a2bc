//! The encoder's f32 work besides its projections, in AVX-512 with plain twins: erf GELU (an A&S 7.1.26 erfc,
//! absolute error ~2e-7), LayerNorm, and bidirectional attention of every sequence's tokens over each other.
//!
//! Attention, per (sequence, head): the head's keys transposed into a zero-padded `hd × L` block, then for each
//! group of 8 queries the scores (8 × L, in L1) by an 8 × 32 register tile, an exact softmax (max-subtracted, a
//! vector `exp` with relative error ~2e-7), and the weighted sum of values by an 8 × hd tile. The twins
//! ([`attention_reference`], [`layer_norm_reference`], [`gelu_erf`]) are the straightforward loops;
//! the tests compare.

use crate::pool::ThreadPool;
use crate::quant::{SimdLevel, simd_level};
use crate::tensor::SyncPtr;

/// Q, K and V of a batch of tokens: token `j`'s head `h` at `q[j * ld + h * hd..]` (and likewise `k`, `v`).
#[derive(Clone, Copy)]
pub struct Qkv<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub ld: usize,
}

/// Whether the AVX-512 kernels of this file run here.
fn fast() -> bool {
    simd_level() == SimdLevel::Avx512Vnni
}

/// `softmax(q kᵀ / √hd) v` of each token over the tokens of its own sequence (`starts[s]..starts[s + 1]`), per
/// head, into `out` (`d` per token); one task per (sequence, head).
pub fn attention(
    x: Qkv,
    d: usize,
    heads: usize,
    starts: &[usize],
    out: &mut [f32],
    pool: &ThreadPool,
) {
    let hd = d / heads;
    let n_seq = starts.len() - 1;
    let n = starts[n_seq];
    assert!(out.len() >= n * d);
    for s in [x.q, x.k, x.v] {
        assert!(
            n == 0 || s.len() >= (n - 1) * x.ld + d,
            "attention input too short"
        );
    }
    let ptr = SyncPtr(out.as_mut_ptr());
    let vector = fast() && (hd == 32 || hd == 64);
    pool.run(n_seq * heads, &|task| {
        let (s, h) = (task / heads, task % heads);
        let (a, b) = (starts[s], starts[s + 1]);
        // SAFETY: task (s, h) alone writes the head-h columns of sequence s's rows, inside `out` (asserted).
        #[cfg(target_arch = "x86_64")]
        if vector {
            return unsafe { x86::head(x, d, hd, h, a, b, ptr) };
        }
        let _ = vector;
        unsafe { head_reference(x, d, hd, h, a, b, ptr) };
    });
}

/// The plain twin of [`attention`].
pub fn attention_reference(x: Qkv, d: usize, heads: usize, starts: &[usize], out: &mut [f32]) {
    let hd = d / heads;
    let ptr = SyncPtr(out.as_mut_ptr());
    assert!(out.len() >= starts[starts.len() - 1] * d);
    for w in starts.windows(2) {
        for h in 0..heads {
            // SAFETY: in bounds (asserted); one writer.
            unsafe { head_reference(x, d, hd, h, w[0], w[1], ptr) };
        }
    }
}

/// One head of one sequence (tokens `a..b`), plainly.
///
/// # Safety
/// `out` must hold rows `a..b` of `d` and no one else may write their head-`h` columns meanwhile.
unsafe fn head_reference(
    x: Qkv,
    d: usize,
    hd: usize,
    h: usize,
    a: usize,
    b: usize,
    out: SyncPtr<f32>,
) {
    let scale = 1.0 / (hd as f32).sqrt();
    let at = |j: usize| j * x.ld + h * hd;
    let mut w = vec![0f32; b - a];
    let mut acc = vec![0f32; hd];
    for i in a..b {
        let qi = &x.q[at(i)..at(i) + hd];
        for (j, wj) in (a..b).zip(w.iter_mut()) {
            *wj = qi
                .iter()
                .zip(&x.k[at(j)..at(j) + hd])
                .map(|(p, q)| p * q)
                .sum::<f32>()
                * scale;
        }
        let m = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        w.iter_mut().for_each(|x| *x = (*x - m).exp());
        let sum: f32 = w.iter().sum();
        acc.fill(0.0);
        for (j, &wj) in (a..b).zip(&w) {
            for (o, v) in acc.iter_mut().zip(&x.v[at(j)..at(j) + hd]) {
                *o += wj * v;
            }
        }
        // SAFETY: the caller's.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(i * d + h * hd), hd) };
        for (o, v) in dst.iter_mut().zip(&acc) {
            *o = v / sum;
        }
    }
}

/// LayerNorm of each row of `d` in place: `(x - mean) / sqrt(var + eps) * w + b`; rows shared out over `pool`.
pub fn layer_norm(x: &mut [f32], d: usize, w: &[f32], b: &[f32], eps: f32, pool: &ThreadPool) {
    let rows = x.len() / d;
    let parts = if rows < 32 { 1 } else { pool.n_threads() };
    let ptr = SyncPtr(x.as_mut_ptr());
    let vector = fast() && d.is_multiple_of(16);
    pool.run(parts, &|i| {
        let r = crate::pool::split(rows, parts, i);
        // SAFETY: the parts' row ranges are disjoint.
        let piece =
            unsafe { std::slice::from_raw_parts_mut(ptr.get().add(r.start * d), r.len() * d) };
        #[cfg(target_arch = "x86_64")]
        if vector {
            // SAFETY: the CPU has AVX-512 (fast()); d is a multiple of 16.
            return unsafe { x86::layer_norm(piece, d, w, b, eps) };
        }
        let _ = vector;
        layer_norm_reference(piece, d, w, b, eps);
    });
}

/// The plain twin of [`layer_norm`].
pub fn layer_norm_reference(x: &mut [f32], d: usize, w: &[f32], b: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, ww), bb) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - mean) * inv * ww + bb;
        }
    }
}

/// A&S 7.1.26 constants: `erfc(z) ≈ t·(a1 + t·(a2 + …)))·e^{-z²}`, `t = 1/(1 + p·z)`, z ≥ 0.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152_1,
    1.061_405_4,
];

/// erf GELU in f32 by the vector kernel's formula (scalar; the AVX-512 kernel computes the same per lane).
pub fn gelu_fast(x: f32) -> f32 {
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / ERF_P.mul_add(z, 1.0);
    let p = ERF_A[4]
        .mul_add(t, ERF_A[3])
        .mul_add(t, ERF_A[2])
        .mul_add(t, ERF_A[1])
        .mul_add(t, ERF_A[0]);
    let erfc = p * t * (-z * z).exp();
    // x ≥ 0: Φ = 1 - erfc/2; x < 0: Φ = erfc/2 (no cancellation in the tail).
    let phi2 = if x >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * x * phi2
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// `e^x` per lane: Cody-Waite reduction and the Cephes polynomial (as `ops`' scalar `fast_exp`), 2^k by
    /// `vscalefps`. Relative error ~2e-7; inputs clamped to [-87, 88].
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let k =
            _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
                x,
                _mm512_set1_ps(std::f32::consts::LOG2_E),
                _mm512_set1_ps(0.5),
            ));
        let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693_145_75), x);
        let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.428_606_8e-6), r);
        let mut p = _mm512_set1_ps(1.987_569_1e-4);
        for c in [
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            1.666_666_5e-1,
            0.5,
        ] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
        }
        let e = _mm512_add_ps(
            _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
            _mm512_set1_ps(1.0),
        );
        _mm512_scalef_ps(e, k)
    }

    /// [`gelu_fast`] on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub(crate) fn gelu16(x: __m512) -> __m512 {
        let z = _mm512_mul_ps(
            _mm512_abs_ps(x),
            _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
        );
        let t = _mm512_div_ps(
            _mm512_set1_ps(1.0),
            _mm512_fmadd_ps(_mm512_set1_ps(ERF_P), z, _mm512_set1_ps(1.0)),
        );
        let mut p = _mm512_set1_ps(ERF_A[4]);
        for c in [ERF_A[3], ERF_A[2], ERF_A[1], ERF_A[0]] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(c));
        }
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(z, z)));
        let erfc = _mm512_mul_ps(_mm512_mul_ps(p, t), e);
        let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
        let phi2 = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0), erfc), erfc);
        _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), x), phi2)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }

    /// LayerNorm rows of `d` (a multiple of 16), two passes as the reference, sums in 16 lanes.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn layer_norm(x: &mut [f32], d: usize, w: &[f32], b: &[f32], eps: f32) {
        assert!(w.len() >= d && b.len() >= d);
        for row in x.chunks_exact_mut(d) {
            // SAFETY: every offset is below d, inside the row, w and b.
            unsafe {
                let p = row.as_mut_ptr();
                let mut s = _mm512_setzero_ps();
                for c in (0..d).step_by(16) {
                    s = _mm512_add_ps(s, load(p.add(c)));
                }
                let mean = _mm512_set1_ps(_mm512_reduce_add_ps(s) / d as f32);
                let mut v = _mm512_setzero_ps();
                for c in (0..d).step_by(16) {
                    let t = _mm512_sub_ps(load(p.add(c)), mean);
                    v = _mm512_fmadd_ps(t, t, v);
                }
                let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(v) / d as f32 + eps).sqrt());
                for c in (0..d).step_by(16) {
                    let t = _mm512_mul_ps(_mm512_sub_ps(load(p.add(c)), mean), inv);
                    let y = _mm512_fmadd_ps(t, load(w.as_ptr().add(c)), load(b.as_ptr().add(c)));
                    _mm512_storeu_ps(p.add(c), y);
                }
            }
        }
    }

    /// Queries per tile.
    const R: usize = 8;

    /// One head of one sequence (tokens `a..b`); `hd` is 32 or 64.
    ///
    /// # Safety
    /// AVX-512; `out` holds rows `a..b` of `d`, whose head-`h` columns no one else writes meanwhile; the inputs
    /// hold those rows (asserted by [`attention`]).
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn head(
        x: Qkv,
        d: usize,
        hd: usize,
        h: usize,
        a: usize,
        b: usize,
        out: SyncPtr<f32>,
    ) {
        let l = b - a;
        let lp = l.div_ceil(32) * 32;
        let scale = 1.0 / (hd as f32).sqrt();
        // Keys transposed 16 at a time by gathers (columns past l stay zero).
        let mut kt = vec![0f32; hd * lp];
        // SAFETY: the gathers read rows a..b (masked past l) of the head's columns; stores are inside kt.
        unsafe {
            let k0 = x.k.as_ptr().add(a * x.ld + h * hd);
            let stride = _mm512_mullo_epi32(
                _mm512_set1_epi32(x.ld as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            );
            for j in (0..l).step_by(16) {
                let valid = if j + 16 <= l {
                    0xFFFF
                } else {
                    (1u32 << (l - j)) as u16 - 1
                };
                let base = k0.add(j * x.ld);
                for dd in 0..hd {
                    let v = _mm512_mask_i32gather_ps::<4>(
                        _mm512_setzero_ps(),
                        valid,
                        stride,
                        base.add(dd),
                    );
                    _mm512_storeu_ps(kt.as_mut_ptr().add(dd * lp + j), v);
                }
            }
        }
        let mut s = vec![0f32; R * lp];
        let mut i = a;
        // SAFETY (both arms): rows i..i+rows are inside a..b; the buffers are sized for R rows of lp.
        unsafe {
            while i + R <= b {
                tile::<R>(x, d, hd, h, a, l, lp, scale, i, &kt, &mut s, out);
                i += R;
            }
            while i < b {
                tile::<1>(x, d, hd, h, a, l, lp, scale, i, &kt, &mut s, out);
                i += 1;
            }
        }
    }

    /// Queries `i..i + T` of the head: scores, softmax, values.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // register tiles, indexed on purpose
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    unsafe fn tile<const T: usize>(
        x: Qkv,
        d: usize,
        hd: usize,
        h: usize,
        a: usize,
        l: usize,
        lp: usize,
        scale: f32,
        i: usize,
        kt: &[f32],
        s: &mut [f32],
        out: SyncPtr<f32>,
    ) {
        // SAFETY (whole body): see `head`; kt is hd × lp, s is at least T × lp, lp a multiple of 32.
        unsafe {
            let q: [*const f32; T] =
                std::array::from_fn(|r| x.q.as_ptr().add((i + r) * x.ld + h * hd));
            let sc = _mm512_set1_ps(scale);
            for jb in (0..lp).step_by(32) {
                let mut acc = [[_mm512_setzero_ps(); 2]; T];
                for dd in 0..hd {
                    let k0 = load(kt.as_ptr().add(dd * lp + jb));
                    let k1 = load(kt.as_ptr().add(dd * lp + jb + 16));
                    for r in 0..T {
                        let qv = _mm512_set1_ps(*q[r].add(dd));
                        acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
                    }
                }
                for r in 0..T {
                    _mm512_storeu_ps(
                        s.as_mut_ptr().add(r * lp + jb),
                        _mm512_mul_ps(acc[r][0], sc),
                    );
                    _mm512_storeu_ps(
                        s.as_mut_ptr().add(r * lp + jb + 16),
                        _mm512_mul_ps(acc[r][1], sc),
                    );
                }
            }
            let mut inv = [0f32; T];
            for (r, inv) in inv.iter_mut().enumerate() {
                let row = &mut s[r * lp..r * lp + lp];
                let mut mv = _mm512_set1_ps(f32::NEG_INFINITY);
                for c in (0..lp).step_by(16) {
                    let valid = if c + 16 <= l {
                        0xFFFF
                    } else {
                        (1u32 << (l.saturating_sub(c))) as u16 - 1
                    };
                    mv = _mm512_mask_max_ps(mv, valid, mv, load(row.as_ptr().add(c)));
                }
                let mv = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
                let mut sum = _mm512_setzero_ps();
                for c in (0..lp).step_by(16) {
                    let e = exp16(_mm512_sub_ps(load(row.as_ptr().add(c)), mv));
                    // Padding columns (keys past l) weigh nothing.
                    let valid = if c + 16 <= l {
                        0xFFFF
                    } else {
                        (1u32 << (l.saturating_sub(c))) as u16 - 1
                    };
                    let e = _mm512_maskz_mov_ps(valid, e);
                    sum = _mm512_add_ps(sum, e);
                    _mm512_storeu_ps(row.as_mut_ptr().add(c), e);
                }
                *inv = 1.0 / _mm512_reduce_add_ps(sum);
            }
            let v0 = x.v.as_ptr().add(a * x.ld + h * hd);
            for hb in (0..hd).step_by(32) {
                let mut acc = [[_mm512_setzero_ps(); 2]; T];
                for j in 0..l {
                    let vp = v0.add(j * x.ld + hb);
                    let (va, vb) = (load(vp), load(vp.add(16)));
                    for r in 0..T {
                        let p = _mm512_set1_ps(*s.as_ptr().add(r * lp + j));
                        acc[r][0] = _mm512_fmadd_ps(p, va, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(p, vb, acc[r][1]);
                    }
                }
                for r in 0..T {
                    let dst = out.get().add((i + r) * d + h * hd + hb);
                    let iv = _mm512_set1_ps(inv[r]);
                    _mm512_storeu_ps(dst, _mm512_mul_ps(acc[r][0], iv));
                    _mm512_storeu_ps(dst.add(16), _mm512_mul_ps(acc[r][1], iv));
                }
            }
        }
    }
}

/// `x * Φ(x)` with the exact (erf) normal CDF, as BERT's "gelu".
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x as f64 / std::f64::consts::SQRT_2) as f32)
}

/// erf to within 1.2e-7 (Numerical Recipes' erfc by Chebyshev fitting).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_and_gelu_against_known_values() {
        // erf(0.5), erf(1), erf(2) to 9 digits; GELU(1) = 0.841344746.
        for (x, want) in [
            (0.5, 0.520_499_878),
            (1.0, 0.842_700_793),
            (2.0, 0.995_322_265),
            (-1.0, -0.842_700_793),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x}) = {}", erf(x));
        }
        assert!((gelu_erf(1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(gelu_erf(0.0), 0.0);
    }

    fn rand(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn gelu_fast_matches_erf_gelu() {
        for i in -4000..=4000 {
            let x = i as f32 * 0.0025;
            let (g, e) = (gelu_fast(x), gelu_erf(x));
            assert!(
                (g - e).abs() <= 1e-6 * (1.0 + e.abs()),
                "gelu({x}) = {g}, want {e}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        if fast() {
            #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
            fn lanes(x: &[f32; 16]) -> [f32; 16] {
                use std::arch::x86_64::*;
                let mut o = [0f32; 16];
                // SAFETY: 16 f32 each way.
                unsafe {
                    _mm512_storeu_ps(o.as_mut_ptr(), x86::gelu16(_mm512_loadu_ps(x.as_ptr())))
                };
                o
            }
            for i in (-4000..4000).step_by(16) {
                let x: [f32; 16] = std::array::from_fn(|k| (i + k as i32) as f32 * 0.0025);
                // SAFETY: the CPU has AVX-512 (fast()).
                let g = unsafe { lanes(&x) };
                for (x, g) in x.iter().zip(g) {
                    let e = gelu_erf(*x);
                    assert!(
                        (g - e).abs() <= 1e-6 * (1.0 + e.abs()),
                        "gelu16({x}) = {g}, want {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn layer_norm_matches_reference() {
        let pool = ThreadPool::new(2);
        let (d, rows) = (384, 50);
        let mut seed = 3;
        let x: Vec<f32> = (0..d * rows).map(|_| rand(&mut seed) * 4.0 + 1.0).collect();
        let w: Vec<f32> = (0..d).map(|_| rand(&mut seed)).collect();
        let b: Vec<f32> = (0..d).map(|_| rand(&mut seed)).collect();
        let (mut got, mut want) = (x.clone(), x);
        layer_norm(&mut got, d, &w, &b, 1e-12, &pool);
        layer_norm_reference(&mut want, d, &w, &b, 1e-12);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{g} vs {e}");
        }
    }

    #[test]
    fn attention_matches_reference() {
        let pool = ThreadPool::new(2);
        for (d, heads) in [(384, 12), (128, 2), (96, 4)] {
            let starts = [0usize, 1, 9, 26, 59, 100];
            let n = *starts.last().unwrap();
            let ld = 3 * d;
            let mut seed = 11;
            let qkv: Vec<f32> = (0..n * ld).map(|_| rand(&mut seed) * 3.0).collect();
            let x = Qkv {
                q: &qkv,
                k: &qkv[d..],
                v: &qkv[2 * d..],
                ld,
            };
            let (mut got, mut want) = (vec![0f32; n * d], vec![0f32; n * d]);
            attention(x, d, heads, &starts, &mut got, &pool);
            attention_reference(x, d, heads, &starts, &mut want);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 2e-5 * (1.0 + e.abs()),
                    "d {d} at {i}: {g} vs {e}"
                );
            }
        }
    }
}
