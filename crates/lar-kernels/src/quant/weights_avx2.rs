//! The plain loops of the weight quantizers in AVX2, the same bytes as their scalar twins: Q4_0 and Q5_0 whole
//! (ggml's `quantize_row_q4_0_ref` / `quantize_row_q5_0_ref`, a block of 32 in four vectors), and the last step
//! of Q3_K and Q6_K, each value's level against its sub-block's final scale ([`levels_by_division`]).
//!
//! Per block: the largest magnitude and the first value that has it (its sign sets the scale's), `d = max / -8`
//! (or `-16`), `q = min(15, trunc(x / d + 8.5))` (31 and 16.5 for Q5_0) with the scalar's f32 operations in its
//! order (a product by the f32 inverse, then the add; no fused multiply-add). Blocks the vectors would treat
//! differently from the scalar code go to it: a NaN or infinity in the block, or an inverse scale that overflows
//! (a subnormal largest value). These quantizers are most of `lar quantize --type Q4_0`'s time, and of the
//! Q4_0/Q5_0 fallbacks k-quant mixtures give rows that 256 does not divide.

use super::QK;

/// The two types, by their level count.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Q4_0,
    Q5_0,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q5_0 => 22,
        }
    }
}

/// Appends `x` (a multiple of 32 long) as `kind` blocks to `out`; `scalar` writes a block the vectors leave.
///
/// # Safety
/// The CPU has AVX2 and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn quantize(
    kind: Kind,
    x: &[f32],
    out: &mut Vec<u8>,
    scalar: fn(&[f32], &mut Vec<u8>),
) {
    let bytes = kind.block_bytes();
    out.reserve(x.len() / QK * bytes);
    let mut block = [0u8; 22];
    for b in x.chunks_exact(QK) {
        // SAFETY: AVX2 and F16C (the caller's); `b` holds 32 floats.
        if unsafe { block_avx2(kind, b, &mut block) } {
            out.extend_from_slice(&block[..bytes]);
        } else {
            scalar(b, out);
        }
    }
}

/// One block into `o` (`d`, then Q5_0's high bits, then the packed low nibbles); false when the block is left to
/// the scalar code.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block_avx2(kind: Kind, b: &[f32], o: &mut [u8; 22]) -> bool {
    use std::arch::x86_64::*;
    let (div, offset, top) = match kind {
        Kind::Q4_0 => (-8.0f32, 8.5f32, 15),
        Kind::Q5_0 => (-16.0, 16.5, 31),
    };
    debug_assert_eq!(b.len(), QK);
    // SAFETY: the caller's AVX2 and F16C; four loads of 8 floats within the 32 of `b`.
    unsafe {
        let p = b.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let exp = _mm256_set1_epi32(0x7f80_0000);
        let sign = _mm256_set1_ps(-0.0);
        let mut special = _mm256_setzero_si256();
        let mut a = [_mm256_setzero_ps(); 4];
        for k in 0..4 {
            let e = _mm256_and_si256(_mm256_castps_si256(v[k]), exp);
            special = _mm256_or_si256(special, _mm256_cmpeq_epi32(e, exp));
            a[k] = _mm256_andnot_ps(sign, v[k]);
        }
        if _mm256_movemask_epi8(special) != 0 {
            return false;
        }
        let mut m = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
        m = _mm256_max_ps(m, _mm256_permute2f128_ps::<1>(m, m));
        m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b0100_1110>(m, m));
        m = _mm256_max_ps(m, _mm256_shuffle_ps::<0b1011_0001>(m, m));
        let amax = _mm256_cvtss_f32(m);
        // C keeps its initial +0 when every value is zero; otherwise the first value of largest magnitude.
        let max = if amax == 0.0 {
            0.0
        } else {
            let mut hits = 0u32;
            for (k, &ak) in a.iter().enumerate() {
                hits |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(ak, m)) as u32) << (8 * k);
            }
            b[hits.trailing_zeros() as usize]
        };
        let d = max / div;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        if !id.is_finite() {
            return false;
        }
        let (idv, off, topv) = (
            _mm256_set1_ps(id),
            _mm256_set1_ps(offset),
            _mm256_set1_epi32(top),
        );
        let q: [__m256i; 4] = std::array::from_fn(|k| {
            let t = _mm256_add_ps(_mm256_mul_ps(v[k], idv), off);
            _mm256_min_epi32(_mm256_cvttps_epi32(t), topv)
        });
        // 32 levels (0..=top) as bytes in order: packing works within 128-bit halves, the permute restores it.
        let w = _mm256_packus_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let w = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        let (lo, hi) = (_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
        let nib = _mm_set1_epi8(0x0f);
        let qs = _mm_or_si128(
            _mm_and_si128(lo, nib),
            _mm_slli_epi16::<4>(_mm_and_si128(hi, nib)),
        );
        let dh =
            _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d))) as u16;
        o[..2].copy_from_slice(&dh.to_le_bytes());
        let at = match kind {
            Kind::Q4_0 => 2,
            Kind::Q5_0 => {
                // Bit 4 of level j is bit j of qh: shifted to each byte's top bit and gathered.
                let qh = _mm256_movemask_epi8(_mm256_slli_epi16::<3>(w)) as u32;
                o[2..6].copy_from_slice(&qh.to_le_bytes());
                6
            }
        };
        _mm_storeu_si128(o[at..at + 16].as_mut_ptr().cast(), qs);
        true
    }
}

