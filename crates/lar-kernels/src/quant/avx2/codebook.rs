//! The codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M; see [`crate::quant::codebook`])
//! against Q8_K activations on AVX2 and the VNNI tier, one template for all seven.
//!
//! Every weight of these types is an integer `w` (a codebook level with its sign; for IQ1, `8·level ± 1`; never
//! more than 62 in size) times an odd sub-block multiplier `m` (one per 16 weights) times one float per block. Per 32
//! weights a type gives `w` as signed bytes ([`Chunk`]: four 8-byte or eight 4-byte codebook entries, signs applied)
//! and its two multipliers, and `maddubs(|w|, ±y)` then a `madd` (or `vpdpwssd`) with `m` sum `m·w·y` into i32
//! lanes. A prompt unpacks a block of rows once ([`expand`]) and runs every group of activation rows over it
//! ([`expanded`]), on `u = w + 64` as unsigned bytes so the activation bytes go into `maddubs` as they are (no sign
//! flip per activation row), taking `64·Σ m·y` off once per block from Q8_K's sums of 16. Both paths reduce a
//! block to its exact integer sum and take one FMA per block, so neither batching nor the path changes a bit.

use super::*;
use crate::quant::codebook::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS,
};

/// 32 weights of a block as signed bytes, and the odd multipliers of their two halves.
struct Chunk {
    w: __m256i,
    m: [i16; 2],
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

/// The odd multipliers `2·s + 1` of 4-bit (or 3-bit) sub-block scales `s0` (first 16 weights) and `s1`.
#[inline(always)]
fn odd(s0: u32, s1: u32) -> [i16; 2] {
    [(2 * s0 + 1) as i16, (2 * s1 + 1) as i16]
}

/// A chunk's multipliers in the i16 lanes of its two halves.
#[inline(always)]
unsafe fn mul_lanes(m: [i16; 2]) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_set_m128i(_mm_set1_epi16(m[1]), _mm_set1_epi16(m[0])) }
}

/// `w + 64`: the weights as unsigned bytes (at most 126).
#[inline(always)]
unsafe fn offset(w: __m256i) -> __m256i {
    // SAFETY: register arithmetic.
    unsafe { _mm256_add_epi8(w, _mm256_set1_epi8(64)) }
}

/// `sumi - 64·Σ_g m_g·bsum_g` for the block's 16 multipliers `m` and an activation block's sums of 16 at `yb + 260`.
#[inline(always)]
unsafe fn take_offset(sumi: __m256i, m: __m256i, yb: *const u8) -> __m256i {
    // SAFETY: the caller's activation block is 292 bytes at `yb`.
    unsafe {
        let corr = _mm256_madd_epi16(loadp(yb.add(260)), m);
        _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 6))
    }
}

/// A chunk of non-negative codebook bytes `g` with the signs of `bits`.
#[inline(always)]
unsafe fn signed(g: __m256i, bits: u32, m: [i16; 2]) -> Chunk {
    // SAFETY: register arithmetic.
    Chunk {
        w: unsafe { with_signs(g, bits) },
        m,
    }
}

/// `8·level ± 1` for IQ1's levels -1, 0, 1 (bytes of `g`), the shift's sign per 8 bytes in `delta`.
#[inline(always)]
unsafe fn iq1_weights(g: __m256i, delta: __m256i, m: [i16; 2]) -> Chunk {
    // SAFETY: register arithmetic.
    unsafe {
        // 8·level: a 16-bit shift, with what crossed from each low byte into its high one masked away.
        let g8 = _mm256_and_si256(_mm256_slli_epi16(g, 3), _mm256_set1_epi8(0xF8u8 as i8));
        Chunk {
            w: _mm256_add_epi8(g8, delta),
            m,
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
                signed(g, ksigns4(a1), odd(a1 >> 28, a1 >> 28))
            }
            GgmlType::IQ2_XS => {
                let q = |l: usize| rd_u16(xb.add(2 + 8 * c + 2 * l)) as usize;
                let g = gather8(&IQ2XS_GRID, std::array::from_fn(|l| q(l) & 511));
                let bits = (0..4).fold(0, |s, l| s | (KSIGNS[q(l) >> 9] as u32) << (8 * l));
                let sc = at(66 + c) as u32;
                signed(g, bits, odd(sc & 15, sc >> 4))
            }
            GgmlType::IQ2_S => {
                let h = at(66 + c);
                let g = gather8(
                    &IQ2S_GRID,
                    std::array::from_fn(|l| at(2 + 4 * c + l) | ((h << (8 - 2 * l)) & 0x300)),
                );
                let sc = at(74 + c) as u32;
                signed(g, rd_u32(xb.add(34 + 4 * c)), odd(sc & 15, sc >> 4))
            }
            GgmlType::IQ3_XXS => {
                let g = gather4(&IQ3XXS_GRID, std::array::from_fn(|k| at(2 + 8 * c + k)));
                let a = rd_u32(xb.add(66 + 4 * c));
                signed(g, ksigns4(a), odd(a >> 28, a >> 28))
            }
            GgmlType::IQ3_S => {
                let h = at(66 + c);
                let g = gather4(
                    &IQ3S_GRID,
                    std::array::from_fn(|k| at(2 + 8 * c + k) | (((h >> k) & 1) << 8)),
                );
                let s = ((at(106 + c / 2) >> (4 * (c % 2))) & 15) as u32;
                signed(g, rd_u32(xb.add(74 + 4 * c)), odd(s, s))
            }
            GgmlType::IQ1_S => {
                let qh = rd_u16(xb.add(34 + 2 * c)) as usize;
                let g = gather8(
                    &IQ1S_GRID,
                    std::array::from_fn(|l| at(2 + 4 * c + l) | (((qh >> (3 * l)) & 7) << 8)),
                );
                let delta = _mm256_set1_epi8(if qh & 0x8000 != 0 { -1 } else { 1 });
                let s = ((qh >> 12) & 7) as u32;
                iq1_weights(g, delta, odd(s, s))
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
                iq1_weights(gather8(&IQ1S_GRID, idx), delta, odd(sc & 7, (sc >> 3) & 7))
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
        let mut acc = [0f32; T];
        for b in 0..nb {
            let xb = x.as_ptr().add(b * ts);
            let mut sumi = [_mm256_setzero_si256(); T];
            for c in 0..8 {
                let w = chunk(ty, xb, c);
                let (aw, mul) = (_mm256_abs_epi8(w.w), mul_lanes(w.m));
                for t in 0..T {
                    let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 32 * c));
                    let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(yq, w.w));
                    sumi[t] = dpwssd::<V>(sumi[t], p, mul);
                }
            }
            let d = block_float(ty, x, b * ts);
            for t in 0..T {
                let yb = ys[t].as_ptr().add(b * 292);
                acc[t] = block_step(acc[t], d, yb, hsum_i32(sumi[t]));
            }
        }
        acc
    }
}

