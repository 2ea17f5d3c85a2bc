//! IQ4_NL and IQ4_XS: 4-bit indices into a fixed non-linear table of 16 values (denser near zero, where most
//! weights are), as llama.cpp lays them out.
//!
//! - IQ4_NL, 32 weights in 18 bytes: f16 `d`, then 16 bytes whose low nibbles are weights 0-15 and high nibbles
//!   16-31; `w = d·KVALUES[q]`. Dotted with Q8_0 activations.
//! - IQ4_XS, 256 weights in 136 bytes: f16 `d`, `scales_h` (u16: two high bits per sub-block of 32), `scales_l`
//!   (4 bytes: a low nibble per sub-block), then 128 bytes of quants laid out per sub-block as IQ4_NL's;
//!   `w = d·(ls − 32)·KVALUES[q]` with the 6-bit `ls`. Dotted with Q8_K activations.
//!
//! Dequantization here is the reference the kernels ([`super::avx2`]) are tested against. The quantizer is ggml's
//! `quantize_row_iq4_nl_impl` as llama-quantize runs it (seven extra scales tried per sub-block, with or without an
//! importance matrix), step for step in f32 so the same source gives the same bytes.

use super::kquants::nearest_int;

/// The 16 values an index stands for (ggml's `kvalues_iq4nl`).
pub const KVALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Bytes of an IQ4_XS block.
pub const XS_BLOCK: usize = 136;

/// Dequantizes one IQ4_NL block (18 bytes) into 32 values.
pub fn dq_iq4_nl(x: &[u8], y: &mut [f32]) {
    let d = super::f16_at(x, 0);
    for j in 0..16 {
        let q = x[2 + j];
        y[j] = d * KVALUES[(q & 0xF) as usize] as f32;
        y[j + 16] = d * KVALUES[(q >> 4) as usize] as f32;
    }
}

