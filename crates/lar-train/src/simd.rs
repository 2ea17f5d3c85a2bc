//! Code compiled for AVX2+FMA where the CPU has them, without a second copy by hand: [`fast`] runs a closure
//! from a function generated with those features, so the closure's body (inlined there) and the small
//! `#[inline(always)]` vector helpers below are vectorized for them; elsewhere the same code runs as built.

/// Runs `f`, compiled with AVX2 and FMA enabled when the CPU has them.
#[inline(always)]
pub fn fast<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if lar_kernels::quant::simd_level().avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2 and FMA (checked by simd_level).
        return unsafe { avx2(f) };
    }
    f()
}

/// `a · b` in eight lanes (inlined into its caller, so vectorized for the caller's features).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `y += a · x` (inlined).
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}
