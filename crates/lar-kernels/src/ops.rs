//! Plain f32 operations of a transformer layer: RMS norm, rotary embeddings, activations, softmax, dot and axpy.
//!
//! These are written as simple loops over fixed-width chunks so the compiler vectorizes them; the `*_fast` entry
//! points compile the same code a second time with AVX2+FMA enabled and pick it at run time, so one release binary
//! is fast on every x86-64 machine without `-C target-cpu=native`.

#[cfg(target_arch = "x86_64")]
use crate::quant::simd_level;

/// Calls `$body` (an expression using the caller's arguments) compiled with AVX2+FMA when the CPU has them.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
                if simd_level().avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked by simd_level).
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

multiversion! {
/// `y *= a`
fn scale(a: f32, y: &mut [f32]) {
    for v in y.iter_mut() {
        *v *= a;
    }
}
}

multiversion! {
/// `out = x / rms(x) * w`, computed in f32 like ggml (sum of squares, then `1/sqrt(mean + eps)`).
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = c[i].mul_add(c[i], acc[i]);
        }
    }
    let mut ss: f32 = acc.iter().sum();
    for v in rem {
        ss += v * v;
    }
    let s = 1.0 / (ss / x.len() as f32 + eps).sqrt();
    for ((o, xi), wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * s * wi;
    }
}
}

multiversion! {
/// `a = silu(a) * b`
fn silu_mul(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = *x / (1.0 + fast_exp(-*x)) * y;
    }
}
}

multiversion! {
/// `a = gelu(a) * b`, with the tanh approximation (as ggml's `gelu`); `tanh(u) = 1 - 2 / (1 + e^{2u})` through
/// the vectorizable exp (absolute error ~1e-7 against libm's tanh, which does not vectorize).
fn gelu_mul(a: &mut [f32], b: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (x, y) in a.iter_mut().zip(b) {
        let v = *x;
        let u = SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v * v);
        let tanh = 1.0 - 2.0 / (1.0 + fast_exp(2.0 * u));
        *x = 0.5 * v * (1.0 + tanh) * y;
    }
}
}

/// `gelu_mul` with libm's tanh: the reference twin.
pub fn gelu_mul_reference(a: &mut [f32], b: &[f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (x, y) in a.iter_mut().zip(b) {
        let v = *x;
        *x = 0.5 * v * (1.0 + (SQRT_2_OVER_PI * v * (1.0 + 0.044715 * v * v)).tanh()) * y;
    }
}

/// `dot(a, f16 b)`: a query against a cached key.
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd_level().avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked by simd_level).
        return unsafe { f16x86::dot(a, b) };
    }
    a.iter()
        .zip(b)
        .map(|(x, &h)| x * half::f16::from_bits(h).to_f32())
        .sum()
}

/// `y += w * f16 x`: a cached value row into an attention accumulator.
pub fn axpy_f16(w: f32, x: &[u16], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd_level().avx2() {
        // SAFETY: as above.
        return unsafe { f16x86::axpy(w, x, y) };
    }
    for (yi, &h) in y.iter_mut().zip(x) {
        *yi += w * half::f16::from_bits(h).to_f32();
    }
}

/// f32 to f16 bit patterns (round to nearest even), for the KV cache.
pub fn f32_to_f16(x: &[f32], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if simd_level().avx2() {
        // SAFETY: as above.
        return unsafe { f16x86::convert(x, out) };
    }
    for (o, v) in out.iter_mut().zip(x) {
        *o = half::f16::from_f32(*v).to_bits();
    }
}

/// F16C versions of the f16 helpers, eight lanes at a time.
#[cfg(target_arch = "x86_64")]
mod f16x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn dot(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            while i + 8 <= n {
                let k = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), k, acc);
                i += 8;
            }
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let mut total = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        for j in i..n {
            total += a[j] * half::f16::from_bits(b[j]).to_f32();
        }
        total
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn axpy(w: f32, x: &[u16], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let wv = _mm256_set1_ps(w);
        let mut i = 0;
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i) as *const __m128i));
                let p = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(wv, v, _mm256_loadu_ps(p)));
                i += 8;
            }
        }
        for j in i..n {
            y[j] += w * half::f16::from_bits(x[j]).to_f32();
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub fn convert(x: &[f32], out: &mut [u16]) {
        let n = x.len().min(out.len());
        let mut i = 0;
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            while i + 8 <= n {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(
                    x.as_ptr().add(i),
                ));
                _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, h);
                i += 8;
            }
        }
        for j in i..n {
            out[j] = half::f16::from_f32(x[j]).to_bits();
        }
    }
}

multiversion! {
/// `a · b` in eight independent lanes (so it vectorizes without reordering a single sum), then the lanes summed.
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] = x[i].mul_add(y[i], lanes[i]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}
}

multiversion! {
/// `y += w * x`.
fn axpy_f32(w: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o = w.mul_add(*v, *o);
    }
}
}

multiversion! {
/// `x = exp(x)` for every element: Cody-Waite reduction `x = k·ln2 + r` (ln2 in two parts, |r| <= ln2/2), the
/// Cephes `expf` polynomial for `e^r`, and `2^k` put into the exponent bits (relative error about 2e-7). Plain
/// lane-wise arithmetic, so the AVX2 build vectorizes it. Inputs below -87 give about 1e-38, above 88 are clamped.
fn exp_in_place(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = fast_exp(*v);
    }
}
}

