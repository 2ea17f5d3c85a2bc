//! Weight quantizers, as llama-quantize writes them without an importance matrix (ggml's `quantize_row_*_ref`),
//! so the same source gives the same bytes: Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 block by block of 32, and Q6_K
//! (what llama-quantize gives the output tensor) by superblocks of 256; Q2_K..Q5_K are in [`super::kquants`]. Each mirrors its C twin's arithmetic: f32
//! scales rounded to f16 once, values scaled by the f32 inverse, truncation where ggml casts, `roundf` (half away
//! from zero) where it rounds, and ties to even where it uses `nearest_int`.

use super::kquants::{self, nearest_int};
use super::lanes::make_qx_quants_x8;
use super::{GgmlType, QK, QK_K};

/// The types [`quantize`] writes (besides F32, F16 and BF16).
pub const TYPES: [GgmlType; 14] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
];

/// ggml's `make_qx_quants` with `rmse_type` 1: the scale of `x` on levels `-nmax..nmax-1` (stored in `l` plus
/// `nmax`) that minimises the squared error weighted by `qw` (an importance matrix's) or else by `x^2`, searched
/// around `nmax / max`.
pub(super) fn make_qx_quants(x: &[f32], nmax: i32, l: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let nm = nmax as f32;
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for (i, &xi) in x.iter().enumerate() {
            let q = clamp(nearest_int(iscale * xi)) as f32;
            let w = qw.map_or(xi * xi, |w| w[i]);
            sumlx += w * xi * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let fill = |iscale: f32, l: &mut [i8]| {
        for (li, &xi) in l.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(iscale * xi))) as i8;
        }
    };
    let iscale = -nm / max;
    fill(iscale, l);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&i| i != 0) {
        let iscale = -(nm + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            fill(iscale, l);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

fn q6_k(b: &[f32], out: &mut Vec<u8>) {
    q6_k_with(b, None, out)
}

/// Q6_K, its sub-blocks' scales fitted with the weights `qw` (an importance matrix's, for the superblock) or `x^2`.
pub(super) fn q6_k_with(b: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let (mut max_scale, mut max_abs) = (0f32, 0f32);
    for h in 0..2 {
        let r = 128 * h..128 * h + 128;
        let w = qw.map(|w| &w[r.clone()]);
        let s = make_qx_quants_x8(&b[r.clone()], 16, 32, &mut l[r], w);
        scales[8 * h..8 * h + 8].copy_from_slice(&s);
    }
    for s in &scales {
        if s.abs() > max_abs {
            max_abs = s.abs();
            max_scale = *s;
        }
    }
    let mut block = [0u8; 210];
    if max_abs < 1e-15 {
        out.extend(block);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = half::f16::from_f32(1.0 / iscale);
    block[208..210].copy_from_slice(&d.to_le_bytes());
    let mut sc = [0i8; QK_K / 16];
    for (q, &s) in sc.iter_mut().zip(&scales) {
        *q = nearest_int(iscale * s).min(127) as i8;
    }
    for (j, &q) in sc.iter().enumerate() {
        block[192 + j] = q as u8;
        let dj = d.to_f32() * q as f32;
        if dj == 0.0 {
            continue;
        }
        levels_by_division(
            &b[16 * j..16 * j + 16],
            dj,
            -32,
            31,
            &mut l[16 * j..16 * j + 16],
        );
    }
    let (ql, rest) = block.split_at_mut(128);
    let qh = &mut rest[..64];
    for (h, j) in (0..QK_K).step_by(128).enumerate() {
        let (ql, qh) = (&mut ql[64 * h..64 * h + 64], &mut qh[32 * h..32 * h + 32]);
        for i in 0..32 {
            let at = |k: usize| l[j + i + k] as u8;
            ql[i] = (at(0) & 0xf) | ((at(64) & 0xf) << 4);
            ql[i + 32] = (at(32) & 0xf) | ((at(96) & 0xf) << 4);
            qh[i] =
                (at(0) >> 4) | ((at(32) >> 4) << 2) | ((at(64) >> 4) << 4) | ((at(96) >> 4) << 6);
        }
    }
    out.extend(block);
}

/// `l[i] = clamp(nearest_int(x[i] / dj), lo, hi) - lo` for 16 values: the last step of Q3_K and Q6_K (AVX2 where
/// the CPU has it, the same levels).
pub(super) fn levels_by_division(x: &[f32], dj: f32, lo: i32, hi: i32, l: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_level().avx2() {
        // SAFETY: the CPU has AVX2 (checked by simd_level).
        unsafe { super::weights_avx2::levels_by_division(x, dj, lo, hi, l) };
        return;
    }
    for (li, &xi) in l[..16].iter_mut().zip(&x[..16]) {
        *li = (nearest_int(xi / dj).clamp(lo, hi) - lo) as i8;
    }
}

pub(super) fn f16(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// The value of largest magnitude (its sign kept) and that magnitude.
fn signed_max(b: &[f32]) -> (f32, f32) {
    // C's loop (`if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`) in two passes that vectorize: the largest
    // magnitude (NaNs passed over, as the comparison passes them), then the first value that has it; all zeros
    // give +0, as C's initial value.
    let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 {
        return (0.0, 0.0);
    }
    let max = b.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
    (max, amax)
}

fn min_max(b: &[f32]) -> (f32, f32) {
    b.iter()
        .fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

pub(super) fn q4_0(b: &[f32], out: &mut Vec<u8>) {
    let (max, _) = signed_max(b);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16(d));
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let x0 = ((b[j] * id + 8.5) as i8).min(15) as u8;
        let x1 = ((b[QK / 2 + j] * id + 8.5) as i8).min(15) as u8;
        *q = x0 | (x1 << 4);
    }
    out.extend_from_slice(&qs);
}

fn q4_1(b: &[f32], out: &mut Vec<u8>) {
    let (min, max) = min_max(b);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16(d));
    out.extend_from_slice(&f16(min));
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let x0 = (((b[j] - min) * id + 0.5) as i8).min(15) as u8;
        let x1 = (((b[QK / 2 + j] - min) * id + 0.5) as i8).min(15) as u8;
        *q = x0 | (x1 << 4);
    }
    out.extend_from_slice(&qs);
}

pub(super) fn q5_0(b: &[f32], out: &mut Vec<u8>) {
    let (max, _) = signed_max(b);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16(d));
    let mut qh = 0u32;
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        let x0 = ((b[j] * id + 16.5) as i8).min(31) as u8;
        let x1 = ((b[QK / 2 + j] * id + 16.5) as i8).min(31) as u8;
        qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
        qh |= (((x0 & 0x10) >> 4) as u32) << j;
        qh |= (((x1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

fn q5_1(b: &[f32], out: &mut Vec<u8>) {
    let (min, max) = min_max(b);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16(d));
    out.extend_from_slice(&f16(min));
    let mut qh = 0u32;
    let mut qs = [0u8; QK / 2];
    for j in 0..QK / 2 {
        let x0 = ((b[j] - min) * id + 0.5) as u8;
        let x1 = ((b[QK / 2 + j] - min) * id + 0.5) as u8;
        qs[j] = (x0 & 0x0f) | ((x1 & 0x0f) << 4);
        qh |= (((x0 & 0x10) >> 4) as u32) << j;
        qh |= (((x1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    out.extend_from_slice(&qh.to_le_bytes());
    out.extend_from_slice(&qs);
}

/// C's `roundf` (half away from zero), inlined: `f32::round` is a call into libm on baseline x86-64 (no SSE4.1),
/// which was a sixth of a Q8_0 quantization. Exact: below 2^23 the fraction `x - trunc(x)` is representable, and
/// from 2^23 up every float is an integer already (NaN and infinities come back as they are).
#[inline(always)]
pub(super) fn roundf(x: f32) -> f32 {
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x;
    }
    let t = (x as i32 as f32).copysign(x);
    let frac = x - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

fn q8_0(b: &[f32], out: &mut Vec<u8>) {
    let (_, amax) = signed_max(b);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16(d));
    out.extend(b.iter().map(|&v| roundf(v * id) as i8 as u8));
}

/// Quantizes `x` (whole blocks) to `ty`, appending to `out`; `None` for a type this module does not write.
pub fn quantize(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if super::simd_level().avx2() {
        use super::weights_avx2::{Kind, quantize as q32};
        let kind = match ty {
            GgmlType::Q4_0 => Some((Kind::Q4_0, q4_0 as fn(&[f32], &mut Vec<u8>))),
            GgmlType::Q5_0 => Some((Kind::Q5_0, q5_0 as fn(&[f32], &mut Vec<u8>))),
            _ => None,
        };
        if let Some((kind, twin)) = kind {
            // SAFETY: the CPU has AVX2 and F16C (checked by simd_level).
            unsafe { q32(kind, x, out, twin) };
            return Some(());
        }
    }
    let f: fn(&[f32], &mut Vec<u8>) = match ty {
        GgmlType::Q4_0 => q4_0,
        GgmlType::Q4_1 => q4_1,
        GgmlType::Q5_0 => q5_0,
        GgmlType::Q5_1 => q5_1,
        GgmlType::Q8_0 => q8_0,
        GgmlType::Q2_K => kquants::q2_k,
        GgmlType::Q3_K => kquants::q3_k,
        GgmlType::Q4_K => kquants::q4_k,
        GgmlType::Q5_K => kquants::q5_k,
        GgmlType::Q6_K => q6_k,
        GgmlType::IQ4_NL | GgmlType::IQ4_XS => {
            super::iq4::quantize(ty == GgmlType::IQ4_XS, x, None, out);
            return Some(());
        }
        GgmlType::TQ1_0 => {
            super::ternary::quantize_tq1_0(x, out);
            return Some(());
        }
        GgmlType::TQ2_0 => {
            super::ternary::quantize_tq2_0(x, out);
            return Some(());
        }
        GgmlType::F32 => {
            out.extend(x.iter().flat_map(|v| v.to_le_bytes()));
            return Some(());
        }
        GgmlType::F16 => {
            out.extend(x.iter().flat_map(|&v| f16(v)));
            return Some(());
        }
        GgmlType::BF16 => {
            out.extend(
                x.iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()),
            );
            return Some(());
        }
        _ => return None,
    };
    let bs = ty.block_size();
    debug_assert_eq!(x.len() % bs, 0);
    out.reserve(x.len() / bs * ty.type_size());
    for b in x.chunks_exact(bs) {
        f(b, out);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::reference::dequantize;

    #[test]
    fn each_type_round_trips_within_its_step() {
        let x: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        for ty in TYPES {
            let mut q = Vec::new();
            quantize(ty, &x, &mut q).unwrap();
            assert_eq!(q.len(), ty.row_bytes(x.len()), "{ty:?}");
            let mut y = vec![0f32; x.len()];
            dequantize(ty, &q, &mut y);
            let levels = match ty {
                GgmlType::Q4_0 | GgmlType::Q4_1 => 15.0,
                GgmlType::Q5_0 | GgmlType::Q5_1 => 31.0,
                // Sixteen scales of 8 bits on top of 6-bit values: a little coarser than 63 levels.
                GgmlType::Q6_K => 40.0,
                GgmlType::Q2_K => 2.0,
                GgmlType::Q3_K => 5.0,
                GgmlType::Q4_K => 12.0,
                GgmlType::Q5_K => 25.0,
                // Sixteen levels, unevenly spaced (widest gap 24 of the table's 240).
                GgmlType::IQ4_NL | GgmlType::IQ4_XS => 9.0,
                // Three levels: -d, 0, d.
                GgmlType::TQ1_0 | GgmlType::TQ2_0 => 2.0,
                _ => 254.0,
            };
            // Every block spans less than 6: half a step is the most a value can move (plus f16 rounding), but
            // for Q4_0 and Q5_0, whose range is one step shorter on the side away from the largest value, a step.
            let half = if matches!(ty, GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q6_K) {
                1.0
            } else {
                0.5
            };
            let tol = 6.0 / levels * half * 1.05 + 1e-3;
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= tol, "{ty:?}: {a} -> {b} (tol {tol})");
            }
        }
        // A zero block stays zero.
        let mut q = Vec::new();
        quantize(GgmlType::Q4_0, &[0.0; 32], &mut q).unwrap();
        let mut y = [1f32; 32];
        dequantize(GgmlType::Q4_0, &q, &mut y);
        assert_eq!(y, [0.0; 32]);
        assert!(quantize(GgmlType::Q8_K, &x, &mut q).is_none());
    }

    #[test]
    fn roundf_is_cs_roundf() {
        let mut vals = vec![
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.49999997,
            -0.49999997,
            126.5,
            -127.5,
            8_388_607.5,
            8_388_608.0,
            -8_388_609.0,
            1e30,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-40,
        ];
        // And a sweep of ordinary values: scaled quantization inputs, with exact ties among them.
        let mut s = 0x2545_f491u32;
        for i in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            vals.push((s as f32 / u32::MAX as f32 - 0.5) * 300.0);
            vals.push(i as f32 * 0.25 - 2000.0);
        }
        for v in vals {
            let (a, b) = (roundf(v), v.round());
            assert_eq!(a.to_bits(), b.to_bits(), "{v}: {a} vs {b}");
        }
        assert!(roundf(f32::NAN).is_nan());
    }
}
