//! ggml's scale searches on eight sub-blocks at once, one per lane: `make_qkx2_quants` (Q2_K, Q4_K, Q5_K: a
//! scale and a minimum) and `make_qx_quants` (Q3_K, Q6_K: a symmetric scale), which the k-quant quantizers call
//! on every sub-block of a superblock. The scalar searches are chains of dependent f32 sums (19 to 37 scales tried,
//! two or three sums each over 16 or 32 values) that must keep C's order to give llama-quantize's bytes, so they
//! wait on the adder's latency; eight independent sub-blocks side by side fill the vector lanes instead. Each lane
//! does exactly the scalar function's operations in its order (Rust never fuses a multiply and an add), so the
//! bytes are the same: the tests hold every lane to the scalar functions bit for bit. Compiled twice: for AVX2
//! (eight lanes in one register) where the CPU has it, and for the baseline (two SSE registers).

use super::kquants::nearest_int;

pub(super) const LANES: usize = 8;
type V = [f32; LANES];

#[inline(always)]
fn lanes<T>(f: impl FnMut(usize) -> T) -> [T; LANES] {
    std::array::from_fn(f)
}

/// [`super::kquants::make_qkx2_quants`] on `LANES` sub-blocks of `n` (at most 32) values: `x`, `weights` and `l`
/// hold them one after another. Returns each sub-block's scale and minimum's negation.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants_x8(
    x: &[f32],
    weights: &[f32],
    n: usize,
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    mad: bool,
    l: &mut [u8],
) -> (V, V) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { x8_avx2(x, weights, n, nmax, rmin, rdelta, nstep, mad, l) };
    }
    x8(x, weights, n, nmax, rmin, rdelta, nstep, mad, l)
}