/// `e^x` in f32 by Cody-Waite range reduction and a degree-6 polynomial (relative error ~1e-7; 0 below -87,
/// clamped above 88); plain arithmetic, so loops over it vectorize.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = k.mul_add(-0.693_145_75, x);
    let r = k.mul_add(-1.428_606_8e-6, r);
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r) + 1.0;
    e * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `x += y`, element by element (a residual connection).
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `b` added to every row of `x` (rows of `b.len()`), when there is a bias.
pub fn add_bias(x: &mut [f32], b: Option<&[f32]>) {
    if let Some(b) = b {
        for row in x.chunks_exact_mut(b.len()) {
            add(row, b);
        }
    }
}

/// Rotary position embedding of one head vector in place. `neox`: rotate pairs `(i, i + d/2)` (GPT-NeoX, Qwen,
/// Gemma); otherwise adjacent pairs `(2i, 2i + 1)` (Llama as stored in GGUF). `inv_freq[i] = base^(-2i/d)`.
pub fn rope(x: &mut [f32], pos: usize, inv_freq: &[f32], neox: bool) {
    let half = inv_freq.len();
    for (i, &f) in inv_freq.iter().enumerate() {
        let theta = pos as f32 * f;
        let (s, c) = theta.sin_cos();
        let (a, b) = if neox {
            (i, i + half)
        } else {
            (2 * i, 2 * i + 1)
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/// `base^(-2i/d)` for `i` in `0..d/2`, computed as ggml does (repeated multiplication by `base^(-2/d)`).
pub fn rope_inv_freq(dim: usize, base: f32) -> Vec<f32> {
    let theta_scale = base.powf(-2.0 / dim as f32);
    let mut f = 1.0f32;
    (0..dim / 2)
        .map(|_| {
            let v = f;
            f *= theta_scale;
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms() {
        let x = [3.0f32, -4.0, 0.0, 5.0];
        let mut out = [0f32; 4];
        rms_norm(&x, &[1.0; 4], 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-5);
    }

    #[test]
    fn rope_preserves_norm_and_is_identity_at_zero() {
        let inv = rope_inv_freq(8, 10000.0);
        let x0 = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        for neox in [false, true] {
            let mut x = x0;
            rope(&mut x, 0, &inv, neox);
            assert_eq!(x, x0);
            rope(&mut x, 17, &inv, neox);
            let n0: f32 = x0.iter().map(|v| v * v).sum();
            let n1: f32 = x.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() < 1e-3);
        }
    }

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((dot_f32(&a, &b) as f64 - plain).abs() < 1e-5);
        let mut y = b.clone();
        axpy_f32(0.5, &a, &mut y);
        for i in 0..37 {
            assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
        }
    }

    #[test]
    fn fast_exp_is_close_to_exp() {
        let xs: Vec<f32> = (0..20_000).map(|i| -80.0 + i as f32 * 0.004_05).collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (x, y) in xs.iter().zip(&ys) {
            let e = x.exp();
            assert!((y - e).abs() <= 1e-6 * e, "exp({x}) = {e}, got {y}");
        }
        let mut edges = [-200.0f32, -87.5, 0.0, f32::NEG_INFINITY];
        exp_in_place(&mut edges);
        assert_eq!(edges[0], edges[1]);
        assert!(edges[0] < 1e-37 && edges[2] == 1.0 && edges[3] == edges[0]);
    }

    #[test]
    fn gelu_and_silu_match_their_libm_twins() {
        let x: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.01).collect();
        let ones = vec![1f32; x.len()];
        let (mut fast, mut slow) = (x.clone(), x.clone());
        gelu_mul(&mut fast, &ones);
        gelu_mul_reference(&mut slow, &ones);
        for ((a, b), v) in fast.iter().zip(&slow).zip(&x) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + v.abs()),
                "gelu({v}): {a} vs {b}"
            );
        }
        let mut s = x.clone();
        silu_mul(&mut s, &ones);
        for (a, v) in s.iter().zip(&x) {
            let want = v / (1.0 + (-v).exp());
            assert!(
                (a - want).abs() <= 1e-6 * (1.0 + v.abs()),
                "silu({v}): {a} vs {want}"
            );
        }
    }

    #[test]
    fn f16_helpers_match_the_plain_conversions() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 - 18.0) * 0.37).collect();
        let mut h = vec![0u16; 37];
        f32_to_f16(&a, &mut h);
        for (x, &b) in a.iter().zip(&h) {
            assert_eq!(b, half::f16::from_f32(*x).to_bits());
        }
        let plain: f32 = a
            .iter()
            .zip(&h)
            .map(|(x, &b)| x * half::f16::from_bits(b).to_f32())
            .sum();
        assert!((dot_f16(&a, &h) - plain).abs() < 1e-3);
        let mut y = vec![1f32; 37];
        axpy_f16(0.5, &h, &mut y);
        for (yi, &b) in y.iter().zip(&h) {
            assert!((yi - (1.0 + 0.5 * half::f16::from_bits(b).to_f32())).abs() < 1e-6);
        }
    }
}
