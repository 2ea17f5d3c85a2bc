//! Q2_K and Q3_K against Q8_K activations on AVX2 (and the VNNI tier): the 2- and 3-bit k-quants, which ran the
//! reference code (dequantize, then an f32 dot) until now.
//!
//! Both are whole-block integer sums finished by float FMAs, like Q4_K's kernel: a sub-block of 16 quants meets
//! its 16 activation bytes in `maddubs`, the pair sums are weighted by the sub-block's scale in `madd` (`vpdpwssd`
//! with VNNI: the same integers), and the constant parts (Q2_K's mins, Q3_K's `-4` offset) come from the
//! activation's sums of 16 (`Q8_K` keeps one per sub-block). Every activation row gets the same steps whatever
//! group it is in, so batching does not change a bit.

use super::*;

/// Q2_K (84 bytes: scales[16] @0, qs[64] @16, d @80, dmin @82) against `T` (1, 4 or 8) activation rows.
///
/// Value `i` of a block is `d·(sc & 15)·q − dmin·(sc >> 4)`, with `q` two bits of `qs` (byte `i mod 32` of its
/// half, shifted by `2·((i mod 128) / 32)`) and `sc` its sub-block's byte.
#[inline(always)]
pub(super) fn q2_k<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 84 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [0f32; T];
        let m3 = _mm256_set1_epi8(3);
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 84);
            let sc = _mm_loadu_si128(xb as *const __m128i);
            // The sixteen mins as i16, to meet the activation's sixteen sums.
            let mins =
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F)));
            let mut s = [0u8; 16];
            _mm_storeu_si128(
                s.as_mut_ptr() as *mut __m128i,
                _mm_and_si128(sc, _mm_set1_epi8(0x0F)),
            );
            let mut sumi = [_mm256_setzero_si256(); T];
            for h in 0..2 {
                let q = loadp(xb.add(16 + 32 * h));
                for j in 0..4 {
                    let qj =
                        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), m3);
                    let is = 8 * h + 2 * j;
                    let w = _mm256_set_m128i(
                        _mm_set1_epi16(s[is + 1] as i16),
                        _mm_set1_epi16(s[is] as i16),
                    );
                    for t in 0..T {
                        let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 128 * h + 32 * j));
                        sumi[t] = dpwssd::<V>(sumi[t], _mm256_maddubs_epi16(qj, yq), w);
                    }
                }
            }
            let dm = f16x2(xb.add(80));
            let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            for t in 0..T {
                let yb = ys[t].as_ptr().add(b * 292);
                let dy = (yb as *const f32).read_unaligned();
                let m = hsum_i32(_mm256_madd_epi16(loadp(yb.add(260)), mins));
                let a = (d * dy).mul_add(hsum_i32(sumi[t]) as f32, acc[t]);
                acc[t] = (-(dmin * dy)).mul_add(m as f32, a);
            }
        }
        acc
    }
}

/// Q3_K (110 bytes: hmask[32] @0, qs[64] @32, scales[12] @96, d @108) against `T` (1, 4 or 8) activation rows.
///
/// Value `i` is `d·(sc − 32)·(q + 4·h − 4)`: `q` two bits as in Q2_K, `h` bit `4·half + j` of `hmask[i mod 32]`,
/// `sc` the sub-block's 6-bit scale. `q + 4h` (0..7) meets the activation in `maddubs`; the `−4` is
/// `−4·Σ (sc − 32)·(sum of 16 activations)`, so the block's whole sum is one integer.
#[inline(always)]
pub(super) fn q3_k<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 110 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [0f32; T];
        let (m3, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
        for b in 0..nb {
            let xs = &x[b * 110..b * 110 + 110];
            let xb = xs.as_ptr();
            let raw = super::super::reference::q3k_scales(&xs[96..108]);
            let s: [i16; 16] = std::array::from_fn(|i| raw[i] as i16 - 32);
            let sv = _mm256_loadu_si256(s.as_ptr() as *const __m256i);
            let hm = loadp(xb);
            let mut sumi = [_mm256_setzero_si256(); T];
            for t in 0..T {
                // −4·Σ scale·(sum of 16): the offset of every value, from the activation's block sums.
                let bsums = loadp(ys[t].as_ptr().add(b * 292 + 260));
                sumi[t] = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sv), 2);
                sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(), sumi[t]);
            }
            for h in 0..2 {
                let q = loadp(xb.add(32 + 32 * h));
                for j in 0..4 {
                    let sh = _mm_cvtsi32_si128(2 * j as i32);
                    let hbit = _mm256_and_si256(
                        _mm256_srl_epi16(hm, _mm_cvtsi32_si128((4 * h + j) as i32)),
                        one,
                    );
                    let qj = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srl_epi16(q, sh), m3),
                        _mm256_slli_epi16(hbit, 2),
                    );
                    let is = 8 * h + 2 * j;
                    let w = _mm256_set_m128i(_mm_set1_epi16(s[is + 1]), _mm_set1_epi16(s[is]));
                    for t in 0..T {
                        let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 128 * h + 32 * j));
                        sumi[t] = dpwssd::<V>(sumi[t], _mm256_maddubs_epi16(qj, yq), w);
                    }
                }
            }
            let d = _mm_cvtss_f32(f16x2(xb.add(108)));
            for t in 0..T {
                let dy = (ys[t].as_ptr().add(b * 292) as *const f32).read_unaligned();
                acc[t] = (d * dy).mul_add(hsum_i32(sumi[t]) as f32, acc[t]);
            }
        }
        acc
    }
}
