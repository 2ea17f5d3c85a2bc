//! Code compiled for AVX2+FMA where the CPU has them: [`run_fast`] calls a [`Task`]'s body from a function
//! generated with those features, so the body and the small `#[inline(always)]` helpers inlined into it are built
//! for them; elsewhere the same code runs as built. The two products that carry the trainer's small matrices,
//! [`dots`] and [`combine`] (with [`combine_rows`]), have explicit AVX2 bodies, and AVX-512 ones (sixteen lanes) on
//! CPUs of the AVX-512 tier, behind a run-time check: LLVM left their register-blocked loops scalar in plain Rust.

#[cfg(target_arch = "x86_64")]
use lar_kernels::quant::SimdLevel;

/// A parallel loop's body, for [`run_fast`]: implementors mark `run` `#[inline(always)]` so it is compiled into
/// the AVX2 copy (a closure would not be: it stays a function of its own, built for the baseline).
pub trait Task: Sync {
    fn run(&self, task: usize);
}

/// Runs task `i` of `t`, compiled with AVX2 and FMA enabled when the CPU has them.
#[inline(always)]
pub fn run_fast<T: Task>(t: &T, i: usize) {
    #[cfg(target_arch = "x86_64")]
    if lar_kernels::quant::simd_level().avx2() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<T: Task>(t: &T, i: usize) {
            t.run(i)
        }
        // SAFETY: the CPU has AVX2 and FMA (checked by simd_level).
        return unsafe { avx2(t, i) };
    }
    t.run(i)
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

/// `out[j - js.start] = a · row(j)` for each `j` in `js`, four rows at a time: four independent sums, so one's
/// multiply-adds do not wait on another's (a single dot of a short vector is latency-bound).
#[inline(always)]
pub fn dots<'a>(
    a: &[f32],
    row: impl Fn(usize) -> &'a [f32],
    js: std::ops::Range<usize>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    match lar_kernels::quant::simd_level() {
        // SAFETY: the CPU has AVX-512 F (the VNNI tier implies it), AVX2 and FMA.
        SimdLevel::Avx512Vnni if a.len() >= 256 => return unsafe { x86::dots512(a, row, js, out) },
        // Short vectors (an attention head's 64): the AVX2 body, whose eight-lane sum is cheaper to finish.
        // SAFETY: the CPU has AVX2 and FMA.
        SimdLevel::Avx512Vnni => return unsafe { x86::dots(a, row, js, out) },
        // SAFETY: the CPU has AVX2 and FMA.
        SimdLevel::Avx2 => return unsafe { x86::dots(a, row, js, out) },
        SimdLevel::Scalar => {}
    }
    for j in js.clone() {
        out[j - js.start] = dot(a, row(j));
    }
}

/// `outs[r] += Σ_{t in ts} coef(r, t) · row(t)` for `R` outputs of one length at once: `R` outputs × 16 columns
/// of accumulators held in registers across the whole sum (with `R = 4`, eight of the sixteen vector registers,
/// leaving room for the loads), each load of `row(t)`'s columns shared by the `R` outputs, and each output stored
/// once per 16 columns (an `axpy` per term would load and store it every time).
#[inline(always)]
pub fn combine<'a, const R: usize>(
    coef: impl Fn(usize, usize) -> f32,
    row: impl Fn(usize) -> &'a [f32],
    ts: std::ops::Range<usize>,
    outs: &mut [&mut [f32]; R],
) {
    #[cfg(target_arch = "x86_64")]
    let done = match lar_kernels::quant::simd_level() {
        SimdLevel::Avx512Vnni => {
            // SAFETY: the CPU has AVX-512 F (the VNNI tier implies it), AVX2 and FMA.
            let wide = unsafe { x86::combine512(&coef, &row, ts.clone(), outs) };
            // SAFETY: as above.
            unsafe { x86::combine(&coef, &row, ts.clone(), outs, wide) }
        }
        // SAFETY: the CPU has AVX2 and FMA.
        SimdLevel::Avx2 => unsafe { x86::combine(&coef, &row, ts.clone(), outs, 0) },
        SimdLevel::Scalar => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    let n = outs[0].len();
    for c in done..n {
        for (r, o) in outs.iter_mut().enumerate() {
            o[c] += ts.clone().map(|t| coef(r, t) * row(t)[c]).sum::<f32>();
        }
    }
}

/// `out(i) += Σ_{t in terms(i)} coef(i, t) · row(t)` for the rows `from..to` of an output, four at a time
/// ([`combine`]; `terms` must grow with `i`, and `coef` be zero outside a row's own terms).
#[inline(always)]
pub fn combine_rows<'a>(
    from: usize,
    to: usize,
    terms: impl Fn(usize) -> std::ops::Range<usize>,
    coef: impl Fn(usize, usize) -> f32,
    row: impl Fn(usize) -> &'a [f32] + Copy,
    out: impl Fn(usize) -> &'a mut [f32],
) {
    let mut i = from;
    while i + 4 <= to {
        let mut outs = [out(i), out(i + 1), out(i + 2), out(i + 3)];
        let ts = terms(i).start..terms(i + 3).end;
        combine(|r, t| coef(i + r, t), row, ts, &mut outs);
        i += 4;
    }
    for i in i..to {
        combine(|_, t| coef(i, t), row, terms(i), &mut [out(i)]);
    }
}

