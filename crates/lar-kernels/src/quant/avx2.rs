//! AVX2 + FMA (and AVX-512 VNNI) dot products of quantized weight rows with quantized activation rows.
//!
//! Each kernel computes, block by block, the integer dot product of the weight's quants with the activation's int8
//! quants (`maddubs` of unsigned × signed bytes, then `madd` into i32; `vpdpbusd`/`vpdpwssd` in the VNNI tier),
//! scales it by the two blocks' scales, and accumulates in f32 lanes. The plain twins are in
//! [`super::reference`]; `quant::tests` compares the two. Two tiers of the same bodies (the `tier!` macro at the
//! end), only reached after `simd_level` saw the tier's CPU features.

use std::arch::x86_64::*;

use super::{Dot4Fn, DotFn, Expanded, GgmlType, Rows4Fn, Rows8Fn, RowsFn, f32_at};

pub(super) use codebook::EXPANDED_BLOCK;

mod codebook;
mod low_k;
mod ternary;
use codebook::{codebook, expand, expanded};
use low_k::{q2_k, q3_k};
use ternary::{tq1_0, tq2_0};

/// The f16 at byte `i`, converted with the F16C instruction (inlined into the kernels, no per-call dispatch).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_at(b: &[u8], i: usize) -> f32 {
    let bits = u16::from_le_bytes([b[i], b[i + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Reads `N` bytes at `p` as a little-endian integer without bounds checks.
///
/// # Safety
/// `p..p + N` must be readable; every kernel asserts its rows' lengths before its block loop.
#[inline(always)]
unsafe fn rd_u32(p: *const u8) -> u32 {
    unsafe { u32::from_le((p as *const u32).read_unaligned()) }
}

#[inline(always)]
unsafe fn rd_u16(p: *const u8) -> u16 {
    unsafe { u16::from_le((p as *const u16).read_unaligned()) }
}

/// The two f16 at `b[0..4]` as `[b0, b1, 0, 0]` (a block's `d` and `m`, or `d` and `s`), in one conversion.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x2(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { rd_u32(p) } as i32))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Unsigned bytes × signed bytes, summed in fours into eight i32.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mul_us(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// `acc + madd(a, b)`: i16 pairs multiplied and summed into i32 lanes; one `vpdpwssd` with AVX-512 VNNI (`V`).
/// The same integers either way, so both tiers give the same bits.
#[inline(always)]
unsafe fn dpwssd<const V: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: V is only set in functions compiled with avx512vnni + avx512vl, which callers checked for.
    unsafe {
        if V {
            vpdpwssd(acc, a, b)
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
    }
}

/// `vpdpwssd` as written: LLVM's generic tuning splits the intrinsic back into `vpmaddwd` + `vpaddd` (shorter
/// latency on some CPUs), which costs a second ALU op per 32 products in these throughput-bound loops.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
unsafe fn vpdpwssd(mut acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: a register-only instruction; the caller's CPU has AVX-512 VNNI with VL (this fn's features).
    unsafe {
        std::arch::asm!(
            "vpdpwssd {acc}, {a}, {b}",
            acc = inout(ymm_reg) acc,
            a = in(ymm_reg) a,
            b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `acc + Σ4 (u8 · i8)`; one `vpdpbusd` with AVX-512 VNNI (`V`). No i16 saturation can occur in the AVX2 path for
/// the operands the kernels pass (|a| ≤ 128, |b| ≤ 127), so both give the same integers.
#[inline(always)]
unsafe fn dpbusd<const V: bool>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: as `dpwssd`.
    unsafe {
        if V {
            _mm256_dpbusd_epi32(acc, a, b)
        } else {
            _mm256_add_epi32(acc, mul_us(a, b))
        }
    }
}

/// Loads 32 bytes at `p` (callers have checked the row length).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn loadp(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// The 32 nibbles of the 16 bytes at `p` (callers have checked the row length).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn nibblesp(p: *const u8) -> __m256i {
    let t = unsafe { _mm_loadu_si128(p as *const __m128i) };
    _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16(t, 4), t),
        _mm256_set1_epi8(0x0F),
    )
}

/// Byte `j` is 0xFF where bit `j` of the little-endian u32 at `b` is set.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn bits_to_bytes(p: *const u8) -> __m256i {
    let x = unsafe { rd_u32(p) } as i32;
    let shuf = _mm256_set_epi64x(
        0x0303030303030303,
        0x0202020202020202,
        0x0101010101010101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f32(n: usize, x: &[u8], y: &[u8]) -> f32 {
    assert!(x.len() >= 4 * n && y.len() >= 4 * n);
    let (xp, yp) = (x.as_ptr() as *const f32, y.as_ptr() as *const f32);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: i + 32 <= n elements are in bounds of both rows (checked above).
    unsafe {
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + 8 * k;
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(xp.add(i)),
                _mm256_loadu_ps(yp.add(i)),
                acc[0],
            );
            i += 8;
        }
    }
    let mut s = hsum_f32(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    for j in i..n {
        s += f32_at(x, 4 * j) * f32_at(y, 4 * j);
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_f16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    assert!(x.len() >= 2 * n && y.len() >= 4 * n);
    let yp = y.as_ptr() as *const f32;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: i + 8 <= n elements are in bounds of both rows (checked above).
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(x.as_ptr().add(2 * i) as *const __m128i);
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(yp.add(i)), acc);
            i += 8;
        }
    }
    let mut s = hsum_f32(acc);
    for j in i..n {
        s += f16_at(x, 2 * j) * f32_at(y, 4 * j);
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dot_bf16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    assert!(x.len() >= 2 * n && y.len() >= 4 * n);
    let yp = y.as_ptr() as *const f32;
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: i + 8 <= n elements are in bounds of both rows (checked above).
    unsafe {
        while i + 8 <= n {
            // bf16 is the top half of an f32: widen to 32 bits and shift into place.
            let h = _mm_loadu_si128(x.as_ptr().add(2 * i) as *const __m128i);
            let w = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
            acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(yp.add(i)), acc);
            i += 8;
        }
    }
    let mut s = hsum_f32(acc);
    for j in i..n {
        let w = f32::from_bits((u16::from_le_bytes([x[2 * j], x[2 * j + 1]]) as u32) << 16);
        s += w * f32_at(y, 4 * j);
    }
    s
}

