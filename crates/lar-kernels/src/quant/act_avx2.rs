//! Activation rows quantized to Q8_K with AVX2: the same bytes as [`super::reference::quantize_q8_k`] (ggml's
//! `quantize_row_q8_K`), eight lanes at a time.
//!
//! Per block of 256: the largest magnitude (NaN skipped, as the reference's `>` skips it), the first element that
//! has it (its sign sets the scale's), `q = round(−127/max · v)` with the CPU's round-to-nearest-even (the
//! reference's `round_ties_even`) capped at 127, a NaN product giving 0 as the reference's `as i32` does, and the
//! sums of each 16. The reference compiled with AVX2 left the rounding and the packing scalar: on a prompt this
//! was ~10% of the time of a Q4_K model.

use super::QK_K;

/// Bytes of a Q8_K block: `d`, 256 quants, 16 sums.
const BLOCK: usize = 4 + QK_K + 32;

/// Appends `x` (a multiple of 256 long) as Q8_K blocks to `out`.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn quantize_q8_k(x: &[f32], out: &mut Vec<u8>) {
    use std::arch::x86_64::*;
    let start = out.len();
    out.resize(start + x.len() / QK_K * BLOCK, 0);
    for (b, blk) in x.chunks_exact(QK_K).enumerate() {
        let o = &mut out[start + b * BLOCK..start + (b + 1) * BLOCK];
        // SAFETY: AVX2 (the caller's); loads of 8 floats inside `blk` (256 long), stores inside `o`.
        unsafe {
            let p = blk.as_ptr();
            let sign = _mm256_set1_ps(-0.0);
            let mut m = _mm256_setzero_ps();
            for i in 0..QK_K / 8 {
                let a = _mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(8 * i)));
                // The second operand comes back where `a` is NaN: NaN never becomes the maximum.
                m = _mm256_max_ps(a, m);
            }
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
            if amax == 0.0 {
                // Zero bytes: d = 0, quants and sums 0 (the reference's all-zero block).
                continue;
            }
            let max = blk
                .iter()
                .copied()
                .find(|v| v.abs() == amax)
                .unwrap_or(amax);
            let iscale = -127.0 / max;
            if !iscale.is_finite() {
                // A block this small (|max| < ~3.7e-37) overflows the scale; the reference's saturating casts
                // differ from the CPU's there, so it does the block.
                let mut one = Vec::with_capacity(BLOCK);
                super::reference::quantize_q8_k(blk, &mut one);
                o.copy_from_slice(&one);
                continue;
            }
            o[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
            let s = _mm256_set1_ps(iscale);
            let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
            let q = |i: usize| round8(s, p.add(8 * i));
            for k in 0..QK_K / 32 {
                let (a, b2, c, d) = (q(4 * k), q(4 * k + 1), q(4 * k + 2), q(4 * k + 3));
                let lo = _mm256_packs_epi32(a, b2);
                let hi = _mm256_packs_epi32(c, d);
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(lo, hi), order);
                _mm256_storeu_si256(o.as_mut_ptr().add(4 + 32 * k) as *mut __m256i, bytes);
                // The sums of the two groups of 16 in these 32.
                for (g, (u, v)) in [(a, b2), (c, d)].into_iter().enumerate() {
                    let t = _mm256_add_epi32(u, v);
                    let t =
                        _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                    let t = _mm_add_epi32(t, _mm_unpackhi_epi64(t, t));
                    let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 1));
                    let sum = _mm_cvtsi128_si32(t) as i16;
                    let at = 4 + QK_K + 2 * (2 * k + g);
                    o[at..at + 2].copy_from_slice(&sum.to_le_bytes());
                }
            }
        }
    }
}

/// `min(round(s·v), 127)` for the 8 floats at `p`, 0 where the product is NaN.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn round8(s: std::arch::x86_64::__m256, p: *const f32) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX2 and 8 floats at `p`.
    unsafe {
        let v = _mm256_mul_ps(s, _mm256_loadu_ps(p));
        let ord = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_ORD_Q));
        _mm256_min_epi32(
            _mm256_and_si256(_mm256_cvtps_epi32(v), ord),
            _mm256_set1_epi32(127),
        )
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::quant::reference;
    use crate::quant::tests::Rng;

    /// The reference's bytes for rows of every kind: random magnitudes, an all-zero block, ties between `v` and
    /// `−v` for the largest magnitude (the first wins), NaN and infinities, a block so small its scale overflows.
    #[test]
    fn avx2_q8_k_gives_the_reference_bytes() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let mut rng = Rng::new(9);
        let mut rows: Vec<Vec<f32>> = (0..20)
            .map(|i| {
                (0..3 * QK_K)
                    .map(|k| rng.f32() * 10f32.powi((k % 7) as i32 - 3 + i % 3))
                    .collect()
            })
            .collect();
        let mut special = vec![0f32; 5 * QK_K];
        for (k, v) in special[4 * QK_K..].iter_mut().enumerate() {
            *v = (k as f32 - 100.0) * 1e-40;
        }
        for (k, v) in special[QK_K..2 * QK_K].iter_mut().enumerate() {
            *v = (k as f32 - 128.0) / 2.0;
        }
        special[QK_K + 3] = -64.0;
        special[QK_K + 200] = 64.0;
        special[2 * QK_K + 5] = f32::NAN;
        special[2 * QK_K + 6] = 3.5;
        special[3 * QK_K + 9] = f32::INFINITY;
        special[3 * QK_K + 10] = 1.0;
        rows.push(special);
        for (i, row) in rows.iter().enumerate() {
            let (mut want, mut got) = (Vec::new(), vec![7u8; 3]);
            reference::quantize_q8_k(row, &mut want);
            // SAFETY: AVX2 checked above.
            unsafe { quantize_q8_k(row, &mut got) };
            assert_eq!(&got[..3], &[7, 7, 7], "appends");
            assert_eq!(got[3..], want[..], "row {i}");
        }
    }
}
