//! LoRA dropout: the mask over one projection's input, made from its key wherever it is needed (the forward, the
//! forward run again for the backward, the backward itself) instead of kept beside the activations. Element `i` of
//! the `n × width` input is dropped when the `i + 1`-th value of the stream keyed by (seed, block, projection) is
//! below `p`, and scaled by `1 / (1 - p)` otherwise: the mask that drawing the stream in order gives, made here a
//! row range per thread ([`Rng::at`] reaches any place in the stream at once), vectorized where the CPU has
//! 64-bit lane multiplies (AVX-512 DQ).

use lar_kernels::pool::{ThreadPool, split};
use lar_kernels::tensor::SyncPtr;

use crate::net::Dropout;
use crate::rng::{Rng, unit};

/// `v[i] *= mask[i]` for the mask of block `il`'s projection `t` over `v` (rows of `width`).
pub fn apply(drop: Dropout, il: usize, t: usize, v: &mut [f32], width: usize, pool: &ThreadPool) {
    let rng = Rng::keyed(drop.seed, &[il as u64, t as u64]);
    let f = 1.0 / (1.0 - drop.p);
    let n = v.len() / width.max(1);
    let vp = SyncPtr(v.as_mut_ptr());
    let tasks = pool.n_threads().min(n).max(1);
    pool.run(tasks, &|task| {
        let rows = split(n, tasks, task);
        // SAFETY: rows `rows` of v are this task's only.
        let mine = unsafe {
            std::slice::from_raw_parts_mut(vp.get().add(rows.start * width), rows.len() * width)
        };
        scale(&rng, drop.p, f, (rows.start * width) as u64, mine);
    });
}

/// `v[i] *= 0` or `f`, as stream value `offset + i` says.
fn scale(rng: &Rng, p: f32, f: f32, offset: u64, v: &mut [f32]) {
    #[inline(always)]
    fn plain(rng: &Rng, p: f32, f: f32, offset: u64, v: &mut [f32]) {
        for (i, x) in v.iter_mut().enumerate() {
            let k = if unit(rng.at(offset + i as u64)) < p {
                0.0
            } else {
                f
            };
            *x *= k;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,avx512f,avx512dq,avx512vl")]
        fn wide(rng: &Rng, p: f32, f: f32, offset: u64, v: &mut [f32]) {
            plain(rng, p, f, offset, v)
        }
        if lar_kernels::quant::simd_level() == lar_kernels::quant::SimdLevel::Avx512Vnni
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the AVX-512 tier has AVX2, FMA, AVX-512 F and VL (checked by simd_level, which honours
            // LAR_SIMD's caps), and DQ is checked here.
            return unsafe { wide(rng, p, f, offset, v) };
        }
    }
    plain(rng, p, f, offset, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask is the one drawing the keyed stream in order gives, whatever the threads.
    #[test]
    fn the_mask_is_the_stream_in_order() {
        let drop = Dropout { p: 0.3, seed: 9 };
        let (n, width) = (37, 21);
        let mut mine = vec![1f32; n * width];
        apply(drop, 4, 2, &mut mine, width, &ThreadPool::new(2));
        let mut rng = Rng::keyed(9, &[4, 2]);
        let f = 1.0 / (1.0 - 0.3f32);
        let want: Vec<f32> = (0..n * width)
            .map(|_| if rng.next_f32() < 0.3 { 0.0 } else { f })
            .collect();
        assert_eq!(mine, want);
        let dropped = want.iter().filter(|k| **k == 0.0).count() as f32 / want.len() as f32;
        assert!((dropped - 0.3).abs() < 0.05, "{dropped}");
    }
}