/// The eight 6-bit scales and mins of a Q4_K block (12 packed bytes at 4..16), unpacked a word at a time:
/// scales 0-3 and mins 0-3 are the low six bits of bytes 0-3 and 4-7; scales and mins 4-7 take their low four bits
/// from bytes 8-11 and their top two from the spare bits of bytes 0-3 and 4-7. Same values as `scale_min_k4`.
#[inline(always)]
fn q4k_scales(xb: &[u8]) -> ([u8; 8], [u8; 8]) {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes([xb[4 + i], xb[5 + i], xb[6 + i], xb[7 + i]]);
    let (a, b, c) = (w(0), w(4), w(8));
    let sc_lo = a & K1;
    let sc_hi = (c & K2) | (((a >> 6) & K3) << 4);
    let mn_lo = b & K1;
    let mn_hi = ((c >> 4) & K2) | (((b >> 6) & K3) << 4);
    let join = |lo: u32, hi: u32| (lo as u64 | (hi as u64) << 32).to_le_bytes();
    (join(sc_lo, sc_hi), join(mn_lo, mn_hi))
}

/// Q4_K against `T` (1, 4 or 8) activation rows; the weight block is unpacked once for all of them.
#[inline(always)]
fn q4_k<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 144 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [0f32; T];
        let m4 = _mm256_set1_epi8(0x0F);
        for b in 0..nb {
            let xs = &x[b * 144..b * 144 + 144];
            let xb = xs.as_ptr();
            let (sc, mn) = q4k_scales(xs);
            let dm = f16x2(xb);
            // Each min twice, to meet the activation's sixteen sums of 16 values (two per sub-block).
            let m = _mm_cvtepu8_epi16(_mm_loadl_epi64(mn.as_ptr() as *const __m128i));
            let mv = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let q4 = loadp(xb.add(16 + 32 * j));
                let lo = _mm256_and_si256(q4, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                let (s0, s1) = (
                    _mm256_set1_epi16(sc[2 * j] as i16),
                    _mm256_set1_epi16(sc[2 * j + 1] as i16),
                );
                for t in 0..T {
                    let yq = ys[t].as_ptr().add(b * 292 + 4 + 64 * j);
                    let p0 = _mm256_maddubs_epi16(lo, loadp(yq));
                    let p1 = _mm256_maddubs_epi16(hi, loadp(yq.add(32)));
                    sumi[t] = dpwssd::<V>(dpwssd::<V>(sumi[t], p0, s0), p1, s1);
                }
            }
            let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            for t in 0..T {
                let yb = ys[t].as_ptr().add(b * 292);
                let dy = (yb as *const f32).read_unaligned();
                // acc += d·dy·Σ scale·q·y − dmin·dy·Σ min·(sums of 16 y): both sums whole integers per block, so
                // the packed kernel (rows in lanes) gives the same bits (`super::packed_q4k`).
                let mins = hsum_i32(_mm256_madd_epi16(loadp(yb.add(260)), mv));
                let a = (d * dy).mul_add(hsum_i32(sumi[t]) as f32, acc[t]);
                acc[t] = (-(dmin * dy)).mul_add(mins as f32, a);
            }
        }
        acc
    }
}

