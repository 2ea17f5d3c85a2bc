//! Quantization guided by an importance matrix, as ggml's `quantize_row_*_impl` do it when llama-quantize is given
//! one (`--imatrix`): every value's error is weighted by how much its input column matters (the mean squared
//! activation the matrix holds, times `sqrt(sigma^2 + x^2)` for most types), the sub-block scales are fitted by
//! `make_qkx3_quants`/`make_qx_quants` under those weights, and the k-quants' superblock scales by
//! `make_qp_quants` instead of against the largest. Same f32 arithmetic in the same order as the C, so the same
//! source, type and matrix give llama-quantize's bytes. Q8_0 takes no weights (neither does ggml's).

use super::kquants::{
    f16_round, k4_requant, make_qkx2_quants, nearest_int, pack_q4_k, pack_q5_k, pack_scales_k4,
    pack_scales_q3, q2_k_finish, q3_k_finish,
};
use super::lanes::{LANES, make_qkx2_quants_16x16, make_qkx2_quants_x8, make_qx_quants_x8};
use super::weights::{f16, make_qx_quants, q6_k_with};
use super::{GgmlType, QK, QK_K};

/// ggml's `make_qp_quants`: non-negative levels `0..=nmax` for `x` (a superblock's scales or minimums) under the
/// weights `w`, refined one value at a time. C keeps the levels in bytes, so a negative level wraps there (and
/// the refinement reads it wrapped) while the first sums use it unwrapped; both are kept.
fn make_qp_quants(x: &[f32], nmax: i32, l: &mut [u8], w: &[f32]) -> f32 {
    let mut max = 0f32;
    for &v in x {
        max = max.max(v);
    }
    if max < 1e-15 {
        l.fill(0);
        return 0.0;
    }
    let nm = nmax as f32;
    let mut iscale = nm / max;
    for (li, &xi) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * xi) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0f32;
    for i in 0..x.len() {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += w[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&i| i != 0) {
        let iscale_is = (0.1 * is as f32 + nm) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0f32;
        for i in 0..x.len() {
            let q = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * q as f32;
            mse += w[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for i in 0..x.len() {
        let q = nearest_int(iscale * x[i]).min(nmax);
        l[i] = q as u8;
        sumlx += w[i] * x[i] * q as f32;
        suml2 += w[i] * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut changed = 0;
        for i in 0..x.len() {
            let cur = l[i] as f32;
            let mut slx = sumlx - w[i] * x[i] * cur;
            let mut sl2 = suml2 - w[i] * cur * cur;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    slx += w[i] * x[i] * new_l as f32;
                    sl2 += w[i] * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
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
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// `qw[i] * sqrt(sigma2 + x[i]^2)` for one block.
fn block_weights<const N: usize>(x: &[f32], qw: &[f32], sigma2: f32) -> [f32; N] {
    std::array::from_fn(|i| qw[i] * (sigma2 + x[i] * x[i]).sqrt())
}

fn sum(w: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in w {
        s += v;
    }
    s
}

/// Every block of 32 of `row` with its weights, levels and scales: `search` on eight blocks at once while eight
/// are left, `one` on each of the rest (the same bits either way).
fn blocks_of_32<L: Copy + Default, S: Copy + Default>(
    row: &[f32],
    qw: &[f32],
    sigma2: f32,
    search: impl Fn(&[f32], &[f32], &mut [L]) -> [S; LANES],
    one: impl Fn(&[f32], &[f32], &mut [L]) -> S,
) -> (Vec<L>, Vec<S>) {
    let nb = row.len() / QK;
    let mut w = vec![0f32; nb * QK];
    for (wb, (xb, qb)) in w
        .chunks_exact_mut(QK)
        .zip(row.chunks_exact(QK).zip(qw.chunks_exact(QK)))
    {
        wb.copy_from_slice(&block_weights::<QK>(xb, qb, sigma2));
    }
    let mut l = vec![L::default(); nb * QK];
    let mut scales = vec![S::default(); nb];
    let full = nb / LANES * LANES;
    for g in (0..full).step_by(LANES) {
        let r = g * QK..(g + LANES) * QK;
        let s = search(&row[r.clone()], &w[r.clone()], &mut l[r]);
        scales[g..g + LANES].copy_from_slice(&s);
    }
    for (b, s) in scales.iter_mut().enumerate().skip(full) {
        let r = b * QK..(b + 1) * QK;
        *s = one(&row[r.clone()], &w[r.clone()], &mut l[r]);
    }
    (l, scales)
}

/// Q5's fifth bits of a block's 32 levels.
fn high_bits(l: &[u8]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..16 {
        qh |= (((l[j] & 0x10) >> 4) as u32) << j;
        qh |= (((l[j + 16] & 0x10) >> 4) as u32) << (j + 16);
    }
    qh.to_le_bytes()
}

/// Q4_0 (`nmax` 8) or Q5_0 (16): one weighted `make_qx_quants` scale per block of 32.
fn q_0(row: &[f32], qw: &[f32], nmax: i32, out: &mut Vec<u8>) {
    let sigma2 = sum_squares(row) / row.len() as f32;
    let (l, d) = blocks_of_32(
        row,
        qw,
        sigma2,
        |x, w, l| make_qx_quants_x8(x, QK, nmax, l, Some(w)),
        |x, w, l| make_qx_quants(x, nmax, l, Some(w)),
    );
    for (lb, &d) in l.chunks_exact(QK).zip(&d) {
        out.extend(f16(d));
        let l: [u8; QK] = std::array::from_fn(|i| lb[i] as u8);
        if nmax == 16 {
            out.extend(high_bits(&l));
        }
        out.extend((0..16).map(|j| (l[j] & 0x0F) | ((l[j + 16] & 0x0F) << 4)));
    }
}

/// Q4_1 (`nmax` 15) or Q5_1 (31): a weighted scale and minimum per block of 32.
fn q_1(row: &[f32], qw: &[f32], nmax: i32, out: &mut Vec<u8>) {
    let sigma2 = sum_squares(row) / row.len() as f32;
    let (l, dm) = blocks_of_32(
        row,
        qw,
        sigma2,
        |x, w, l| {
            let (d, m) = make_qkx2_quants_x8(x, w, QK, nmax, -0.9, 0.05, 36, false, l);
            std::array::from_fn(|k| (d[k], m[k]))
        },
        |x, w, l| make_qkx2_quants(x, w, nmax, -0.9, 0.05, 36, false, l),
    );
    for (l, &(d, the_min)) in l.chunks_exact(QK).zip(&dm) {
        out.extend(f16(d));
        out.extend(f16(-the_min));
        if nmax == 31 {
            out.extend(high_bits(l));
        }
        out.extend((0..16).map(|j| (l[j] & 0x0F) | ((l[j + 16] & 0x0F) << 4)));
    }
}

fn q2_k(x: &[f32], qw: &[f32], out: &mut Vec<u8>) {
    let sigma2 = sum_squares(x) / QK_K as f32;
    let mut l = [0u8; QK_K];
    let mut sw = [0f32; 16];
    let mut w = [0f32; QK_K];
    for j in 0..16 {
        let wb: [f32; 16] = block_weights(&x[16 * j..16 * j + 16], &qw[16 * j..], sigma2);
        sw[j] = sum(&wb);
        w[16 * j..16 * j + 16].copy_from_slice(&wb);
    }
    let (scales, mins) = make_qkx2_quants_16x16(&x[..QK_K], &w, (3, -0.9, 0.05, 36, false), &mut l);
    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
    let dm = make_qp_quants(&scales, 15, &mut ls, &sw);
    let mm = make_qp_quants(&mins, 15, &mut lm, &sw);
    let mut block = [0u8; 84];
    let (d, db) = f16_round(dm);
    let (dmin, mb) = f16_round(mm);
    block[80..82].copy_from_slice(&db);
    block[82..84].copy_from_slice(&mb);
    for j in 0..16 {
        block[j] = ls[j] | (lm[j] << 4);
    }
    q2_k_finish(x, &mut l, d, dmin, &mut block);
    out.extend(block);
}

fn q3_k(x: &[f32], qw: &[f32], out: &mut Vec<u8>) {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let mut l = [0i8; QK_K];
    let (mut scales, mut sw) = ([0f32; 16], [0f32; 16]);
    let mut w = [0f32; QK_K];
    for j in 0..16 {
        let wb: [f32; 16] = block_weights(&x[16 * j..16 * j + 16], &qw[16 * j..], sigma2);
        sw[j] = sum(&wb);
        w[16 * j..16 * j + 16].copy_from_slice(&wb);
    }
    for h in 0..2 {
        let r = 128 * h..128 * h + 128;
        let s = make_qx_quants_x8(&x[r.clone()], 16, 4, &mut l[r.clone()], Some(&w[r]));
        scales[8 * h..8 * h + 8].copy_from_slice(&s);
    }
    let mut ls = [0i8; 16];
    let d_block = make_qx_quants(&scales, 32, &mut ls, Some(&sw));
    let sc = pack_scales_q3(&ls.map(|v| v as u8));
    let mut block = [0u8; 110];
    let (d, db) = f16_round(d_block);
    block[108..110].copy_from_slice(&db);
    q3_k_finish(x, &mut l, sc, d, &mut block);
    out.extend(block);
}

/// Q4_K (`nmax` 15) or Q5_K (31): weighted scales and minimums per block of 32, their own levels by
/// `make_qp_quants`.
fn q45_k(x: &[f32], qw: &[f32], nmax: i32, out: &mut Vec<u8>) {
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let mut l = [0u8; QK_K];
    let mut sw = [0f32; 8];
    let mut w = [0f32; QK_K];
    for j in 0..8 {
        let wb: [f32; 32] = block_weights(&x[32 * j..32 * j + 32], &qw[32 * j..], sigma2);
        sw[j] = sum(&wb);
        w[32 * j..32 * j + 32].copy_from_slice(&wb);
    }
    let (scales, mins) =
        make_qkx2_quants_x8(&x[..QK_K], &w, 32, nmax, -0.9, 0.05, 36, false, &mut l);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(&scales, 63, &mut ls, &sw);
    let m_block = make_qp_quants(&mins, 63, &mut lm, &sw);
    if nmax == 31 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    let sc = pack_scales_k4(&ls, &lm);
    let (d, db) = f16_round(d_block);
    let (dmin, mb) = f16_round(m_block);
    k4_requant(x, nmax, &sc, d, dmin, &mut l);
    if nmax == 15 {
        pack_q4_k(&l, sc, db, mb, out);
    } else {
        pack_q5_k(&l, sc, db, mb, out);
    }
}

/// Quantizes one row `x` to `ty` with the importance weights `qw` (one per column), appending to `out`; `None`
/// for a type this module does not write.
pub fn quantize_row(ty: GgmlType, x: &[f32], qw: &[f32], out: &mut Vec<u8>) -> Option<()> {
    debug_assert_eq!(x.len(), qw.len());
    let bs = ty.block_size();
    if !x.len().is_multiple_of(bs) || qw.len() != x.len() {
        return None;
    }
    let superblocks = || x.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K));
    match ty {
        GgmlType::Q4_0 => q_0(x, qw, 8, out),
        GgmlType::Q5_0 => q_0(x, qw, 16, out),
        GgmlType::Q4_1 => q_1(x, qw, 15, out),
        GgmlType::Q5_1 => q_1(x, qw, 31, out),
        GgmlType::Q2_K => superblocks().for_each(|(b, w)| q2_k(b, w, out)),
        GgmlType::Q3_K => superblocks().for_each(|(b, w)| q3_k(b, w, out)),
        GgmlType::Q4_K => superblocks().for_each(|(b, w)| q45_k(b, w, 15, out)),
        GgmlType::Q5_K => superblocks().for_each(|(b, w)| q45_k(b, w, 31, out)),
        GgmlType::Q6_K => superblocks().for_each(|(b, w)| q6_k_with(b, Some(w), out)),
        GgmlType::IQ4_NL | GgmlType::IQ4_XS => {
            super::iq4::quantize(ty == GgmlType::IQ4_XS, x, Some(qw), out)
        }
        _ => return super::weights::quantize(ty, x, out),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::reference::dequantize;

    /// Weighted quantization puts less error on the columns that matter: with every other column weighted a
    /// thousand times more, those columns come back closer than the unweighted quantization brings them.
    #[test]
    fn important_columns_come_back_closer() {
        let x: Vec<f32> = (0..512)
            .map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 2.0)
            .collect();
        let qw: Vec<f32> = (0..512)
            .map(|i| if i % 2 == 0 { 1000.0 } else { 1.0 })
            .collect();
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
            GgmlType::IQ4_NL,
            GgmlType::IQ4_XS,
        ] {
            let err = |q: &[u8]| {
                let mut y = vec![0f32; x.len()];
                dequantize(ty, q, &mut y);
                x.iter()
                    .zip(&y)
                    .step_by(2)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            };
            let (mut plain, mut weighted) = (Vec::new(), Vec::new());
            super::super::weights::quantize(ty, &x, &mut plain).unwrap();
            quantize_row(ty, &x, &qw, &mut weighted).unwrap();
            assert_eq!(plain.len(), weighted.len(), "{ty:?}");
            assert!(
                err(&weighted) < err(&plain),
                "{ty:?}: {} vs {}",
                err(&weighted),
                err(&plain)
            );
        }
    }
}
