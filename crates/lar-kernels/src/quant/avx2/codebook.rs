//! The codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M; see [`crate::quant::codebook`])
//! against Q8_K activations on AVX2 and the VNNI tier, one template for all seven.
//!
//! Every weight of these types is an integer `w` (a codebook level with its sign; for IQ1, `8·level ± 1`) times an
//! odd sub-block multiplier `m` (one per 16 weights) times one float per block. Per 32 weights a type gives three
//! registers ([`Chunk`]): `|w|` as unsigned bytes (gathered from the codebook, four 8-byte or eight 4-byte entries),
//! `w`'s signs (for `sign_epi8` on the activation bytes), and `m` in the i16 lanes. Then `maddubs(|w|, ±y)` and a
//! `madd` (or `vpdpwssd`) with `m` sum `m·w·y` into i32 lanes: all integer until one FMA per block, the same steps for
//! every activation row, so batching does not change a bit.

use super::*;
use crate::quant::codebook::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};

/// 32 weights of a block: magnitudes, a vector whose byte signs are the weights' (never zero), multipliers.
struct Chunk {
    abs: __m256i,
    signs: __m256i,
    mul: __m256i,
}

/// Four 8-byte codebook entries as 32 bytes (entry 0 lowest).
#[inline(always)]
unsafe fn gather8(grid: &[u64], i: [usize; 4]) -> __m256i {
    // SAFETY: register arithmetic; every index is masked below the table's length by the callers.
    unsafe {
        let g = |k: usize| *grid.get_unchecked(i[k]) as i64;
        _mm256_set_epi64x(g(3), g(2), g(1), g(0))
    }
}

/// Eight 4-byte codebook entries as 32 bytes.
#[inline(always)]
unsafe fn gather4(grid: &[u32], i: [usize; 8]) -> __m256i {
    // SAFETY: as `gather8`.
    unsafe {
        let g = |k: usize| *grid.get_unchecked(i[k]) as i32;
        _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0))
    }
}

/// Non-negative bytes `g` with the signs of `bits` (bit `i` set: element `i` negative).
#[inline(always)]
unsafe fn with_signs(g: __m256i, bits: u32) -> __m256i {
    // SAFETY: register arithmetic, in avx2 callers.
    unsafe {
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let b = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
        let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        let neg = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
        _mm256_sub_epi8(_mm256_xor_si256(g, neg), neg)
    }
}

/// Four sign bytes from ggml's 7-bit sign codes at bits `0, 7, 14, 21` of `a`.
#[inline(always)]
fn ksigns4(a: u32) -> u32 {
    let k = |l: u32| KSIGNS[((a >> (7 * l)) & 127) as usize] as u32;
    k(0) | k(1) << 8 | k(2) << 16 | k(3) << 24
}

/// The multipliers `2·s0 + 1` (first 16 weights) and `2·s1 + 1` (last 16) in i16 lanes.
#[inline(always)]
unsafe fn odd_mul(s0: u32, s1: u32) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe {
        _mm256_set_m128i(
            _mm_set1_epi16((2 * s1 + 1) as i16),
            _mm_set1_epi16((2 * s0 + 1) as i16),
        )
    }
}

/// A chunk of non-negative codebook bytes `g` with the signs of `bits`.
#[inline(always)]
unsafe fn signed(g: __m256i, bits: u32, mul: __m256i) -> Chunk {
    // SAFETY: register arithmetic.
    Chunk {
        abs: g,
        signs: unsafe { with_signs(g, bits) },
        mul,
    }
}

/// `8·level ± 1` for IQ1's levels -1, 0, 1 (bytes of `g`), the shift's sign per 8 bytes in `delta`.
#[inline(always)]
unsafe fn iq1_weights(g: __m256i, delta: __m256i) -> Chunk {
    // SAFETY: register arithmetic.
    unsafe {
        // 8·level: a 16-bit shift, with what crossed from each low byte into its high one masked away.
        let g8 = _mm256_and_si256(_mm256_slli_epi16(g, 3), _mm256_set1_epi8(0xF8u8 as i8));
        let w = _mm256_add_epi8(g8, delta);
        Chunk {
            abs: _mm256_abs_epi8(w),
            signs: w,
            mul: _mm256_setzero_si256(),
        }
    }
}