/// Q5_K against `T` (1, 4 or 8) activation rows: Q4_K's kernel with each quant's fifth bit from the block's 32
/// bytes of high bits (bit `j` of byte `l` belongs to value `l` of sub-block `j`), the same integer and float steps.
#[inline(always)]
fn q5_k<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 176 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [0f32; T];
        let (m4, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(1));
        for b in 0..nb {
            let xs = &x[b * 176..b * 176 + 176];
            let xb = xs.as_ptr();
            let (sc, mn) = q4k_scales(xs);
            let dm = f16x2(xb);
            let m = _mm_cvtepu8_epi16(_mm_loadl_epi64(mn.as_ptr() as *const __m128i));
            let mv = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
            let qh = loadp(xb.add(16));
            let mut sumi = [_mm256_setzero_si256(); T];
            for j in 0..4 {
                let q4 = loadp(xb.add(48 + 32 * j));
                // Bit 2j (2j + 1) of each high-bit byte, as 16 or 0 (shifts within 16-bit lanes: the mask keeps
                // each byte's own bit).
                let h = |k: i32| {
                    let bit = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(k)), one);
                    _mm256_slli_epi16(bit, 4)
                };
                let lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h(2 * j as i32));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4),
                    h(2 * j as i32 + 1),
                );
                let (s0, s1) = (
                    _mm256_set1_epi16(sc[2 * j] as i16),
                    _mm256_set1_epi16(sc[2 * j + 1] as i16),
                );
                for t in 0..T {
                    let yq = ys[t].as_ptr().add(b * 292 + 4 + 64 * j);
                    let p0 = _mm256_maddubs_epi16(lo, loadp(yq));
                    let p1 = _mm256_maddubs_epi16(hi, loadp(yq.add(32)));
                    sumi[t] = dpwssd::<V>(dpwssd::<V>(sumi[t], p0, s0), p1, s1);
                }
            }
            let (d, dmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            for t in 0..T {
                let yb = ys[t].as_ptr().add(b * 292);
                let dy = (yb as *const f32).read_unaligned();
                let mins = hsum_i32(_mm256_madd_epi16(loadp(yb.add(260)), mv));
                let a = (d * dy).mul_add(hsum_i32(sumi[t]) as f32, acc[t]);
                acc[t] = (-(dmin * dy)).mul_add(mins as f32, a);
            }
        }
        acc
    }
}

/// The sum of eight i32 lanes (wrapping, as the integer sums never come near overflow).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
    _mm_cvtsi128_si32(s)
}

/// Q6_K against `T` (1, 4 or 8) activation rows; the weight block is unpacked once for all of them.
#[inline(always)]
fn q6_k<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    let nb = n / 256;
    assert!(x.len() >= nb * 210 && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let (m3, m4) = (_mm256_set1_epi8(3), _mm256_set1_epi8(0x0F));
        for b in 0..nb {
            let xb = x.as_ptr().add(b * 210);
            // (q − 32)·y summed with scales = q·y with scales − 32·Σ scale·(sum of 16 y): the second term comes
            // from the activation's block sums (Q8_K keeps one per 16 values, one per Q6_K scale).
            let sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(xb.add(192) as *const __m128i));
            let mut sumi = [_mm256_setzero_si256(); T];
            for t in 0..T {
                let bsums = loadp(ys[t].as_ptr().add(b * 292 + 260));
                sumi[t] = _mm256_sub_epi32(
                    sumi[t],
                    _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5),
                );
            }
            for h in 0..2 {
                let a = loadp(xb.add(64 * h));
                let bb = loadp(xb.add(64 * h + 32));
                let qh = loadp(xb.add(128 + 32 * h));
                let hb = |v: __m256i| _mm256_slli_epi16(_mm256_and_si256(v, m3), 4);
                let q = [
                    _mm256_or_si256(_mm256_and_si256(a, m4), hb(qh)),
                    _mm256_or_si256(_mm256_and_si256(bb, m4), hb(_mm256_srli_epi16(qh, 2))),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
                        hb(_mm256_srli_epi16(qh, 4)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(bb, 4), m4),
                        hb(_mm256_srli_epi16(qh, 6)),
                    ),
                ];
                let sc = xb.add(192 + 8 * h) as *const i8;
                for (k, qk) in q.iter().enumerate() {
                    let s = _mm256_set_m128i(
                        _mm_set1_epi16(*sc.add(2 * k + 1) as i16),
                        _mm_set1_epi16(*sc.add(2 * k) as i16),
                    );
                    for t in 0..T {
                        let yk = loadp(ys[t].as_ptr().add(b * 292 + 4 + 128 * h + 32 * k));
                        sumi[t] = dpwssd::<V>(sumi[t], _mm256_maddubs_epi16(*qk, yk), s);
                    }
                }
            }
            let d = _mm_cvtss_f32(f16x2(xb.add(208)));
            for t in 0..T {
                let dy = (ys[t].as_ptr().add(b * 292) as *const f32).read_unaligned();
                acc[t] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
            }
        }
        let mut out = [0f32; T];
        for t in 0..T {
            out[t] = hsum_f32(acc[t]);
        }
        out
    }
}