/// [`make_qkx2_quants_x8`] on a superblock's sixteen sub-blocks of 16 (Q2_K): its two halves in turn.
pub(super) fn make_qkx2_quants_16x16(
    x: &[f32],
    w: &[f32],
    search: (i32, f32, f32, i32, bool),
    l: &mut [u8],
) -> ([f32; 16], [f32; 16]) {
    let (nmax, rmin, rdelta, nstep, mad) = search;
    let (mut scales, mut mins) = ([0f32; 16], [0f32; 16]);
    for h in 0..2 {
        let r = 128 * h..128 * h + 128;
        let (s, m) = make_qkx2_quants_x8(
            &x[r.clone()],
            &w[r.clone()],
            16,
            nmax,
            rmin,
            rdelta,
            nstep,
            mad,
            &mut l[r],
        );
        scales[8 * h..8 * h + 8].copy_from_slice(&s);
        mins[8 * h..8 * h + 8].copy_from_slice(&m);
    }
    (scales, mins)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn x8_avx2(
    x: &[f32],
    weights: &[f32],
    n: usize,
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    mad: bool,
    l: &mut [u8],
) -> (V, V) {
    x8(x, weights, n, nmax, rmin, rdelta, nstep, mad, l)
}

#[inline(always)]
fn err(d: f32, mad: bool) -> f32 {
    if mad { d.abs() } else { d * d }
}

#[inline(always)]
fn level(iscale: f32, x: f32, min: f32, nmax: i32) -> i32 {
    nearest_int(iscale * (x - min)).clamp(0, nmax)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn x8(
    x: &[f32],
    weights: &[f32],
    n: usize,
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    mad: bool,
    l: &mut [u8],
) -> (V, V) {
    assert!(
        n <= 32 && x.len() == LANES * n && weights.len() == LANES * n && l.len() == LANES * n,
        "eight sub-blocks of at most 32"
    );
    // Transposed: row i holds value i of every sub-block.
    let mut xt = [[0f32; LANES]; 32];
    let mut wt = [[0f32; LANES]; 32];
    for k in 0..LANES {
        for i in 0..n {
            xt[i][k] = x[k * n + i];
            wt[i][k] = weights[k * n + i];
        }
    }
    let (xt, wt) = (&xt[..n], &wt[..n]);
    let (mut min, mut max) = (xt[0], xt[0]);
    let mut sum_w = wt[0];
    let mut sum_x: V = lanes(|k| sum_w[k] * xt[0][k]);
    for (xi, wi) in xt.iter().zip(wt).skip(1) {
        for k in 0..LANES {
            if xi[k] < min[k] {
                min[k] = xi[k];
            }
            if xi[k] > max[k] {
                max[k] = xi[k];
            }
            sum_w[k] += wi[k];
            sum_x[k] += wi[k] * xi[k];
        }
    }
    for m in &mut min {
        if *m > 0.0 {
            *m = 0.0;
        }
    }
    // A sub-block whose values are all equal gets levels 0 and scale 0 (its lane's search is ignored).
    let flat: [bool; LANES] = lanes(|k| max[k] == min[k]);
    let flat_min = min;
    let nm = nmax as f32;
    let iscale: V = lanes(|k| nm / (max[k] - min[k]));
    let mut scale: V = lanes(|k| 1.0 / iscale[k]);
    let mut best = [0f32; LANES];
    let mut lt = [[0u8; LANES]; 32];
    for i in 0..n {
        for k in 0..LANES {
            let li = level(iscale[k], xt[i][k], min[k], nmax) as u8;
            lt[i][k] = li;
            best[k] += wt[i][k] * err(scale[k] * li as f32 + min[k] - xt[i][k], mad);
        }
    }
    let mut aux = [[0f32; LANES]; 32];
    for is in 0..=nstep {
        let iscale: V = lanes(|k| (rmin + rdelta * is as f32 + nm) / (max[k] - min[k]));
        let (mut sum_l, mut sum_l2, mut sum_xl) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
        for i in 0..n {
            for k in 0..LANES {
                let lf = level(iscale[k], xt[i][k], min[k], nmax) as f32;
                aux[i][k] = lf;
                let w = wt[i][k];
                sum_l[k] += w * lf;
                sum_l2[k] += w * lf * lf;
                sum_xl[k] += w * lf * xt[i][k];
            }
        }
        let d: V = lanes(|k| sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k]);
        let mut this_scale: V = lanes(|k| (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d[k]);
        let mut this_min: V = lanes(|k| (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d[k]);
        for k in 0..LANES {
            if this_min[k] > 0.0 {
                this_min[k] = 0.0;
                this_scale[k] = sum_xl[k] / sum_l2[k];
            }
        }
        let mut cur = [0f32; LANES];
        for i in 0..n {
            for k in 0..LANES {
                cur[k] += wt[i][k] * err(this_scale[k] * aux[i][k] + this_min[k] - xt[i][k], mad);
            }
        }
        let take: [bool; LANES] = lanes(|k| d[k] > 0.0 && cur[k] < best[k]);
        if !take.contains(&true) {
            continue;
        }
        for k in 0..LANES {
            if take[k] {
                best[k] = cur[k];
                scale[k] = this_scale[k];
                min[k] = this_min[k];
            }
        }
        for (lti, auxi) in lt[..n].iter_mut().zip(&aux[..n]) {
            for k in 0..LANES {
                if take[k] {
                    lti[k] = auxi[k] as u8;
                }
            }
        }
    }
    let mut scales = [0f32; LANES];
    let mut neg_mins = [0f32; LANES];
    for k in 0..LANES {
        if flat[k] {
            l[k * n..(k + 1) * n].fill(0);
            neg_mins[k] = -flat_min[k];
        } else {
            for i in 0..n {
                l[k * n + i] = lt[i][k];
            }
            scales[k] = scale[k];
            neg_mins[k] = -min[k];
        }
    }
    (scales, neg_mins)
}

/// [`super::weights::make_qx_quants`] on `LANES` sub-blocks of `n` (at most 32): levels `-nmax..nmax-1` stored in
/// `l` plus `nmax`, each sub-block's error weighted by `qw` (its importance) or else by `x^2`. Returns each scale.
pub(super) fn make_qx_quants_x8(
    x: &[f32],
    n: usize,
    nmax: i32,
    l: &mut [i8],
    qw: Option<&[f32]>,
) -> V {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { qx8_avx2(x, n, nmax, l, qw) };
    }
    qx8(x, n, nmax, l, qw)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn qx8_avx2(x: &[f32], n: usize, nmax: i32, l: &mut [i8], qw: Option<&[f32]>) -> V {
    qx8(x, n, nmax, l, qw)
}

const QN: usize = 32;

/// The levels (`q`, without the `nmax` offset) of every lane at its scale, and the lanes' two sums.
#[inline(always)]
fn qx_sums(
    iscale: &V,
    xt: &[[f32; LANES]],
    wt: &[[f32; LANES]],
    nmax: i32,
    q: &mut [[i32; LANES]; QN],
) -> (V, V) {
    let (mut sumlx, mut suml2) = ([0f32; LANES], [0f32; LANES]);
    for i in 0..xt.len() {
        for k in 0..LANES {
            let qi = nearest_int(iscale[k] * xt[i][k]).clamp(-nmax, nmax - 1);
            q[i][k] = qi;
            let (w, qf) = (wt[i][k], qi as f32);
            sumlx[k] += w * xt[i][k] * qf;
            suml2[k] += w * qf * qf;
        }
    }
    (sumlx, suml2)
}

#[inline(always)]
fn qx8(x: &[f32], n: usize, nmax: i32, l: &mut [i8], qw: Option<&[f32]>) -> V {
    assert!(
        n <= QN
            && x.len() == LANES * n
            && l.len() == LANES * n
            && qw.is_none_or(|w| w.len() == LANES * n),
        "eight sub-blocks of at most 32"
    );
    let mut xt = [[0f32; LANES]; QN];
    let mut wt = [[0f32; LANES]; QN];
    for k in 0..LANES {
        for i in 0..n {
            let v = x[k * n + i];
            xt[i][k] = v;
            wt[i][k] = match qw {
                Some(w) => w[k * n + i],
                None => v * v,
            };
        }
    }
    let (xt, wt) = (&xt[..n], &wt[..n]);
    // The value of largest magnitude (the first of equals), as `signed_max`.
    let (mut amax, mut max) = ([0f32; LANES], [0f32; LANES]);
    for xi in xt {
        for k in 0..LANES {
            if amax[k] < xi[k].abs() {
                amax[k] = xi[k].abs();
                max[k] = xi[k];
            }
        }
    }
    let nm = nmax as f32;
    let mut q = [[0i32; LANES]; QN];
    let mut best_q = [[0i32; LANES]; QN];
    let iscale: V = lanes(|k| -nm / max[k]);
    let (sumlx, suml2) = qx_sums(&iscale, xt, wt, nmax, &mut best_q);
    let mut scale: V = lanes(|k| {
        if suml2[k] != 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        }
    });
    let mut best: V = lanes(|k| scale[k] * sumlx[k]);
    for is in (-9..=9).filter(|&i| i != 0) {
        let iscale: V = lanes(|k| -(nm + 0.1 * is as f32) / max[k]);
        let (sumlx, suml2) = qx_sums(&iscale, xt, wt, nmax, &mut q);
        let take: [bool; LANES] =
            lanes(|k| suml2[k] > 0.0 && sumlx[k] * sumlx[k] > best[k] * suml2[k]);
        if !take.contains(&true) {
            continue;
        }
        for k in 0..LANES {
            if take[k] {
                scale[k] = sumlx[k] / suml2[k];
                best[k] = scale[k] * sumlx[k];
            }
        }
        for (b, qi) in best_q[..n].iter_mut().zip(&q[..n]) {
            for k in 0..LANES {
                if take[k] {
                    b[k] = qi[k];
                }
            }
        }
    }
    for k in 0..LANES {
        let flat = amax[k] < 1e-15;
        for i in 0..n {
            l[k * n + i] = if flat { 0 } else { (nmax + best_q[i][k]) as i8 };
        }
        if flat {
            scale[k] = 0.0;
        }
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::super::kquants::make_qkx2_quants;
    use super::*;

    /// Every lane gives the scalar search's scale, minimum and levels, bit for bit, on the settings each caller
    /// uses, with flat, all-positive, tiny and ragged sub-blocks among them.
    #[test]
    fn each_lane_is_the_scalar_search() {
        let mut s = 0x9e37_79b9u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 - 0.5
        };
        let settings: [(usize, i32, f32, f32, i32, bool); 5] = [
            (32, 15, -1.0, 0.1, 20, false),
            (32, 31, -0.5, 0.1, 15, false),
            (16, 3, -0.5, 0.1, 15, true),
            (32, 15, -0.9, 0.05, 36, false),
            (16, 3, -0.9, 0.05, 36, false),
        ];
        for (n, nmax, rmin, rdelta, nstep, mad) in settings {
            for round in 0..200 {
                let mut x: Vec<f32> = (0..LANES * n).map(|_| rnd() * 2.0).collect();
                match round % 5 {
                    0 => x[..n].fill(0.7),
                    1 => x[n..2 * n].iter_mut().for_each(|v| *v = v.abs() + 0.1),
                    2 => x[2 * n..3 * n].iter_mut().for_each(|v| *v *= 1e-6),
                    3 => x[3 * n..4 * n].fill(0.0),
                    _ => {}
                }
                let w: Vec<f32> = x.iter().map(|v| v.abs() + rnd().abs()).collect();
                let mut l = vec![0u8; LANES * n];
                let (sc, mn) =
                    make_qkx2_quants_x8(&x, &w, n, nmax, rmin, rdelta, nstep, mad, &mut l);
                for k in 0..LANES {
                    let r = k * n..(k + 1) * n;
                    let mut want = vec![0u8; n];
                    let (a, b) = make_qkx2_quants(
                        &x[r.clone()],
                        &w[r.clone()],
                        nmax,
                        rmin,
                        rdelta,
                        nstep,
                        mad,
                        &mut want,
                    );
                    assert_eq!(
                        (sc[k].to_bits(), mn[k].to_bits()),
                        (a.to_bits(), b.to_bits()),
                        "lane {k}, n {n} nmax {nmax}: ({}, {}) vs ({a}, {b})",
                        sc[k],
                        mn[k]
                    );
                    assert_eq!(&l[r], &want[..], "lane {k} levels");
                }
            }
        }
    }

    #[test]
    fn each_lane_is_the_scalar_symmetric_search() {
        use super::super::weights::make_qx_quants;
        let mut s = 0x1234_5678u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f32 / u32::MAX as f32 - 0.5
        };
        for (n, nmax) in [(16, 32), (16, 4), (32, 8), (32, 16)] {
            for round in 0..400 {
                let mut x: Vec<f32> = (0..LANES * n).map(|_| rnd() * 3.0).collect();
                match round % 4 {
                    0 => x[..n].fill(0.0),
                    1 => x[n..2 * n].fill(-0.25),
                    2 => x[2 * n..3 * n].iter_mut().for_each(|v| *v *= 1e-16),
                    _ => {}
                }
                let w: Vec<f32> = x.iter().map(|v| v.abs() * 0.5 + rnd().abs()).collect();
                for qw in [None, Some(&w[..])] {
                    let mut l = vec![0i8; LANES * n];
                    let sc = make_qx_quants_x8(&x, n, nmax, &mut l, qw);
                    for (k, sck) in sc.iter().enumerate() {
                        let r = k * n..(k + 1) * n;
                        let mut want = vec![0i8; n];
                        let a = make_qx_quants(
                            &x[r.clone()],
                            nmax,
                            &mut want,
                            qw.map(|w| &w[r.clone()]),
                        );
                        assert_eq!(
                            sck.to_bits(),
                            a.to_bits(),
                            "lane {k} nmax {nmax}: {sck} vs {a}"
                        );
                        assert_eq!(&l[r], &want[..], "lane {k} levels");
                    }
                }
            }
        }
    }
}