/// `out[i] = clamp(nearest_int(x[i] / dj), lo, hi) + lo.abs()` for 16 values, as the k-quants' scalar loops write
/// it (the same f32 division and the same magic-number rounding, so the same levels even where `x / dj` is out of
/// the rounding trick's range).
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn levels_by_division(x: &[f32], dj: f32, lo: i32, hi: i32, out: &mut [i8]) {
    use std::arch::x86_64::*;
    assert!(x.len() >= 16 && out.len() >= 16);
    // SAFETY: AVX2 (the caller's); two loads of 8 within `x` and a 16-byte store within `out` (checked above).
    unsafe {
        let (a, b) = (
            level8(x.as_ptr(), dj, lo, hi),
            level8(x.as_ptr().add(8), dj, lo, hi),
        );
        // Levels fit a byte: pack to 16-bit then 8-bit within each half, and put the halves' pieces in order.
        let w = _mm256_packs_epi32(a, b);
        let w = _mm256_permute4x64_epi64::<0b1101_1000>(w);
        let bytes = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
        _mm_storeu_si128(out.as_mut_ptr().cast(), bytes);
    }
}

/// Eight of [`levels_by_division`]'s levels, as 32-bit integers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn level8(p: *const f32, dj: f32, lo: i32, hi: i32) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX2 and 8 floats at `p`.
    unsafe {
        let v = _mm256_add_ps(
            _mm256_div_ps(_mm256_loadu_ps(p), _mm256_set1_ps(dj)),
            _mm256_set1_ps(12_582_912.0),
        );
        let n = _mm256_sub_epi32(
            _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007f_ffff)),
            _mm256_set1_epi32(0x0040_0000),
        );
        let n = _mm256_min_epi32(
            _mm256_max_epi32(n, _mm256_set1_epi32(lo)),
            _mm256_set1_epi32(hi),
        );
        _mm256_sub_epi32(n, _mm256_set1_epi32(lo))
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    fn twin(kind: Kind) -> fn(&[f32], &mut Vec<u8>) {
        match kind {
            Kind::Q4_0 => crate::quant::weights::q4_0,
            Kind::Q5_0 => crate::quant::weights::q5_0,
        }
    }

    #[test]
    fn the_scalar_twins_bytes() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")) {
            eprintln!("skipped: no AVX2");
            return;
        }
        let mut s = 0x9e37_79b9u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 - 0.5
        };
        let mut x: Vec<f32> = Vec::new();
        for blk in 0..4000 {
            let scale = [1.0, 1e-3, 37.0, 1e-38, 3e38][blk % 5];
            for i in 0..QK {
                // Some blocks on a grid, so that x / d lands exactly on .5 ties.
                let v = if blk % 7 == 0 {
                    (i as f32 - 15.0) * 0.5
                } else {
                    rnd() * scale
                };
                x.push(v);
            }
        }
        // Blocks the scalar code must take, or that test its corners: zeros and negative zeros, a tie of
        // magnitudes with both signs, NaN, infinities, subnormals.
        let corners: [[f32; 4]; 7] = [
            [0.0, 0.0, 0.0, 0.0],
            [-0.0, 0.0, -0.0, -0.0],
            [-2.0, 2.0, 1.0, -1.0],
            [f32::NAN, 1.0, -3.0, 2.0],
            [f32::INFINITY, 1.0, 0.5, -0.5],
            [1e-40, -3e-41, 0.0, 1e-45],
            [f32::NEG_INFINITY, f32::NAN, 0.0, 1.0],
        ];
        for c in corners {
            for i in 0..QK {
                x.push(c[i % 4] * if i < 4 { 1.0 } else { 0.25 });
            }
        }
        for kind in [Kind::Q4_0, Kind::Q5_0] {
            let mut want = Vec::new();
            for b in x.chunks_exact(QK) {
                twin(kind)(b, &mut want);
            }
            let mut got = Vec::new();
            // SAFETY: AVX2 and F16C checked above.
            unsafe { quantize(kind, &x, &mut got, twin(kind)) };
            assert_eq!(got.len(), want.len());
            let n = kind.block_bytes();
            for (i, (g, w)) in got.chunks(n).zip(want.chunks(n)).enumerate() {
                assert_eq!(g, w, "block {i}: {:?}", &x[i * QK..i * QK + QK]);
            }
        }
    }

    #[test]
    fn levels_by_division_are_the_scalar_loops() {
        if !is_x86_feature_detected!("avx2") {
            return;
        }
        use crate::quant::kquants::nearest_int;
        let mut s = 0x2545_f491u32;
        for case in 0..20_000 {
            let x: Vec<f32> = (0..16)
                .map(|i| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    // Exact halves too (ties to even), and values far outside the levels (clamped).
                    match case % 4 {
                        0 => (s % 200) as f32 * 0.5 - 50.0,
                        1 => (s as f32 / u32::MAX as f32 - 0.5) * 1e9,
                        _ => (s as f32 / u32::MAX as f32 - 0.5) * 9.0 + i as f32 * 0.01,
                    }
                })
                .collect();
            let dj = [1.0f32, -0.75, 2.5e-3, 1.3][case % 4];
            for (lo, hi) in [(-4, 3), (-32, 31)] {
                let want: Vec<i8> = x
                    .iter()
                    .map(|&v| (nearest_int(v / dj).clamp(lo, hi) - lo) as i8)
                    .collect();
                let mut got = [0i8; 16];
                // SAFETY: AVX2 checked above.
                unsafe { levels_by_division(&x, dj, lo, hi, &mut got) };
                assert_eq!(got.as_slice(), want.as_slice(), "{x:?} / {dj}");
            }
        }
    }
}