/// Block layout of a 32-element type: weight block bytes, activation block bytes, signed quants (Q4_0, Q5_0, Q8_0
/// against Q8_0 activations) or unsigned with an `m` (Q4_1, Q5_1 against Q8_1, whose blocks carry `s = d·Σq`).
#[inline(always)]
fn layout_32(kind: GgmlType) -> (usize, usize, bool) {
    match kind {
        GgmlType::Q4_0 => (18, 34, true),
        GgmlType::Q4_1 => (20, 36, false),
        GgmlType::Q5_0 => (22, 34, true),
        GgmlType::Q5_1 => (24, 36, false),
        GgmlType::IQ4_NL => (18, 34, true),
        GgmlType::MXFP4 => (17, 34, true),
        _ => (34, 34, true), // Q8_0
    }
}

/// The activation scales of `T` rows for every block, lane `t` for row `t`: `d` at `2b`, `s` at `2b + 1` (zero
/// for Q8_0 blocks). Computed once per group of rows and reused for every weight row it meets.
#[inline(always)]
fn act_scales_32<const T: usize>(n: usize, ys: [&[u8]; T], kind: GgmlType) -> Vec<__m256> {
    let (_, act, signed) = layout_32(kind);
    let nb = n / 32;
    let mut tab = Vec::with_capacity(2 * nb);
    for b in 0..nb {
        let (mut d, mut s) = ([0f32; 8], [0f32; 8]);
        for t in 0..T {
            let yb = &ys[t][b * act..];
            d[t] = half::f16::from_le_bytes([yb[0], yb[1]]).to_f32();
            if !signed {
                s[t] = half::f16::from_le_bytes([yb[2], yb[3]]).to_f32();
            }
        }
        // SAFETY: plain loads of two stack arrays of eight f32.
        unsafe {
            tab.push(_mm256_loadu_ps(d.as_ptr()));
            tab.push(_mm256_loadu_ps(s.as_ptr()));
        }
    }
    tab
}

/// A table of 16 signed bytes in both 128-bit lanes, for `vpshufb` lookups of nibbles.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn table16(t: &[i8; 16]) -> __m256i {
    // SAFETY: a 16-byte load of a 16-byte array.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr() as *const __m128i)) }
}

/// IQ4_NL's 16 values in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn iq4_table() -> __m256i {
    table16(&super::iq4::KVALUES)
}

/// IQ4_XS against `T` (1, 4 or 8) activation rows (Q8_K): per sub-block of 32 the nibbles looked up in the table,
/// multiplied with the activations by the sign trick (pairs stay below i16's range: 2·127·127), weighted by the
/// sub-block's scale `ls − 32` into i32 lanes; one float step per block (`acc = fma(d·dy, Σ, acc)`), the same for
/// every `T`.
#[inline(always)]
fn iq4_xs<const T: usize, const V: bool>(n: usize, x: &[u8], ys: [&[u8]; T]) -> [f32; T] {
    use super::iq4::{XS_BLOCK, xs_scale};
    let nb = n / 256;
    assert!(x.len() >= nb * XS_BLOCK && ys.iter().all(|y| y.len() >= nb * 292));
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [0f32; T];
        let table = iq4_table();
        for b in 0..nb {
            let xs = &x[b * XS_BLOCK..][..XS_BLOCK];
            let mut sumi = [_mm256_setzero_si256(); T];
            for ib in 0..8 {
                let qx = _mm256_shuffle_epi8(table, nibblesp(xs.as_ptr().add(8 + 16 * ib)));
                let ax = _mm256_sign_epi8(qx, qx);
                let s = _mm256_set1_epi16(xs_scale(xs, ib) as i16 - 32);
                for t in 0..T {
                    let yq = loadp(ys[t].as_ptr().add(b * 292 + 4 + 32 * ib));
                    let p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(yq, qx));
                    sumi[t] = dpwssd::<V>(sumi[t], p, s);
                }
            }
            let d = f16_at(xs, 0);
            for t in 0..T {
                let dy = (ys[t].as_ptr().add(b * 292) as *const f32).read_unaligned();
                acc[t] = (d * dy).mul_add(hsum_i32(sumi[t]) as f32, acc[t]);
            }
        }
        acc
    }
}