/// The eight i32 lanes' sum (exact: a block's sum is far inside i32).
#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    // SAFETY: register arithmetic.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

/// `acc + (d·dy)·isum` as one FMA, `dy` the activation block's scale at `yb`: the float step of both paths.
#[inline(always)]
unsafe fn block_step(acc: f32, d: f32, yb: *const u8, isum: i32) -> f32 {
    // SAFETY: the caller's activation block starts at `yb`.
    let dy = unsafe { (yb as *const f32).read_unaligned() };
    (d * dy).mul_add(isum as f32, acc)
}

/// Bytes per block of a row in [`expand`]'s form: the block's float, the 256 weights plus 64 (unsigned), the
/// eight chunks' multipliers as they go into the `madd`, and the 16 multipliers in order (for the offset).
pub(in crate::quant) const EXPANDED_BLOCK: usize = 4 + 256 + 256 + 32;

/// A row of codebook type `ty` unpacked once into [`EXPANDED_BLOCK`]s, for a prompt: the codebook lookups and
/// signs then cost once per row block instead of once per group of activation rows ([`expanded`] reads it).
#[inline(always)]
pub(super) fn expand(ty: GgmlType, n: usize, x: &[u8], out: &mut [u8]) {
    let (nb, ts) = (n / 256, ty.type_size());
    assert!(x.len() >= nb * ts && out.len() >= nb * EXPANDED_BLOCK);
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; reads and writes within the rows (asserted).
    unsafe {
        for b in 0..nb {
            let (xb, ob) = (
                x.as_ptr().add(b * ts),
                out.as_mut_ptr().add(b * EXPANDED_BLOCK),
            );
            (ob as *mut f32).write_unaligned(block_float(ty, x, b * ts));
            for c in 0..8 {
                let w = chunk(ty, xb, c);
                _mm256_storeu_si256(ob.add(4 + 32 * c) as *mut __m256i, offset(w.w));
                _mm256_storeu_si256(ob.add(260 + 32 * c) as *mut __m256i, mul_lanes(w.m));
                let m16 = ob.add(516 + 4 * c) as *mut [i16; 2];
                m16.write_unaligned(w.m);
            }
        }
    }
}

/// [`codebook`] on a row in [`expand`]'s form: the same integers and the same float steps, so the same bits.
#[inline(always)]
pub(super) fn expanded<const T: usize, const V: bool>(
    n: usize,
    x: &[u8],
    ys: [&[u8]; T],
) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * EXPANDED_BLOCK && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): as `codebook`.
    unsafe {
        let mut acc = [0f32; T];
        for b in 0..nb {
            let xb = x.as_ptr().add(b * EXPANDED_BLOCK);
            let mut sumi = [_mm256_setzero_si256(); T];
            for c in 0..8 {
                let (u, mul) = (loadp(xb.add(4 + 32 * c)), loadp(xb.add(260 + 32 * c)));
                for t in 0..T {
                    let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 32 * c));
                    sumi[t] = dpwssd::<V>(sumi[t], _mm256_maddubs_epi16(u, yq), mul);
                }
            }
            let m = loadp(xb.add(516));
            let d = (xb as *const f32).read_unaligned();
            for t in 0..T {
                let yb = ys[t].as_ptr().add(b * 292);
                acc[t] = block_step(acc[t], d, yb, hsum_i32(take_offset(sumi[t], m, yb)));
            }
        }
        acc
    }
}