/// The AVX2 + FMA bodies of [`dots`] and [`combine`], and their AVX-512 ones (the callers' closures are inlined
/// into them).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The sum of a vector's eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dots<'a>(
        a: &[f32],
        row: impl Fn(usize) -> &'a [f32],
        js: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let n = a.len();
        let full = n / 8 * 8;
        let mut j = js.start;
        while j < js.end {
            let m = (js.end - j).min(4);
            let r: [&[f32]; 4] = std::array::from_fn(|i| &row(j + i.min(m - 1))[..n]);
            let mut acc = [_mm256_setzero_ps(); 4];
            for c in (0..full).step_by(8) {
                // SAFETY: c + 8 <= full <= n, the length of `a` and of every `r[i]`.
                let x = unsafe { _mm256_loadu_ps(a.as_ptr().add(c)) };
                for i in 0..4 {
                    let y = unsafe { _mm256_loadu_ps(r[i].as_ptr().add(c)) };
                    acc[i] = _mm256_fmadd_ps(x, y, acc[i]);
                }
            }
            for i in 0..m {
                let tail: f32 = (full..n).map(|c| a[c] * r[i][c]).sum();
                out[j + i - js.start] = hsum(acc[i]) + tail;
            }
            j += m;
        }
    }

    /// [`super::combine`] over whole blocks of 16 columns from column `from`; returns the columns done.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn combine<'a, const R: usize>(
        coef: &impl Fn(usize, usize) -> f32,
        row: &impl Fn(usize) -> &'a [f32],
        ts: std::ops::Range<usize>,
        outs: &mut [&mut [f32]; R],
        from: usize,
    ) -> usize {
        let n = outs[0].len();
        let mut c0 = from;
        while c0 + 16 <= n {
            let mut acc = [[_mm256_setzero_ps(); 2]; R];
            for t in ts.clone() {
                let x = &row(t)[c0..c0 + 16];
                // SAFETY: `x` holds 16 floats.
                let (x0, x1) = unsafe {
                    (
                        _mm256_loadu_ps(x.as_ptr()),
                        _mm256_loadu_ps(x.as_ptr().add(8)),
                    )
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    let c = _mm256_set1_ps(coef(r, t));
                    a[0] = _mm256_fmadd_ps(c, x0, a[0]);
                    a[1] = _mm256_fmadd_ps(c, x1, a[1]);
                }
            }
            for (o, a) in outs.iter_mut().zip(&acc) {
                let o = &mut o[c0..c0 + 16];
                // SAFETY: `o` holds 16 floats.
                unsafe {
                    let p = o.as_mut_ptr();
                    _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), a[0]));
                    _mm256_storeu_ps(p.add(8), _mm256_add_ps(_mm256_loadu_ps(p.add(8)), a[1]));
                }
            }
            c0 += 16;
        }
        c0
    }

    /// [`dots`] in sixteen lanes.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) fn dots512<'a>(
        a: &[f32],
        row: impl Fn(usize) -> &'a [f32],
        js: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let n = a.len();
        let full = n / 16 * 16;
        let mut j = js.start;
        while j < js.end {
            let m = (js.end - j).min(4);
            let r: [&[f32]; 4] = std::array::from_fn(|i| &row(j + i.min(m - 1))[..n]);
            let mut acc = [_mm512_setzero_ps(); 4];
            for c in (0..full).step_by(16) {
                // SAFETY: c + 16 <= full <= n, the length of `a` and of every `r[i]`.
                let x = unsafe { _mm512_loadu_ps(a.as_ptr().add(c)) };
                for i in 0..4 {
                    let y = unsafe { _mm512_loadu_ps(r[i].as_ptr().add(c)) };
                    acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
                }
            }
            for i in 0..m {
                let tail: f32 = (full..n).map(|c| a[c] * r[i][c]).sum();
                out[j + i - js.start] = _mm512_reduce_add_ps(acc[i]) + tail;
            }
            j += m;
        }
    }

    /// [`super::combine`] over whole blocks of 32 columns (two 16-lane registers per output); returns the columns
    /// done.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub(super) fn combine512<'a, const R: usize>(
        coef: &impl Fn(usize, usize) -> f32,
        row: &impl Fn(usize) -> &'a [f32],
        ts: std::ops::Range<usize>,
        outs: &mut [&mut [f32]; R],
    ) -> usize {
        let n = outs[0].len();
        let mut c0 = 0;
        while c0 + 32 <= n {
            let mut acc = [[_mm512_setzero_ps(); 2]; R];
            for t in ts.clone() {
                let x = &row(t)[c0..c0 + 32];
                // SAFETY: `x` holds 32 floats.
                let (x0, x1) = unsafe {
                    (
                        _mm512_loadu_ps(x.as_ptr()),
                        _mm512_loadu_ps(x.as_ptr().add(16)),
                    )
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    let c = _mm512_set1_ps(coef(r, t));
                    a[0] = _mm512_fmadd_ps(c, x0, a[0]);
                    a[1] = _mm512_fmadd_ps(c, x1, a[1]);
                }
            }
            for (o, a) in outs.iter_mut().zip(&acc) {
                let o = &mut o[c0..c0 + 32];
                // SAFETY: `o` holds 32 floats.
                unsafe {
                    let p = o.as_mut_ptr();
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), a[0]));
                    _mm512_storeu_ps(p.add(16), _mm512_add_ps(_mm512_loadu_ps(p.add(16)), a[1]));
                }
            }
            c0 += 32;
        }
        c0
    }
}

/// The sum of `x` in eight lanes (inlined).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let c = x.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for v in c {
        for i in 0..8 {
            lanes[i] += v[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