/// The 32 quants of a 32-element block at `xb` as bytes: signed (Q4_0, Q5_0, Q8_0, IQ4_NL) or unsigned (Q4_1, Q5_1).
#[inline(always)]
unsafe fn quants_32(kind: GgmlType, xb: *const u8) -> __m256i {
    // SAFETY: compiled inside avx2+fma+f16c callers, which checked that the block is within the row.
    unsafe {
        match kind {
            GgmlType::Q4_0 => _mm256_sub_epi8(nibblesp(xb.add(2)), _mm256_set1_epi8(8)),
            GgmlType::Q4_1 => nibblesp(xb.add(4)),
            // (nibble | 16·h) − 16: where h is 0 the byte becomes nibble | 0xF0, i.e. nibble − 16 as i8.
            GgmlType::Q5_0 => _mm256_or_si256(
                nibblesp(xb.add(6)),
                _mm256_andnot_si256(bits_to_bytes(xb.add(2)), _mm256_set1_epi8(0xF0u8 as i8)),
            ),
            GgmlType::Q5_1 => _mm256_or_si256(
                nibblesp(xb.add(8)),
                _mm256_and_si256(bits_to_bytes(xb.add(4)), _mm256_set1_epi8(0x10)),
            ),
            // Each nibble looked up in the table (signed bytes, |v| <= 127: the sign trick holds).
            GgmlType::IQ4_NL => _mm256_shuffle_epi8(iq4_table(), nibblesp(xb.add(2))),
            GgmlType::MXFP4 => {
                _mm256_shuffle_epi8(table16(&super::fp4::KVALUES), nibblesp(xb.add(1)))
            }
            _ => loadp(xb.add(2)),
        }
    }
}

/// A 32-element block's scales at `b` as `[d, m, 0, 0]` (weights) or `[d, s, 0, 0]` (Q8_1 activations); only `d`
/// for the signed types.
#[inline(always)]
unsafe fn scales_32(signed: bool, b: *const u8) -> __m128 {
    // SAFETY: as `quants_32`.
    unsafe {
        if signed {
            _mm_cvtph_ps(_mm_cvtsi32_si128(rd_u16(b) as i32))
        } else {
            f16x2(b)
        }
    }
}

/// A 32-element weight block's scales at `b`, as [`scales_32`]; MXFP4's is its E8M0 byte, halved.
#[inline(always)]
unsafe fn weight_scales_32(kind: GgmlType, signed: bool, b: *const u8) -> __m128 {
    // SAFETY: as `quants_32`.
    unsafe {
        if kind == GgmlType::MXFP4 {
            _mm_set_ss(super::fp4::e8m0_half(*b))
        } else {
            scales_32(signed, b)
        }
    }
}

/// How far ahead of the weights being read the decode kernels prefetch: enough bytes in flight to cover memory
/// latency on one core (SmolLM2 Q4_1 decode on an Intel Xeon: +25% at 1.4 KB ahead, +45% at 2.9 KB).
const PREFETCH_BYTES: usize = 2560;

/// Prefetches the lines of the `bytes` at `at` (a hint: an address past the weights is never read).
#[inline(always)]
fn prefetch_lines(at: *const u8, bytes: usize) {
    for i in (0..bytes).step_by(64) {
        // SAFETY: a prefetch reads nothing and faults on no address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(i) as *const i8) };
    }
}

/// `R` weight rows of a 32-element type against one activation row (decode): for each row the float operations
/// [`blocks_32`] does for each of its activation rows, in its order, so the same bits; the activation block and its
/// scales read once for all `R` rows, `R` independent accumulator chains in flight. With `ahead > 0` each block's
/// weights `ahead` bytes on are prefetched (a hint: an address past the matrix is never read).
#[inline(always)]
fn blocks_32_rows<const R: usize, const V: bool>(
    n: usize,
    xs: [&[u8]; R],
    y: &[u8],
    kind: GgmlType,
    ahead: usize,
) -> [f32; R] {
    let (wsize, act, signed) = layout_32(kind);
    let nb = n / 32;
    assert!(xs.iter().all(|x| x.len() >= nb * wsize) && y.len() >= nb * act);
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let mut msum = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            let yb = y.as_ptr().add(b * act);
            let pair = scales_32(signed, yb);
            let (dy, sy) = (
                _mm256_broadcastss_ps(pair),
                _mm256_broadcastss_ps(_mm_movehdup_ps(pair)),
            );
            let yq = loadp(yb.add(act - 32));
            for r in 0..R {
                let xb = xs[r].as_ptr().add(b * wsize);
                if ahead > 0 {
                    _mm_prefetch::<_MM_HINT_T0>(xb.wrapping_add(ahead) as *const i8);
                }
                let qx = quants_32(kind, xb);
                let ax = if signed { _mm256_sign_epi8(qx, qx) } else { qx };
                let dm = weight_scales_32(kind, signed, xb);
                let dv = _mm256_mul_ps(_mm256_broadcastss_ps(dm), dy);
                if !signed {
                    msum[r] =
                        _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), sy, msum[r]);
                }
                let yq = if signed { _mm256_sign_epi8(yq, qx) } else { yq };
                let p = _mm256_cvtepi32_ps(dpbusd::<V>(_mm256_setzero_si256(), ax, yq));
                acc[r] = _mm256_fmadd_ps(dv, p, acc[r]);
            }
        }
        std::array::from_fn(|r| hsum_f32(acc[r]) + _mm256_cvtss_f32(msum[r]))
    }
}

