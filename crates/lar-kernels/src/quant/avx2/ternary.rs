//! TQ1_0 and TQ2_0 (ternary weights, see [`crate::quant::ternary`]) against Q8_K activations on AVX2 and the VNNI
//! tier. The weights are unpacked to their codes 0, 1, 2 (unsigned bytes), multiplied with the activation bytes
//! in `maddubs` (or `vpdpbusd`), and the `- 1` of `value = code - 1` comes off once per block as the activation's
//! sum (Q8_K keeps its sums of 16): `Σ (c - 1)·y = Σ c·y - Σ y`. All integer until one FMA per block, the same steps
//! for every activation row, so batching does not change a bit.
//!
//! TQ1_0's trits: `byte·3^k mod 256` per byte (two 16-bit multiplies, even and odd bytes), then the top third of
//! that byte, `(q·3) >> 8`, which is 0, 1 or 2 as `q > 85` and `q > 170` (two compares). The bytes are flipped
//! (`^ 0x80`, i.e. `+ 128`) once at load, since `(q + 128)·3^k ≡ q·3^k + 128 (mod 256)`: the compares are then signed
//! ones on every product with no flip each. (A chain of byte additions for the powers, `3q = q + q + q`, measured
//! slower: LLVM turns it back into a byte multiply, which x86 emulates through 16-bit lanes.)

use super::*;

/// Each byte of `v` times the same byte of `m`, modulo 256.
#[inline(always)]
unsafe fn mul_bytes(v: __m256i, m: __m256i) -> __m256i {
    // SAFETY: register arithmetic, in avx2 callers.
    unsafe {
        let lo = _mm256_set1_epi16(0x00FF);
        // Even bytes: (v & 0xFF)·m keeps v·m's low byte in place; odd bytes: (v & 0xFF00)·(m >> 8) puts v·m's
        // low byte in the high one and zeros below.
        let even = _mm256_and_si256(_mm256_mullo_epi16(_mm256_and_si256(v, lo), m), lo);
        let odd = _mm256_mullo_epi16(_mm256_andnot_si256(lo, v), _mm256_srli_epi16(m, 8));
        _mm256_or_si256(even, odd)
    }
}

/// The leading trit (0, 1 or 2) of each byte `q`, given flipped (`q ^ 0x80`): -1 where `q > 85`, and again where
/// `q > 170`, made positive.
#[inline(always)]
unsafe fn top_trit(flipped: __m256i) -> __m256i {
    // SAFETY: as above.
    unsafe {
        let a = _mm256_cmpgt_epi8(flipped, _mm256_set1_epi8((85u8 ^ 0x80) as i8));
        let b = _mm256_cmpgt_epi8(flipped, _mm256_set1_epi8((170u8 ^ 0x80) as i8));
        _mm256_abs_epi8(_mm256_add_epi8(a, b))
    }
}

/// `acc[t] += d·dy_t·(Σ c·y_t − Σ y_t)` for one block, `sumi[t]` holding `Σ c·y_t` in i32 lanes.
#[inline(always)]
unsafe fn finish<const T: usize>(
    acc: &mut [__m256; T],
    sumi: &[__m256i; T],
    d: f32,
    ys: [&[u8]; T],
    b: usize,
) {
    // SAFETY: the callers asserted every activation row holds block `b` (292 bytes each).
    unsafe {
        for t in 0..T {
            let yb = ys[t].as_ptr().add(b * 292);
            let dy = (yb as *const f32).read_unaligned();
            let sy = _mm256_madd_epi16(loadp(yb.add(260)), _mm256_set1_epi16(1));
            let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], sy));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), s, acc[t]);
        }
    }
}

/// TQ2_0 (66-byte blocks: 64 bytes of 2-bit codes, f16 `d`) against `T` (1, 4 or 8) activation rows.
#[inline(always)]
pub(super) fn tq2_0<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 66 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let m3 = _mm256_set1_epi8(3);
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 66);
            let mut sumi = [_mm256_setzero_si256(); T];
            for h in 0..2 {
                let q = loadp(xb.add(32 * h));
                for l in 0..4 {
                    let c = _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * l)), m3);
                    for t in 0..T {
                        let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 128 * h + 32 * l as usize));
                        sumi[t] = dpbusd::<V>(sumi[t], c, yq);
                    }
                }
            }
            finish(&mut acc, &sumi, f16_at(x, b * 66 + 64), ys, b);
        }
        std::array::from_fn(|t| hsum_f32(acc[t]))
    }
}

/// TQ1_0 (54-byte blocks: `qs[48]`, `qh[4]`, f16 `d`) against `T` (1, 4 or 8) activation rows: eight groups of 32
/// trits per block, each one `mul_bytes` + `top_trit` away from its bytes.
#[inline(always)]
pub(super) fn tq1_0<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 54 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): as `tq2_0`.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let p3 = [
            _mm256_set1_epi8(3),
            _mm256_set1_epi8(9),
            _mm256_set1_epi8(27),
            _mm256_set1_epi8(81),
        ];
        // Per-lane powers for the 16-byte part (low lane k, high lane k + 1) and qh's four trits of four bytes.
        let (p01, p23) = (
            _mm256_set_m128i(_mm_set1_epi8(3), _mm_set1_epi8(1)),
            _mm256_set_m128i(_mm_set1_epi8(27), _mm_set1_epi8(9)),
        );
        let qh_pow = _mm_setr_epi8(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
        let last_pow = _mm256_set_m128i(qh_pow, _mm_set1_epi8(81));
        let (flip, flipx) = (_mm256_set1_epi8(i8::MIN), _mm_set1_epi8(i8::MIN));
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 54);
            let q32 = _mm256_xor_si256(loadp(xb), flip);
            let q16 = _mm_xor_si128(_mm_loadu_si128(xb.add(32) as *const __m128i), flipx);
            let q16x2 = _mm256_set_m128i(q16, q16);
            // Elements 0..160: bytes 0..32, trit k; 160..224: bytes 32..48, trits (0, 1) and (2, 3); 224..256:
            // bytes 32..48's trit 4 beside qh's four trits (qh[j] repeated, element 240 + 4k + j).
            let qh = _mm_xor_si128(_mm_set1_epi32(rd_u32(xb.add(48)) as i32), flipx);
            let groups = [
                q32,
                mul_bytes(q32, p3[0]),
                mul_bytes(q32, p3[1]),
                mul_bytes(q32, p3[2]),
                mul_bytes(q32, p3[3]),
                mul_bytes(q16x2, p01),
                mul_bytes(q16x2, p23),
                mul_bytes(_mm256_set_m128i(qh, q16), last_pow),
            ];
            let mut sumi = [_mm256_setzero_si256(); T];
            for (g, &q) in groups.iter().enumerate() {
                let c = top_trit(q);
                for t in 0..T {
                    let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 32 * g));
                    sumi[t] = dpbusd::<V>(sumi[t], c, yq);
                }
            }
            finish(&mut acc, &sumi, f16_at(x, b * 54 + 52), ys, b);
        }
        std::array::from_fn(|t| hsum_f32(acc[t]))
    }
}
