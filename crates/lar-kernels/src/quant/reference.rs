//! Portable reference code for every block type: dequantization, activation quantizers, and dot products.
//!
//! This is the plain twin of each fast kernel: straightforward loops that mirror the block layouts of ggml's
//! `ggml-quants.c`, easy to read against it. The dot products here dequantize both sides to f32 and multiply;
//! the fast kernels compute the same sums in integers, so the two agree to float rounding.

use super::{GgmlType, QK, QK_K, f16_at, f32_at, scale_min_k4};

/// Dequantizes whole blocks of `ty` from `data` into `out` (`out.len()` elements).
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    dequantize_blocks(ty, data, out)
}

/// [`dequantize`]'s body, inlined where it is compiled a second time for AVX2 ([`super::dequantize`]).
#[inline(always)]
pub(super) fn dequantize_blocks(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    let bs = ty.block_size();
    let ts = ty.type_size();
    debug_assert_eq!(out.len() % bs, 0);
    for (b, y) in out.chunks_exact_mut(bs).enumerate() {
        let x = &data[b * ts..(b + 1) * ts];
        match ty {
            GgmlType::F32 => y[0] = f32_at(x, 0),
            GgmlType::F16 => y[0] = f16_at(x, 0),
            GgmlType::BF16 => {
                y[0] = f32::from_bits((u16::from_le_bytes([x[0], x[1]]) as u32) << 16)
            }
            GgmlType::Q4_0 => dq_q4_0(x, y),
            GgmlType::Q4_1 => dq_q4_1(x, y),
            GgmlType::Q5_0 => dq_q5_0(x, y),
            GgmlType::Q5_1 => dq_q5_1(x, y),
            GgmlType::Q8_0 => dq_q8_0(x, y),
            GgmlType::Q8_1 => {
                let d = f16_at(x, 0);
                for (v, &q) in y.iter_mut().zip(&x[4..4 + QK]) {
                    *v = d * q as i8 as f32;
                }
            }
            GgmlType::Q2_K => dq_q2_k(x, y),
            GgmlType::Q3_K => dq_q3_k(x, y),
            GgmlType::Q4_K => dq_q4_k(x, y),
            GgmlType::Q5_K => dq_q5_k(x, y),
            GgmlType::Q6_K => dq_q6_k(x, y),
            GgmlType::IQ2_XXS => super::codebook::dq_iq2_xxs(x, y),
            GgmlType::IQ2_XS => super::codebook::dq_iq2_xs(x, y),
            GgmlType::IQ2_S => super::codebook::dq_iq2_s(x, y),
            GgmlType::IQ3_XXS => super::codebook::dq_iq3_xxs(x, y),
            GgmlType::IQ3_S => super::codebook::dq_iq3_s(x, y),
            GgmlType::IQ1_S => super::codebook::dq_iq1_s(x, y),
            GgmlType::IQ1_M => super::codebook::dq_iq1_m(x, y),
            GgmlType::IQ4_NL => super::iq4::dq_iq4_nl(x, y),
            GgmlType::IQ4_XS => super::iq4::dq_iq4_xs(x, y),
            GgmlType::TQ1_0 => super::ternary::dq_tq1_0(x, y),
            GgmlType::TQ2_0 => super::ternary::dq_tq2_0(x, y),
            GgmlType::MXFP4 => super::fp4::dq_mxfp4(x, y),
            GgmlType::NVFP4 => super::fp4::dq_nvfp4(x, y),
            GgmlType::Q1_0 => super::low_bit::dq_q1_0(x, y),
            GgmlType::Q2_0 => super::low_bit::dq_q2_0(x, y),
            GgmlType::Q8_K => {
                let d = f32_at(x, 0);
                for (v, &q) in y.iter_mut().zip(&x[4..4 + QK_K]) {
                    *v = d * q as i8 as f32;
                }
            }
        }
    }
}

