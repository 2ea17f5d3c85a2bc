//! Code compiled for AVX2+FMA where the CPU has them, without a second copy by hand: [`run_fast`] calls a
//! [`Task`]'s body from a function generated with those features, so the body (inlined there) and the small
//! `#[inline(always)]` vector helpers below are vectorized for them; elsewhere the same code runs as built.

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

/// `y += a · x` (inlined).
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
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
    let n = a.len();
    let mut j = js.start;
    while j + 4 <= js.end {
        let r: [&[f32]; 4] = std::array::from_fn(|i| &row(j + i)[..n]);
        let mut acc = [[0f32; 8]; 4];
        let full = n / 8 * 8;
        for c in (0..full).step_by(8) {
            for l in 0..8 {
                let x = a[c + l];
                acc[0][l] += x * r[0][c + l];
                acc[1][l] += x * r[1][c + l];
                acc[2][l] += x * r[2][c + l];
                acc[3][l] += x * r[3][c + l];
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            let tail: f32 = (full..n).map(|c| a[c] * r[i][c]).sum();
            out[j + i - js.start] = acc.iter().sum::<f32>() + tail;
        }
        j += 4;
    }
    for jj in j..js.end {
        out[jj - js.start] = dot(a, row(jj));
    }
}
