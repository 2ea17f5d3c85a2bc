//! Q2_K and Q3_K against Q8_K activations on AVX2 (and the VNNI tier): the 2- and 3-bit k-quants, which ran the
//! reference code (dequantize, then an f32 dot) until now.
//!
//! Both are whole-block integer sums finished by float FMAs, like Q4_K's kernel: a sub-block of 16 quants meets
//! its 16 activation bytes in `maddubs`, the pair sums are weighted by the sub-block's scale in `madd` (`vpdpwssd`
//! with VNNI: the same integers), and the constant parts (Q2_K's mins, Q3_K's `-4` offset) come from the
//! activation's sums of 16 (`Q8_K` keeps one per sub-block). Every activation row gets the same steps whatever
//! group it is in, so batching does not change a bit.

use super::*;

/// The shuffle that puts 16-bit scale `2j` of each 128-bit lane's eight in the low lane and `2j + 1` in the high
/// lane, as eight copies each: the scales of the two sub-blocks a 32-quant group covers.
#[inline(always)]
fn scale_pair(j: usize) -> __m256i {
    let (lo, hi) = ((4 * j) as i16, (4 * j + 2) as i16);
    // SAFETY: plain register construction, in avx2 callers.
    unsafe {
        _mm256_set_m128i(
            _mm_set1_epi16(hi | ((hi + 1) << 8)),
            _mm_set1_epi16(lo | ((lo + 1) << 8)),
        )
    }
}

/// The sixteen i16 scales of a block (in order) as the two registers [`scale_pair`] picks from: the first eight
/// in both lanes, the last eight in both lanes.
#[inline(always)]
fn scale_halves(s16: __m256i) -> [__m256i; 2] {
    // SAFETY: as above.
    unsafe {
        [
            _mm256_permute2x128_si256(s16, s16, 0x00),
            _mm256_permute2x128_si256(s16, s16, 0x11),
        ]
    }
}

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
        let mut acc = [_mm256_setzero_ps(); T];
        let (m3, m4) = (_mm256_set1_epi8(3), _mm_set1_epi8(0x0F));
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 84);
            let sc = _mm_loadu_si128(xb as *const __m128i);
            // The sixteen mins as i16, to meet the activation's sixteen sums; the scales as two halves.
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
            let halves = scale_halves(_mm256_cvtepu8_epi16(_mm_and_si128(sc, m4)));
            let mut sumi = [_mm256_setzero_si256(); T];
            for (h, &half) in halves.iter().enumerate() {
                let q = loadp(xb.add(16 + 32 * h));
                for j in 0..4 {
                    let qj =
                        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), m3);
                    let w = _mm256_shuffle_epi8(half, scale_pair(j));
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
                let m = _mm256_madd_epi16(loadp(yb.add(260)), mins);
                let a =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * dy), _mm256_cvtepi32_ps(m), a);
            }
        }
        std::array::from_fn(|t| hsum_f32(acc[t]))
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
        let mut acc = [_mm256_setzero_ps(); T];
        let (m3, four) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 110);
            // The sixteen 6-bit scales: low nibbles from bytes 0..8, high pairs from bytes 8..12 (four words).
            let (a0, a1, t) = (rd_u32(xb.add(96)), rd_u32(xb.add(100)), rd_u32(xb.add(104)));
            let (k1, k2) = (0x0303_0303u32, 0x0F0F_0F0Fu32);
            let sc8 = _mm_set_epi32(
                (((a1 >> 4) & k2) | (((t >> 6) & k1) << 4)) as i32,
                (((a0 >> 4) & k2) | (((t >> 4) & k1) << 4)) as i32,
                ((a1 & k2) | (((t >> 2) & k1) << 4)) as i32,
                ((a0 & k2) | ((t & k1) << 4)) as i32,
            );
            let sv = _mm256_cvtepi8_epi16(_mm_sub_epi8(sc8, _mm_set1_epi8(32)));
            let halves = scale_halves(sv);
            let hm = loadp(xb);
            let mut sumi = [_mm256_setzero_si256(); T];
            for t in 0..T {
                // −4·Σ scale·(sum of 16): the offset of every value, from the activation's block sums.
                let bsums = loadp(ys[t].as_ptr().add(b * 292 + 260));
                sumi[t] = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sv), 2);
                sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(), sumi[t]);
            }
            for (h, &half) in halves.iter().enumerate() {
                let q = loadp(xb.add(32 + 32 * h));
                for j in 0..4 {
                    // Bit `4h + j` of each hmask byte moved to bit 2 (4·h), so `q + 4h` is one `or`: a 16-bit
                    // shift by at most 5 either way keeps bit 2 of every byte within its byte.
                    let bit = 4 * h + j;
                    let hb = if bit >= 2 {
                        _mm256_srl_epi16(hm, _mm_cvtsi32_si128(bit as i32 - 2))
                    } else {
                        _mm256_sll_epi16(hm, _mm_cvtsi32_si128(2 - bit as i32))
                    };
                    let qj = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), m3),
                        _mm256_and_si256(hb, four),
                    );
                    let w = _mm256_shuffle_epi8(half, scale_pair(j));
                    for t in 0..T {
                        let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 128 * h + 32 * j));
                        sumi[t] = dpwssd::<V>(sumi[t], _mm256_maddubs_epi16(qj, yq), w);
                    }
                }
            }
            let d = _mm_cvtss_f32(f16x2(xb.add(108)));
            for t in 0..T {
                let dy = (ys[t].as_ptr().add(b * 292) as *const f32).read_unaligned();
                acc[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
        std::array::from_fn(|t| hsum_f32(acc[t]))
    }
}