/// The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) against `T` (4 or 8) activation rows: each weight
/// block is unpacked once, to signed bytes (Q4_0, Q5_0, Q8_0: `sign` trick) or unsigned ones (Q4_1, Q5_1), and
/// its scale multiplies all `T` activation scales in one instruction (`tab`, from [`act_scales_32`]). Per row:
/// `Σ_b dx·dy·Σ(qx·qy)` in one accumulator, summed in block order, plus `Σ_b mx·sy` for the unsigned types; the
/// same float operations as [`blocks_32_rows`] for one activation row.
#[inline(always)]
fn blocks_32<const T: usize, const V: bool>(
    n: usize,
    x: &[u8],
    ys: [&[u8]; T],
    kind: GgmlType,
    tab: &[__m256],
) -> [f32; T] {
    let (wsize, act, signed) = layout_32(kind);
    let nb = n / 32;
    assert!(x.len() >= nb * wsize && ys.iter().all(|y| y.len() >= nb * act));
    assert!(tab.len() >= 2 * nb);
    // SAFETY (whole body): compiled inside avx2+fma+f16c callers; all reads are within the rows (asserted above).
    unsafe {
        let mut acc = [_mm256_setzero_ps(); T];
        let mut msum = _mm256_setzero_ps();
        for b in 0..nb {
            let xb = x.as_ptr().add(b * wsize);
            let qx = quants_32(kind, xb);
            let ax = if signed { _mm256_sign_epi8(qx, qx) } else { qx };
            // Weight [d, m] (m only for the unsigned types) and the activations' [d] and [s] per row.
            let dm = weight_scales_32(kind, signed, xb);
            let (dy, sy) = (tab[2 * b], tab[2 * b + 1]);
            let dv = _mm256_mul_ps(_mm256_broadcastss_ps(dm), dy);
            if !signed {
                msum = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dm)), sy, msum);
            }
            for t in 0..T {
                let yq = loadp(ys[t].as_ptr().add(b * act + act - 32));
                let yq = if signed { _mm256_sign_epi8(yq, qx) } else { yq };
                let p = _mm256_cvtepi32_ps(dpbusd::<V>(_mm256_setzero_si256(), ax, yq));
                let s = _mm256_permutevar8x32_ps(dv, _mm256_set1_epi32(t as i32));
                acc[t] = _mm256_fmadd_ps(s, p, acc[t]);
            }
        }
        let mut m = [0f32; 8];
        _mm256_storeu_ps(m.as_mut_ptr(), msum);
        let mut out = [0f32; T];
        for t in 0..T {
            out[t] = hsum_f32(acc[t]) + m[t];
        }
        out
    }
}

