//! The k-quant weight quantizers Q2_K, Q3_K, Q4_K and Q5_K, as ggml's `quantize_row_*_ref` write them (what
//! llama-quantize uses without an importance matrix), superblock by superblock of 256. Each sub-block's scale
//! (and minimum) comes from the same searches (`make_qkx2_quants`, `make_q3_quants`) in the same f32 arithmetic,
//! in the same order, so the bytes are the same as llama.cpp's; the scales are then quantized to 4 or 6 bits
//! against the superblock's largest, and the values again against the rounded scales.

use super::QK_K;
use super::lanes::{make_qkx2_quants_16x16, make_qkx2_quants_x8};

/// ggml's `nearest_int`, bit for bit: the magic-number rounding (ties to even for `|x| < 2^22`; outside that range
/// the same garbage as C's, which the callers clamp).
#[inline(always)]
pub(super) fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

pub(super) fn f16_round(x: f32) -> (f32, [u8; 2]) {
    let h = half::f16::from_f32(x);
    (h.to_f32(), h.to_le_bytes())
}

/// ggml's `make_qkx2_quants`: levels `0..=nmax` with a scale and a minimum for `x` that minimise the weighted
/// error (absolute with `mad`, else squared), trying `nstep + 1` scales from `rmin` in steps of `rdelta`.
/// Returns the scale and the minimum's negation (`the_min`); `l` receives the levels.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants(
    x: &[f32],
    weights: &[f32],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    mad: bool,
    l: &mut [u8],
) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nm = nmax as f32;
    let err = |d: f32| if mad { d.abs() } else { d * d };
    let mut iscale = nm / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        best_error += weights[i] * err(scale * l[i] as f32 + min - x[i]);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nm) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = li as u8;
            let (w, lf) = (weights[i], li as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                l.copy_from_slice(aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_q3_quants` with `do_rmse`: signed levels `-nmax..nmax-1` (stored plus `nmax`), refined one value
/// at a time for up to five rounds while the weighted fit improves.
fn make_q3_quants(x: &[f32], nmax: i32, l: &mut [i8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (li, &xi) in l.iter_mut().zip(x) {
        let q = clamp(nearest_int(iscale * xi));
        *li = q as i8;
        let w = xi * xi;
        sumlx += w * xi * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for (li, &xi) in l.iter_mut().zip(x) {
            let w = xi * xi;
            let cur = *li as f32;
            let mut slx = sumlx - w * xi * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = clamp(nearest_int(xi * sl2 / slx));
                if new_l != *li as i32 {
                    slx += w * xi * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed += 1;
                    }
                }
            }
        }
        if changed == 0 {
            break;
        }
    }
    for li in l.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Sixty-four 2-bit levels to a byte: `L[j + l]`, `L[j + l + 32]`, `+64`, `+96` for each half of 128.
pub(super) fn pack_2bit(l: &[u8], qs: &mut [u8]) {
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            qs[j / 4 + i] =
                l[j + i] | (l[j + i + 32] << 2) | (l[j + i + 64] << 4) | (l[j + i + 96] << 6);
        }
    }
}

pub(super) fn q2_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let w: [f32; QK_K] = std::array::from_fn(|i| x[i].abs());
    let (scales, mins) = make_qkx2_quants_16x16(&x[..QK_K], &w, (3, -0.5, 0.1, 15, true), &mut l);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (&s, &m) in scales.iter().zip(&mins) {
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let mut block = [0u8; 84];
    let (sc, rest) = block.split_at_mut(16);
    let (d, dmin) = (80, 82);
    let mut df = 0.0;
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (q, &s) in sc.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * s) as u8;
        }
        let (v, b) = f16_round(max_scale / 15.0);
        df = v;
        rest[d - 16..d - 14].copy_from_slice(&b);
    }
    let mut dminf = 0.0;
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (q, &m) in sc.iter_mut().zip(&mins) {
            *q |= (nearest_int(iscale * m) << 4) as u8;
        }
        let (v, b) = f16_round(max_min / 15.0);
        dminf = v;
        rest[dmin - 16..dmin - 14].copy_from_slice(&b);
    }
    q2_k_finish(x, &mut l, df, dminf, &mut block);
    out.extend(block);
}

/// The values of a Q2_K superblock again against its rounded scales (`block` holds them, `d` and `dmin`), packed.
pub(super) fn q2_k_finish(x: &[f32], l: &mut [u8; QK_K], d: f32, dmin: f32, block: &mut [u8; 84]) {
    for j in 0..16 {
        let dj = d * (block[j] & 0xF) as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * (block[j] >> 4) as f32;
        for i in 0..16 {
            l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / dj).clamp(0, 3) as u8;
        }
    }
    pack_2bit(l, &mut block[16..80]);
}

pub(super) fn q3_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(&x[16 * j..16 * j + 16], 4, &mut l[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut block = [0u8; 110];
    let mut sc = [0u8; 12];
    let mut d = 0.0;
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        // C stores `nearest_int` in an int8_t before clamping.
        sc = pack_scales_q3(&std::array::from_fn(|j| {
            ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8
        }));
        let (v, b) = f16_round(1.0 / iscale);
        d = v;
        block[108..110].copy_from_slice(&b);
    }
    q3_k_finish(x, &mut l, sc, d, &mut block);
    out.extend(block);
}

/// Sixteen 6-bit scales (biased by 32) packed into Q3_K's 12 bytes: low nibbles, then the high two bits.
pub(super) fn pack_scales_q3(q: &[u8; 16]) -> [u8; 12] {
    let mut sc = [0u8; 12];
    for (j, &q) in q.iter().enumerate() {
        if j < 8 {
            sc[j] = q & 0xF;
        } else {
            sc[j - 8] |= (q & 0xF) << 4;
        }
        sc[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
    }
    sc
}

/// A Q3_K superblock from its packed scales `sc` and rounded `d` (already in `block`): the values again against
/// the scales, their high bits in the mask, the low two packed.
pub(super) fn q3_k_finish(
    x: &[f32],
    l: &mut [i8; QK_K],
    sc: [u8; 12],
    d: f32,
    block: &mut [u8; 110],
) {
    block[96..108].copy_from_slice(&sc);
    for j in 0..16 {
        let lo = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
        let s = (lo | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
        let dj = d * s as f32;
        if dj == 0.0 {
            continue;
        }
        super::weights::levels_by_division(
            &x[16 * j..16 * j + 16],
            dj,
            -4,
            3,
            &mut l[16 * j..16 * j + 16],
        );
    }
    let (hmask, qs) = block.split_at_mut(32);
    let mut lu = [0u8; QK_K];
    let (mut m, mut hm) = (0, 1u8);
    for j in 0..QK_K {
        let mut v = l[j] as u8;
        if l[j] > 3 {
            hmask[m] |= hm;
            v -= 4;
        }
        lu[j] = v;
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm = hm.wrapping_shl(1);
        }
    }
    pack_2bit(&lu, &mut qs[..64]);
}

/// Six-bit scales and minimums of the eight sub-blocks of a Q4_K/Q5_K superblock, packed into 12 bytes as
/// `get_scale_min_k4` reads them.
pub(super) fn pack_scales_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

pub(super) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The shared part of Q4_K and Q5_K: levels `0..=nmax` per value, the scales block, `d` and `dmin`.
fn k4_levels(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
) -> ([u8; 12], [u8; 2], [u8; 2]) {
    let mut w = [0f32; QK_K];
    for (b, wb) in x.chunks_exact(32).zip(w.chunks_exact_mut(32)) {
        let mut sum_x2 = 0f32;
        for &v in b {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (wi, v) in wb.iter_mut().zip(b) {
            *wi = av_x + v.abs();
        }
    }
    let (scales, mins) = make_qkx2_quants_x8(&x[..QK_K], &w, 32, nmax, rmin, 0.1, nstep, false, l);
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for (&s, &m) in scales.iter().zip(&mins) {
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let sc = pack_scales_k4(&ls, &lm);
    let (d, db) = f16_round(max_scale / 63.0);
    let (dmin, mb) = f16_round(max_min / 63.0);
    k4_requant(x, nmax, &sc, d, dmin, l);
    (sc, db, mb)
}

/// The values of a Q4_K/Q5_K superblock on levels `0..=nmax` against its rounded scales and minimums.
pub(super) fn k4_requant(
    x: &[f32],
    nmax: i32,
    sc: &[u8; 12],
    d: f32,
    dmin: f32,
    l: &mut [u8; QK_K],
) {
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, sc);
        let dj = d * s as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for i in 0..32 {
            l[32 * j + i] = nearest_int((x[32 * j + i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
}

pub(super) fn q4_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let (sc, d, dmin) = k4_levels(x, 15, -1.0, 20, &mut l);
    pack_q4_k(&l, sc, d, dmin, out);
}

pub(super) fn pack_q4_k(
    l: &[u8; QK_K],
    sc: [u8; 12],
    d: [u8; 2],
    dmin: [u8; 2],
    out: &mut Vec<u8>,
) {
    out.extend(d);
    out.extend(dmin);
    out.extend(sc);
    for j in (0..QK_K).step_by(64) {
        out.extend((0..32).map(|i| l[j + i] | (l[j + i + 32] << 4)));
    }
}

pub(super) fn q5_k(x: &[f32], out: &mut Vec<u8>) {
    let mut l = [0u8; QK_K];
    let (sc, d, dmin) = k4_levels(x, 31, -0.5, 15, &mut l);
    pack_q5_k(&l, sc, d, dmin, out);
}

pub(super) fn pack_q5_k(
    l: &[u8; QK_K],
    sc: [u8; 12],
    d: [u8; 2],
    dmin: [u8; 2],
    out: &mut Vec<u8>,
) {
    let mut qh = [0u8; 32];
    let mut ql = [0u8; 128];
    let (mut m1, mut m2) = (1u8, 2u8);
    for (h, n) in (0..QK_K).step_by(64).enumerate() {
        for j in 0..32 {
            let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
            if l1 > 15 {
                l1 -= 16;
                qh[j] |= m1;
            }
            if l2 > 15 {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[32 * h + j] = l1 | (l2 << 4);
        }
        m1 = m1.wrapping_shl(2);
        m2 = m2.wrapping_shl(2);
    }
    out.extend(d);
    out.extend(dmin);
    out.extend(sc);
    out.extend(qh);
    out.extend(ql);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_ties_to_even_in_range() {
        for (x, r) in [
            (0.5, 0),
            (1.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (2.49, 2),
            (-7.6, -8),
        ] {
            assert_eq!(nearest_int(x), r, "{x}");
        }
    }

    #[test]
    fn qkx2_fits_levels_and_a_minimum() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.25 - 2.0).collect();
        let w = vec![1f32; 32];
        let mut l = [0u8; 32];
        let (scale, neg_min) = make_qkx2_quants(&x, &w, 15, -1.0, 0.1, 20, false, &mut l);
        for (v, &q) in x.iter().zip(&l) {
            let y = scale * q as f32 - neg_min;
            assert!((y - v).abs() <= scale * 0.5 + 1e-5, "{v} -> {y}");
        }
    }
}