/// Weights `32·c .. 32·c + 32` of the block at `xb`.
#[inline(always)]
unsafe fn chunk(ty: GgmlType, xb: *const u8, c: usize) -> Chunk {
    // SAFETY: the caller checked that the block (`ty.type_size()` bytes at `xb`) is in the row.
    unsafe {
        let at = |i: usize| *xb.add(i) as usize;
        match ty {
            GgmlType::IQ2_XXS => {
                let (a0, a1) = (rd_u32(xb.add(2 + 8 * c)), rd_u32(xb.add(6 + 8 * c)));
                let g = gather8(
                    &IQ2XXS_GRID,
                    std::array::from_fn(|l| (a0 >> (8 * l)) as u8 as usize),
                );
                signed(g, ksigns4(a1), odd_mul(a1 >> 28, a1 >> 28))
            }
            GgmlType::IQ2_XS => {
                let q = |l: usize| rd_u16(xb.add(2 + 8 * c + 2 * l)) as usize;
                let g = gather8(&IQ2XS_GRID, std::array::from_fn(|l| q(l) & 511));
                let bits = (0..4).fold(0, |s, l| s | (KSIGNS[q(l) >> 9] as u32) << (8 * l));
                let sc = at(66 + c) as u32;
                signed(g, bits, odd_mul(sc & 15, sc >> 4))
            }
            GgmlType::IQ2_S => {
                let h = at(66 + c);
                let g = gather8(
                    &IQ2S_GRID,
                    std::array::from_fn(|l| at(2 + 4 * c + l) | ((h << (8 - 2 * l)) & 0x300)),
                );
                let sc = at(74 + c) as u32;
                signed(g, rd_u32(xb.add(34 + 4 * c)), odd_mul(sc & 15, sc >> 4))
            }
            GgmlType::IQ3_XXS => {
                let g = gather4(&IQ3XXS_GRID, std::array::from_fn(|k| at(2 + 8 * c + k)));
                let a = rd_u32(xb.add(66 + 4 * c));
                signed(g, ksigns4(a), odd_mul(a >> 28, a >> 28))
            }
            GgmlType::IQ3_S => {
                let h = at(66 + c);
                let g = gather4(
                    &IQ3S_GRID,
                    std::array::from_fn(|k| at(2 + 8 * c + k) | (((h >> k) & 1) << 8)),
                );
                let s = ((at(106 + c / 2) >> (4 * (c % 2))) & 15) as u32;
                signed(g, rd_u32(xb.add(74 + 4 * c)), odd_mul(s, s))
            }
            GgmlType::IQ1_S => {
                let qh = rd_u16(xb.add(34 + 2 * c)) as usize;
                let g = gather8(
                    &IQ1S_GRID,
                    std::array::from_fn(|l| at(2 + 4 * c + l) | (((qh >> (3 * l)) & 7) << 8)),
                );
                let delta = _mm256_set1_epi8(if qh & 0x8000 != 0 { -1 } else { 1 });
                let s = ((qh >> 12) & 7) as u32;
                Chunk {
                    mul: odd_mul(s, s),
                    ..iq1_weights(g, delta)
                }
            }
            // IQ1_M
            _ => {
                let (h0, h1) = (at(32 + 2 * c), at(33 + 2 * c));
                let q = |l: usize| at(4 * c + l);
                let idx = [
                    q(0) | ((h0 << 8) & 0x700),
                    q(1) | ((h0 << 4) & 0x700),
                    q(2) | ((h1 << 8) & 0x700),
                    q(3) | ((h1 << 4) & 0x700),
                ];
                let d = |b: usize| if b != 0 { -1i64 } else { 0x0101010101010101 };
                let delta =
                    _mm256_set_epi64x(d(h1 & 0x80), d(h1 & 0x08), d(h0 & 0x80), d(h0 & 0x08));
                let sc = rd_u16(xb.add(48 + 2 * (c / 2))) as u32 >> (6 * (c % 2));
                Chunk {
                    mul: odd_mul(sc & 7, (sc >> 3) & 7),
                    ..iq1_weights(gather8(&IQ1S_GRID, idx), delta)
                }
            }
        }
    }
}

/// The block's float (without the activation's): `d/8`, `d/4` (IQ3_XXS) or `d` (IQ3_S).
#[inline(always)]
unsafe fn block_float(ty: GgmlType, x: &[u8], off: usize) -> f32 {
    // SAFETY: avx2 callers; `f16_at` bounds-checks.
    unsafe {
        match ty {
            GgmlType::IQ3_S => f16_at(x, off),
            GgmlType::IQ3_XXS => f16_at(x, off) * 0.25,
            GgmlType::IQ1_M => {
                let sc = |k: usize| u16::from_le_bytes([x[off + 48 + 2 * k], x[off + 49 + 2 * k]]);
                let bits = (sc(0) >> 12)
                    | ((sc(1) >> 8) & 0xf0)
                    | ((sc(2) >> 4) & 0xf00)
                    | (sc(3) & 0xf000);
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))) * 0.125
            }
            _ => f16_at(x, off) * 0.125,
        }
    }
}

/// A row of codebook type `ty` against `T` (1, 4 or 8) activation rows.
#[inline(always)]
pub(super) fn codebook<const T: usize, const V: bool>(
    ty: GgmlType,
    n: usize,
    x: &[u8],
    ys: [&[u8]; T],
) -> [f32; T] {
    let (nb, ts) = (n / 256, ty.type_size());
    assert!(x.len() >= nb * ts && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        for b in 0..nb {
            let xb = x.as_ptr().add(b * ts);
            let mut sumi = [_mm256_setzero_si256(); T];
            for c in 0..8 {
                let w = chunk(ty, xb, c);
                for t in 0..T {
                    let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 32 * c));
                    let p = _mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(yq, w.signs));
                    sumi[t] = dpwssd::<V>(sumi[t], p, w.mul);
                }
            }
            let d = block_float(ty, x, b * ts);
            for t in 0..T {
                let dy = (ys[t].as_ptr().add(b * 292) as *const f32).read_unaligned();
                acc[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
        std::array::from_fn(|t| hsum_f32(acc[t]))
    }
}