/// One tier of kernels, compiled with `$features`; `$v` selects the AVX-512 VNNI instructions in the shared bodies.
/// Every entry point goes through [`rows`], so one row alone, four or eight at once give the same bits: a token's
/// result does not depend on how it was batched.
macro_rules! tier {
    ($name:ident, $features:literal, $v:literal) => {
        pub(super) mod $name {
            use super::*;

            /// `T` activation rows against `out.len()` consecutive weight rows of `rb` bytes: the type dispatched
            /// once, the activation scales of the 32-element types gathered once, for the whole block of rows.
            #[target_feature(enable = $features)]
            fn rows<const T: usize>(
                ty: GgmlType,
                n: usize,
                w: &[u8],
                rb: usize,
                ys: [&[u8]; T],
                out: &mut [[f32; T]],
            ) {
                use GgmlType::*;
                let tab = if T > 1 && ty.block_size() == 32 {
                    act_scales_32(n, ys, ty)
                } else {
                    Vec::new()
                };
                // The weights stream from memory: prefetch what the rows a few on need (~2.5 KB ahead, whole
                // rows), so enough lines are in flight to cover its latency (decode only: a prompt's rows are
                // read from cache many times).
                let ahead = rb * PREFETCH_BYTES.div_ceil(rb.max(1)).max(4);
                macro_rules! each {
                    ($x:ident => $e:expr) => {
                        for (r, o) in out.iter_mut().enumerate() {
                            let $x = &w[r * rb..(r + 1) * rb];
                            if T == 1 {
                                prefetch_lines($x.as_ptr().wrapping_add(ahead), rb);
                            }
                            *o = $e;
                        }
                    };
                }
                // One activation row (decode) of a 32-element type: weight rows four at a time.
                macro_rules! decode_32 {
                    ($k:expr) => {{
                        let done = out.len() / 4 * 4;
                        for (c, o) in out.chunks_exact_mut(4).enumerate() {
                            let x = std::array::from_fn(|k| &w[(4 * c + k) * rb..][..rb]);
                            let v = blocks_32_rows::<4, $v>(n, x, ys[0], $k, ahead);
                            for (o, v) in o.iter_mut().zip(v) {
                                o[0] = v;
                            }
                        }
                        for (r, o) in out.iter_mut().enumerate().skip(done) {
                            o[0] = blocks_32_rows::<1, $v>(n, [&w[r * rb..][..rb]], ys[0], $k, 0)[0];
                        }
                    }};
                }
                if T == 1 {
                    match ty {
                        IQ4_NL => return decode_32!(IQ4_NL),
                        MXFP4 => return decode_32!(MXFP4),
                        Q4_0 => return decode_32!(Q4_0),
                        Q4_1 => return decode_32!(Q4_1),
                        Q5_0 => return decode_32!(Q5_0),
                        Q5_1 => return decode_32!(Q5_1),
                        Q8_0 => return decode_32!(Q8_0),
                        _ => {}
                    }
                }
                // Each arm inlines its kernel with the type as a constant.
                match ty {
                    Q2_K => each!(x => q2_k::<T, $v>(n, x, ys)),
                    Q3_K => each!(x => q3_k::<T, $v>(n, x, ys)),
                    Q4_K => each!(x => q4_k::<T, $v>(n, x, ys)),
                    Q5_K => each!(x => q5_k::<T, $v>(n, x, ys)),
                    Q6_K => each!(x => q6_k::<T, $v>(n, x, ys)),
                    IQ4_XS => each!(x => iq4_xs::<T, $v>(n, x, ys)),
                    TQ1_0 => each!(x => tq1_0::<T, $v>(n, x, ys)),
                    TQ2_0 => each!(x => tq2_0::<T, $v>(n, x, ys)),
                    IQ2_XXS => each!(x => codebook::<T, $v>(IQ2_XXS, n, x, ys)),
                    IQ2_XS => each!(x => codebook::<T, $v>(IQ2_XS, n, x, ys)),
                    IQ2_S => each!(x => codebook::<T, $v>(IQ2_S, n, x, ys)),
                    IQ3_XXS => each!(x => codebook::<T, $v>(IQ3_XXS, n, x, ys)),
                    IQ3_S => each!(x => codebook::<T, $v>(IQ3_S, n, x, ys)),
                    IQ1_S => each!(x => codebook::<T, $v>(IQ1_S, n, x, ys)),
                    IQ1_M => each!(x => codebook::<T, $v>(IQ1_M, n, x, ys)),
                    IQ4_NL => each!(x => blocks_32::<T, $v>(n, x, ys, IQ4_NL, &tab)),
                    MXFP4 => each!(x => blocks_32::<T, $v>(n, x, ys, MXFP4, &tab)),
                    Q4_0 => each!(x => blocks_32::<T, $v>(n, x, ys, Q4_0, &tab)),
                    Q4_1 => each!(x => blocks_32::<T, $v>(n, x, ys, Q4_1, &tab)),
                    Q5_0 => each!(x => blocks_32::<T, $v>(n, x, ys, Q5_0, &tab)),
                    Q5_1 => each!(x => blocks_32::<T, $v>(n, x, ys, Q5_1, &tab)),
                    _ => each!(x => blocks_32::<T, $v>(n, x, ys, Q8_0, &tab)),
                }
            }

            /// A row of a codebook type in `codebook::expand`'s form, the type dispatched once per row.
            #[target_feature(enable = $features)]
            fn expand_row(ty: GgmlType, n: usize, x: &[u8], out: &mut [u8]) {
                use GgmlType::*;
                match ty {
                    IQ2_XXS => expand(IQ2_XXS, n, x, out),
                    IQ2_XS => expand(IQ2_XS, n, x, out),
                    IQ2_S => expand(IQ2_S, n, x, out),
                    IQ3_XXS => expand(IQ3_XXS, n, x, out),
                    IQ3_S => expand(IQ3_S, n, x, out),
                    IQ1_S => expand(IQ1_S, n, x, out),
                    _ => expand(IQ1_M, n, x, out),
                }
            }

            /// `T` activation rows against `out.len()` expanded rows of `rb` bytes.
            #[target_feature(enable = $features)]
            fn expanded_rows<const T: usize>(
                n: usize,
                w: &[u8],
                rb: usize,
                ys: [&[u8]; T],
                out: &mut [[f32; T]],
            ) {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = expanded::<T, $v>(n, &w[r * rb..(r + 1) * rb], ys);
                }
            }

            /// The prompt path of a codebook type: expand a block of rows once, then run every group of
            /// activation rows over it (eight at a time where 32 vector registers hold the accumulators).
            pub(in crate::quant) fn expanded_fns(ty: GgmlType) -> Option<Expanded> {
                use GgmlType::*;
                if !matches!(ty, IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M) {
                    return None;
                }
                let rows8: Option<Rows8Fn> = if $v {
                    Some(|n, w, rb, ys, o| unsafe { expanded_rows::<8>(n, w, rb, ys, o) })
                } else {
                    None
                };
                Some(Expanded {
                    ty,
                    expand: |ty, n, x, out| unsafe { expand_row(ty, n, x, out) },
                    rows8,
                    rows4: |n, w, rb, ys, o| unsafe { expanded_rows::<4>(n, w, rb, ys, o) },
                })
            }

            /// `$e` with `$t` bound to `ty` as a constant, for each type this tier has integer kernels for.
            macro_rules! by_type {
                ($ty:expr, $t:ident => $e:expr) => {
                    match $ty {
                        GgmlType::Q4_0 => { const $t: GgmlType = GgmlType::Q4_0; $e }
                        GgmlType::Q4_1 => { const $t: GgmlType = GgmlType::Q4_1; $e }
                        GgmlType::Q5_0 => { const $t: GgmlType = GgmlType::Q5_0; $e }
                        GgmlType::Q5_1 => { const $t: GgmlType = GgmlType::Q5_1; $e }
                        GgmlType::Q8_0 => { const $t: GgmlType = GgmlType::Q8_0; $e }
                        GgmlType::Q2_K => { const $t: GgmlType = GgmlType::Q2_K; $e }
                        GgmlType::Q3_K => { const $t: GgmlType = GgmlType::Q3_K; $e }
                        GgmlType::Q4_K => { const $t: GgmlType = GgmlType::Q4_K; $e }
                        GgmlType::Q5_K => { const $t: GgmlType = GgmlType::Q5_K; $e }
                        GgmlType::Q6_K => { const $t: GgmlType = GgmlType::Q6_K; $e }
                        GgmlType::IQ4_NL => { const $t: GgmlType = GgmlType::IQ4_NL; $e }
                        GgmlType::MXFP4 => { const $t: GgmlType = GgmlType::MXFP4; $e }
                        GgmlType::IQ4_XS => { const $t: GgmlType = GgmlType::IQ4_XS; $e }
                        GgmlType::TQ1_0 => { const $t: GgmlType = GgmlType::TQ1_0; $e }
                        GgmlType::TQ2_0 => { const $t: GgmlType = GgmlType::TQ2_0; $e }
                        GgmlType::IQ2_XXS => { const $t: GgmlType = GgmlType::IQ2_XXS; $e }
                        GgmlType::IQ2_XS => { const $t: GgmlType = GgmlType::IQ2_XS; $e }
                        GgmlType::IQ2_S => { const $t: GgmlType = GgmlType::IQ2_S; $e }
                        GgmlType::IQ3_XXS => { const $t: GgmlType = GgmlType::IQ3_XXS; $e }
                        GgmlType::IQ3_S => { const $t: GgmlType = GgmlType::IQ3_S; $e }
                        GgmlType::IQ1_S => { const $t: GgmlType = GgmlType::IQ1_S; $e }
                        GgmlType::IQ1_M => { const $t: GgmlType = GgmlType::IQ1_M; $e }
                        _ => return None,
                    }
                };
            }

            // SAFETY (every closure below): reached only after `simd_level` saw this tier's features; `rows`
            // checks the row lengths.

            /// The kernel for `ty` in this tier, where there is one.
            pub(in crate::quant) fn dot_fn(ty: GgmlType) -> Option<DotFn> {
                Some(match ty {
                    GgmlType::F32 => |n, x, y| unsafe { dot_f32(n, x, y) },
                    GgmlType::F16 => |n, x, y| unsafe { dot_f16(n, x, y) },
                    GgmlType::BF16 => |n, x, y| unsafe { dot_bf16(n, x, y) },
                    _ => by_type!(ty, TY => |n, x, y| {
                        let mut o = [[0f32; 1]];
                        unsafe { rows::<1>(TY, n, x, x.len(), [y], &mut o) };
                        o[0][0]
                    }),
                })
            }

            /// Four activation rows against one weight row.
            pub(in crate::quant) fn dot4_fn(ty: GgmlType) -> Option<Dot4Fn> {
                Some(by_type!(ty, TY => |n, x, ys| {
                    let mut o = [[0f32; 4]];
                    unsafe { rows::<4>(TY, n, x, x.len(), ys, &mut o) };
                    o[0]
                }))
            }

            /// [`rows`] for four activation rows.
            pub(in crate::quant) fn rows4_fn(ty: GgmlType) -> Option<Rows4Fn> {
                Some(by_type!(ty, TY => |n, w, rb, ys, o| unsafe { rows::<4>(TY, n, w, rb, ys, o) }))
            }

            /// [`rows`] for one activation row (decode).
            pub(in crate::quant) fn rows1_fn(ty: GgmlType) -> Option<RowsFn<1>> {
                Some(by_type!(ty, TY => |n, w, rb, ys, o| unsafe { rows::<1>(TY, n, w, rb, ys, o) }))
            }

            /// [`rows`] for eight activation rows: only where 32 vector registers hold its accumulators (the
            /// AVX-512 tier), else `None`.
            pub(in crate::quant) fn rows8_fn(ty: GgmlType) -> Option<Rows8Fn> {
                if !$v {
                    return None;
                }
                Some(by_type!(ty, TY => |n, w, rb, ys, o| unsafe { rows::<8>(TY, n, w, rb, ys, o) }))
            }
        }
    };
}

tier!(avx2, "avx2,fma,f16c", false);
tier!(
    vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);