#[inline]
fn dq_q4_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for j in 0..16 {
        let q = x[2 + j];
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

#[inline]
fn dq_q4_1(x: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(x, 0), f16_at(x, 2));
    for j in 0..16 {
        let q = x[4 + j];
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

#[inline]
fn dq_q5_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let qh = u32::from_le_bytes([x[2], x[3], x[4], x[5]]);
    for j in 0..16 {
        let q = x[6 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
        y[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

#[inline]
fn dq_q5_1(x: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(x, 0), f16_at(x, 2));
    let qh = u32::from_le_bytes([x[4], x[5], x[6], x[7]]);
    for j in 0..16 {
        let q = x[8 + j];
        let h0 = ((qh >> j) & 1) << 4;
        let h1 = ((qh >> (j + 16)) & 1) << 4;
        y[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
        y[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

#[inline]
fn dq_q8_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for (v, &q) in y.iter_mut().zip(&x[2..2 + QK]) {
        *v = q as i8 as f32 * d;
    }
}

// Q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82.
#[inline]
fn dq_q2_k(x: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(x, 80), f16_at(x, 82));
    let scales = &x[0..16];
    let mut out = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &x[16 + 32 * n..16 + 32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
                for l in 0..16 {
                    y[out] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

// Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108.
#[inline]
fn dq_q3_k(x: &[u8], y: &mut [f32]) {
    let d_all = f16_at(x, 108);
    let hm = &x[0..32];
    let scales = q3k_scales(&x[96..108]);
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &x[32 + 32 * n..32 + 32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let i = l + 16 * half;
                    let low = ((q[i] >> shift) & 3) as i32;
                    let sub = if hm[i] & m != 0 { 0 } else { 4 };
                    y[out] = dl * (low - sub) as f32;
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// The sixteen 6-bit scales of a Q3_K block, unpacked.
pub(crate) fn q3k_scales(s: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for j in 0..16 {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = low | (high << 4);
    }
    out
}

// Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16.
#[inline]
fn dq_q4_k(x: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(x, 0), f16_at(x, 2));
    let scales = &x[4..16];
    for j in 0..4 {
        let q = &x[16 + 32 * j..16 + 32 * j + 32];
        let (s1, m1) = scale_min_k4(2 * j, scales);
        let (s2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        for l in 0..32 {
            y[64 * j + l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[64 * j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

// Q5_K: d @0, dmin @2, scales[12] @4, qh[32] @16, qs[128] @48.
#[inline]
fn dq_q5_k(x: &[u8], y: &mut [f32]) {
    let (d, min) = (f16_at(x, 0), f16_at(x, 2));
    let scales = &x[4..16];
    let qh = &x[16..48];
    for j in 0..4 {
        let ql = &x[48 + 32 * j..48 + 32 * j + 32];
        let (s1, m1) = scale_min_k4(2 * j, scales);
        let (s2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * j + l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
            y[64 * j + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

// Q6_K: ql[128] @0, qh[64] @128, scales[16] (i8) @192, d @208.
#[inline]
fn dq_q6_k(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 208);
    for n in 0..2 {
        let ql = &x[64 * n..64 * n + 64];
        let qh = &x[128 + 32 * n..128 + 32 * n + 32];
        let sc = &x[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Q8_0 activation quantizer, as ggml's x86 code does it: `d = amax / 127`, `q = round_ties_even(x * 127 / amax)`.
#[inline(always)]
pub fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let amax = abs_max(b);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(round_32(b, id).map(|v| v as u8));
    }
}

/// The largest `|v|` of a block (0 for an empty or all-NaN one): eight running maxima, then theirs. `max` is exact
/// and skips NaN in either argument, so this is the left-to-right fold's value, and it vectorizes.
#[inline(always)]
pub(crate) fn abs_max(b: &[f32]) -> f32 {
    let mut m = [0f32; 8];
    for c in b.chunks_exact(8) {
        for (m, v) in m.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    for v in b.chunks_exact(8).remainder() {
        m[0] = m[0].max(v.abs());
    }
    m.into_iter().fold(0f32, f32::max)
}

/// A 32-element block scaled by `id` and rounded half to even, as bytes (no allocation, so it vectorizes).
#[inline(always)]
fn round_32(b: &[f32], id: f32) -> [i8; QK] {
    let mut q = [0i8; QK];
    for (q, v) in q.iter_mut().zip(b) {
        *q = (v * id).round_ties_even() as i8;
    }
    q
}

/// Q8_1 activation quantizer: Q8_0's quantization plus `s = d * sum(q)`.
#[inline(always)]
pub fn quantize_q8_1(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK) {
        let amax = abs_max(b);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let q = round_32(b, id);
        let sum: i32 = q.iter().map(|&v| v as i32).sum();
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(half::f16::from_f32(d * sum as f32).to_le_bytes());
        out.extend(q.iter().map(|&v| v as u8));
    }
}

/// Q8_K activation quantizer (ggml's `quantize_row_q8_K_ref`): f32 `d`, 256 int8, sixteen i16 sums of 16.
#[inline(always)]
pub fn quantize_q8_k(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK_K) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in b {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            out.extend([0u8; 4 + QK_K + 32]);
            continue;
        }
        let iscale = -127.0 / max;
        let mut q = [0i8; QK_K];
        for (q, v) in q.iter_mut().zip(b) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        out.extend((1.0 / iscale).to_le_bytes());
        out.extend(q.iter().map(|&v| v as u8));
        for s in q.chunks_exact(16) {
            let sum: i16 = s.iter().map(|&v| v as i16).sum();
            out.extend(sum.to_le_bytes());
        }
    }
}

/// The reference dot kernel for weights of type `ty`.
pub fn dot_fn(ty: GgmlType) -> super::DotFn {
    macro_rules! dequant_dot {
        ($t:ident) => {{
            fn f(n: usize, x: &[u8], y: &[u8]) -> f32 {
                dot_dequant(GgmlType::$t, n, x, y)
            }
            f
        }};
    }
    match ty {
        GgmlType::F32 => dot_f32,
        GgmlType::F16 => dot_f16,
        GgmlType::BF16 => dot_bf16,
        GgmlType::Q4_0 => dequant_dot!(Q4_0),
        GgmlType::Q4_1 => dequant_dot!(Q4_1),
        GgmlType::Q5_0 => dequant_dot!(Q5_0),
        GgmlType::Q5_1 => dequant_dot!(Q5_1),
        GgmlType::Q8_0 => dequant_dot!(Q8_0),
        GgmlType::Q8_1 => dequant_dot!(Q8_1),
        GgmlType::Q2_K => dequant_dot!(Q2_K),
        GgmlType::Q3_K => dequant_dot!(Q3_K),
        GgmlType::Q4_K => dequant_dot!(Q4_K),
        GgmlType::Q5_K => dequant_dot!(Q5_K),
        GgmlType::Q6_K => dequant_dot!(Q6_K),
        GgmlType::Q8_K => dequant_dot!(Q8_K),
        GgmlType::IQ2_XXS => dequant_dot!(IQ2_XXS),
        GgmlType::IQ2_XS => dequant_dot!(IQ2_XS),
        GgmlType::IQ2_S => dequant_dot!(IQ2_S),
        GgmlType::IQ3_XXS => dequant_dot!(IQ3_XXS),
        GgmlType::IQ3_S => dequant_dot!(IQ3_S),
        GgmlType::IQ1_S => dequant_dot!(IQ1_S),
        GgmlType::IQ1_M => dequant_dot!(IQ1_M),
        GgmlType::IQ4_NL => dequant_dot!(IQ4_NL),
        GgmlType::IQ4_XS => dequant_dot!(IQ4_XS),
        GgmlType::TQ1_0 => dequant_dot!(TQ1_0),
        GgmlType::TQ2_0 => dequant_dot!(TQ2_0),
        GgmlType::MXFP4 => super::fp4::dot_mxfp4,
        GgmlType::NVFP4 => super::fp4::dot_nvfp4,
        GgmlType::Q1_0 => super::low_bit::dot_q1_0,
        GgmlType::Q2_0 => super::low_bit::dot_q2_0,
    }
}

fn act_f32(y: &[u8], n: usize) -> impl Iterator<Item = f32> + '_ {
    (0..n).map(move |i| f32_at(y, 4 * i))
}

fn dot_f32(n: usize, x: &[u8], y: &[u8]) -> f32 {
    act_f32(x, n).zip(act_f32(y, n)).map(|(a, b)| a * b).sum()
}

fn dot_f16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    (0..n)
        .map(|i| f16_at(x, 2 * i))
        .zip(act_f32(y, n))
        .map(|(a, b)| a * b)
        .sum()
}

fn dot_bf16(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let w = |i: usize| f32::from_bits((u16::from_le_bytes([x[2 * i], x[2 * i + 1]]) as u32) << 16);
    (0..n).map(w).zip(act_f32(y, n)).map(|(a, b)| a * b).sum()
}

/// Dequantizes a weight row of type `wt` and its activation row (of `wt.vec_dot_type()`), then multiplies in f32.
fn dot_dequant(wt: GgmlType, n: usize, x: &[u8], y: &[u8]) -> f32 {
    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
    dequantize(wt, x, &mut a);
    dequantize(wt.vec_dot_type(), y, &mut b);
    a.iter().zip(&b).map(|(p, q)| p * q).sum()
}