/// The 6-bit scale of sub-block `ib` (0..8) of an IQ4_XS block, as stored (subtract 32 for its value).
#[inline]
pub fn xs_scale(x: &[u8], ib: usize) -> u8 {
    let h = u16::from_le_bytes([x[2], x[3]]);
    ((x[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((h >> (2 * ib)) & 3) as u8) << 4)
}

/// Dequantizes one IQ4_XS block (136 bytes) into 256 values.
pub fn dq_iq4_xs(x: &[u8], y: &mut [f32]) {
    let d = super::f16_at(x, 0);
    for ib in 0..8 {
        let dl = d * (xs_scale(x, ib) as i32 - 32) as f32;
        let qs = &x[8 + 16 * ib..][..16];
        let yb = &mut y[32 * ib..][..32];
        for j in 0..16 {
            yb[j] = dl * KVALUES[(qs[j] & 0xF) as usize] as f32;
            yb[j + 16] = dl * KVALUES[(qs[j] >> 4) as usize] as f32;
        }
    }
}

/// ggml's `best_index_int8`: the index of the table value nearest `x` (ties to the upper one).
fn best_index(x: f32) -> u8 {
    let v = |i: usize| KVALUES[i] as f32;
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// ggml's `GROUP_MAX_EPS`: a sub-block whose largest magnitude is below this quantizes to zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Extra scales tried around the first guess, each side (llama-quantize's `ntry`).
const NTRY: i32 = 7;

/// The best scale for one sub-block of 32 (`weight` its error weights), its indices left in `l`.
fn sub_block_scale(xb: &[f32], weight: &[f32; 32], l: &mut [u8]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in xb {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = KVALUES[0] as f32;
    let sums = |id: f32, mut l: Option<&mut [u8]>| {
        let (mut sumqx, mut sumq2) = (0f32, 0f32);
        for (j, &x) in xb.iter().enumerate() {
            let i = best_index(id * x);
            if let Some(l) = l.as_deref_mut() {
                l[j] = i;
            }
            let q = KVALUES[i as usize] as f32;
            let w = weight[j];
            sumqx += w * q * x;
            sumq2 += w * q * q;
        }
        (sumqx, sumq2)
    };
    let d = -max / v0;
    let (sumqx, sumq2) = sums(1.0 / d, Some(l));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry + KVALUES[0] as i32) as f32 / max;
        let (sumqx, sumq2) = sums(id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Quantizes `x` (a whole number of blocks) to IQ4_NL or IQ4_XS with the importance weights `qw` (one per value)
/// or none, appending to `out`; as `quantize_iq4_nl` / `quantize_iq4_xs`.
pub fn quantize(xs_type: bool, x: &[f32], qw: Option<&[f32]>, out: &mut Vec<u8>) {
    let sb = if xs_type { 256 } else { 32 };
    for (b, x) in x.chunks_exact(sb).enumerate() {
        let qw = qw.map(|w| &w[b * sb..(b + 1) * sb]);
        let mut sigma2 = 0f32;
        for &v in x {
            sigma2 += v * v;
        }
        sigma2 *= 2.0 / sb as f32;
        let mut l = [0u8; 256];
        let l = &mut l[..sb];
        let mut scales = [0f32; 8];
        let (mut max_scale, mut amax_scale) = (0f32, 0f32);
        for (ib, (xb, lb)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
            let weight: [f32; 32] = std::array::from_fn(|j| match qw {
                Some(w) => w[32 * ib + j] * (sigma2 + xb[j] * xb[j]).sqrt(),
                None => xb[j] * xb[j],
            });
            let d = sub_block_scale(xb, &weight, lb);
            scales[ib] = d;
            if d.abs() > amax_scale {
                amax_scale = d.abs();
                max_scale = d;
            }
        }
        if xs_type {
            let d = -max_scale / 32.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let (mut scales_h, mut scales_l) = (0u16, [0u8; 4]);
            for (ib, (xb, lb)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
                let li = nearest_int(id * scales[ib]).clamp(-32, 31);
                let dl = d * li as f32;
                let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
                for (q, &v) in lb.iter_mut().zip(xb) {
                    *q = best_index(idl * v);
                }
                let li = (li + 32) as u8;
                scales_l[ib / 2] |= (li & 0xF) << (4 * (ib % 2));
                scales_h |= ((li >> 4) as u16) << (2 * ib);
            }
            out.extend(half::f16::from_f32(d).to_le_bytes());
            out.extend(scales_h.to_le_bytes());
            out.extend(scales_l);
        } else {
            let d = scales[0];
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (q, &v) in l.iter_mut().zip(x) {
                *q = best_index(id * v);
            }
            out.extend(half::f16::from_f32(d).to_le_bytes());
        }
        for lb in l.chunks_exact(32) {
            out.extend((0..16).map(|j| lb[j] | lb[16 + j] << 4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_index_picks_the_nearest_value() {
        assert_eq!(best_index(-500.0), 0);
        assert_eq!(best_index(500.0), 15);
        assert_eq!(best_index(0.0), 8); // 1 is nearer than -10
        assert_eq!(best_index(-4.5), 8); // -10 and 1 are both 5.5 away: a tie goes to the upper value
        assert_eq!(best_index(-4.6), 7);
        assert_eq!(best_index(-4.4), 8);
        for (i, &v) in KVALUES.iter().enumerate() {
            assert_eq!(best_index(v as f32) as usize, i);
        }
    }

    #[test]
    fn both_types_round_trip_close() {
        let x: Vec<f32> = (0..512)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        for xs in [false, true] {
            let mut q = Vec::new();
            quantize(xs, &x, None, &mut q);
            let ty = if xs {
                super::super::GgmlType::IQ4_XS
            } else {
                super::super::GgmlType::IQ4_NL
            };
            assert_eq!(q.len(), ty.row_bytes(x.len()));
            let mut y = vec![0f32; x.len()];
            super::super::reference::dequantize(ty, &q, &mut y);
            // Values span about ±3, so a table unit is about 0.023: half the widest gap (24 units) is 0.28.
            let worst = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 0.3, "{ty:?}: worst error {worst}");
        }
    }
}
