//! The AVX-512 kernels of [`super`]: one chunk of keys (fill, scores, softmax, weighted values) for a task's
//! queries, lane for lane the arithmetic of `chunk_generic`.
//!
//! K rows are converted 16 × 16 at a time and transposed in registers; the scores are `N` queries × `16·V` keys
//! (query element broadcast, one FMA per key vector and `d`, in order of `d`), the values `N` queries × `16·V`
//! dimensions (weight broadcast, in order of the keys); `N`, `V` ≤ 4, picked at run time by `sized!`.

use std::arch::x86_64::*;

use super::{Chunk, EXP_POLY, KC, Work, raise_max};

/// Queries per register tile.
const R: usize = 4;

/// Calls `$f::<N, V>(args)` for the runtime sizes `n`, `v` (each 1..=4).
macro_rules! sized {
    ($n:expr, $v:expr, $f:ident($($a:expr),*)) => {
        match ($n, $v) {
            (4, 4) => $f::<4, 4>($($a),*),
            (4, 3) => $f::<4, 3>($($a),*),
            (4, 2) => $f::<4, 2>($($a),*),
            (4, 1) => $f::<4, 1>($($a),*),
            (3, 4) => $f::<3, 4>($($a),*),
            (3, 3) => $f::<3, 3>($($a),*),
            (3, 2) => $f::<3, 2>($($a),*),
            (3, 1) => $f::<3, 1>($($a),*),
            (2, 4) => $f::<2, 4>($($a),*),
            (2, 3) => $f::<2, 3>($($a),*),
            (2, 2) => $f::<2, 2>($($a),*),
            (2, 1) => $f::<2, 1>($($a),*),
            (1, 4) => $f::<1, 4>($($a),*),
            (1, 3) => $f::<1, 3>($($a),*),
            (1, 2) => $f::<1, 2>($($a),*),
            _ => $f::<1, 1>($($a),*),
        }
    };
}

/// [`super::exp`] on 16 lanes, the same steps.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn exp16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
        _mm512_set1_ps(88.0),
    );
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
        _mm512_set1_ps(0.5),
    ));
    let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693_145_75), x);
    let r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.428_606_8e-6), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in EXP_POLY {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let e = _mm512_add_ps(
        _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
        _mm512_set1_ps(1.0),
    );
    let two_k = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(k),
        _mm512_set1_epi32(127),
    ));
    _mm512_mul_ps(e, _mm512_castsi512_ps(two_k))
}

/// 16 rows of 16 lanes to 16 columns.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn transpose(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + c], 128-bit lane b: column 4b + c of rows 4i..4i + 4.
    let pd = _mm512_castps_pd;
    for i in 0..4 {
        let (a, b, c, d) = (
            pd(t[4 * i]),
            pd(t[4 * i + 2]),
            pd(t[4 * i + 1]),
            pd(t[4 * i + 3]),
        );
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    // Then a 4 × 4 transpose of 128-bit lanes among r[c], r[4 + c], r[8 + c], r[12 + c].
    for c in 0..4 {
        let x0 = _mm512_shuffle_f32x4::<0x88>(r[c], r[4 + c]);
        let x1 = _mm512_shuffle_f32x4::<0xdd>(r[c], r[4 + c]);
        let y0 = _mm512_shuffle_f32x4::<0x88>(r[8 + c], r[12 + c]);
        let y1 = _mm512_shuffle_f32x4::<0xdd>(r[8 + c], r[12 + c]);
        t[c] = _mm512_shuffle_f32x4::<0x88>(x0, y0);
        t[4 + c] = _mm512_shuffle_f32x4::<0x88>(x1, y1);
        t[8 + c] = _mm512_shuffle_f32x4::<0xdd>(x0, y0);
        t[12 + c] = _mm512_shuffle_f32x4::<0xdd>(x1, y1);
    }
    *r = t;
}

/// Elements `db..db + 16` of row `j` in f32 (zeros for a missing row).
///
/// # Safety
/// Rows are at least `db + 16` long.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn row(rows: &[Option<&[u16]>], j: usize, db: usize) -> __m512 {
    match rows.get(j) {
        // SAFETY: the caller's.
        Some(Some(x)) => unsafe {
            _mm512_cvtph_ps(_mm256_loadu_si256(x.as_ptr().add(db) as *const __m256i))
        },
        _ => _mm512_setzero_ps(),
    }
}

/// The mask of lanes `16v + ℓ` in `a..b`.
fn lanes(a: usize, b: usize, v: usize) -> u16 {
    let lo = a.saturating_sub(16 * v).min(16);
    let hi = b.saturating_sub(16 * v).min(16);
    (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
}

/// One chunk: fill, scores, softmax, weighted values (the arithmetic of [`super::chunk_generic`]).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
pub(super) fn chunk(ch: &Chunk, w: &mut Work) {
    let (hd, nq, nk) = (w.hd, w.nq, ch.nk);
    let nv = nk.div_ceil(16);
    assert!(hd.is_multiple_of(16) && nk <= KC && nq <= ch.ranges.len());
    assert!(w.q.len() >= nq * hd && w.acc.len() >= nq * hd && w.s.len() >= nq * KC);
    assert!(w.kt.len() >= hd * KC && w.vv.len() >= KC * hd && w.lsum.len() >= nq * 16);
    // SAFETY: K and V rows are `hd` long (sliced so by `rows`); kt is hd × KC and vv KC × hd (asserted).
    unsafe {
        let (k, vr) = (&ch.k[..nk], &ch.v[..nk]);
        for v in 0..nv {
            for db in (0..hd).step_by(16) {
                let mut x = [_mm512_setzero_ps(); 16];
                for (i, x) in x.iter_mut().enumerate() {
                    *x = row(k, 16 * v + i, db);
                }
                transpose(&mut x);
                for (c, x) in x.iter().enumerate() {
                    _mm512_storeu_ps(w.kt.as_mut_ptr().add((db + c) * KC + 16 * v), *x);
                }
            }
        }
        for j in 0..nk {
            for db in (0..hd).step_by(16) {
                _mm512_storeu_ps(w.vv.as_mut_ptr().add(j * hd + db), row(vr, j, db));
            }
        }
        let mut r = 0;
        while r < nq {
            let n = (nq - r).min(R);
            let (q, s) = (w.q.as_ptr().add(r * hd), w.s.as_mut_ptr().add(r * KC));
            sized!(n, nv, scores(q, hd, w.kt.as_ptr(), w.scale, s));
            r += n;
        }
    }
    for r in 0..nq {
        let (a, b) = ch.ranges[r];
        let srow = &mut w.s[r * KC..][..KC];
        if a >= b {
            srow[..nv * 16].fill(0.0);
            continue;
        }
        let mut masks = [0u16; KC / 16];
        // SAFETY: srow is KC long and v < nv <= KC / 16; lsum holds 16 per query (asserted).
        unsafe {
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            for (v, mk) in masks[..nv].iter_mut().enumerate() {
                *mk = lanes(a, b, v);
                mx = _mm512_mask_max_ps(mx, *mk, mx, _mm512_loadu_ps(srow.as_ptr().add(16 * v)));
            }
            let cmax = _mm512_reduce_max_ps(mx);
            let acc = &mut w.acc[r * hd..][..hd];
            raise_max(cmax, &mut w.m[r], acc, &mut w.lsum[r * 16..][..16]);
            let m = _mm512_set1_ps(w.m[r]);
            let lp = w.lsum.as_mut_ptr().add(r * 16);
            let mut l = _mm512_loadu_ps(lp);
            for (v, &mk) in masks[..nv].iter().enumerate() {
                let sp = srow.as_mut_ptr().add(16 * v);
                let p = _mm512_maskz_mov_ps(mk, exp16(_mm512_sub_ps(_mm512_loadu_ps(sp), m)));
                _mm512_storeu_ps(sp, p);
                l = _mm512_add_ps(l, p);
            }
            _mm512_storeu_ps(lp, l);
        }
    }
    let mut r = 0;
    while r < nq {
        let n = (nq - r).min(R);
        let vis = ch.ranges[r..r + n].iter().filter(|x| x.0 < x.1);
        let a = vis.clone().map(|x| x.0).min().unwrap_or(0);
        let b = vis.map(|x| x.1).max().unwrap_or(0);
        for db in (0..hd).step_by(64) {
            let dv = ((hd - db) / 16).min(4);
            // SAFETY: queries r..r + n have rows of KC weights and hd outputs, keys a..b < nk rows of vv.
            unsafe {
                let (p, vv) = (w.s.as_ptr().add(r * KC), w.vv.as_ptr().add(db));
                let acc = w.acc.as_mut_ptr().add(r * hd + db);
                sized!(n, dv, values(p, vv, hd, a..b, acc));
            }
        }
        r += n;
    }
}

/// Scores of `N` queries (rows of `hd` at `q`) against `16·V` keys of `kt`, into rows of `KC` at `s`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn scores<const N: usize, const V: usize>(
    q: *const f32,
    hd: usize,
    kt: *const f32,
    scale: f32,
    s: *mut f32,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; N];
    // SAFETY: the caller's: N rows of q, hd rows of KC in kt, N rows of KC at s.
    unsafe {
        for d in 0..hd {
            let mut k = [_mm512_setzero_ps(); V];
            for (v, k) in k.iter_mut().enumerate() {
                *k = _mm512_loadu_ps(kt.add(d * KC + 16 * v));
            }
            for (n, acc) in acc.iter_mut().enumerate() {
                let qb = _mm512_set1_ps(*q.add(n * hd + d));
                for (a, k) in acc.iter_mut().zip(&k) {
                    *a = _mm512_fmadd_ps(qb, *k, *a);
                }
            }
        }
        let sc = _mm512_set1_ps(scale);
        for (n, acc) in acc.iter().enumerate() {
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(s.add(n * KC + 16 * v), _mm512_mul_ps(*a, sc));
            }
        }
    }
}

/// `acc[n][0..16V] += Σ_{j∈keys} p[n][j] · vv[j]` for `N` queries (weights in rows of `KC`, outputs rows of `hd`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn values<const N: usize, const V: usize>(
    p: *const f32,
    vv: *const f32,
    hd: usize,
    keys: std::ops::Range<usize>,
    acc: *mut f32,
) {
    let mut t = [[_mm512_setzero_ps(); V]; N];
    // SAFETY: the caller's: N rows of KC at p and of hd at acc, rows `keys` of hd at vv, 16V <= hd.
    unsafe {
        for (n, t) in t.iter_mut().enumerate() {
            for (x, t) in t.iter_mut().enumerate() {
                *t = _mm512_loadu_ps(acc.add(n * hd + 16 * x));
            }
        }
        for j in keys {
            let mut v = [_mm512_setzero_ps(); V];
            for (x, v) in v.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(vv.add(j * hd + 16 * x));
            }
            for (n, t) in t.iter_mut().enumerate() {
                let pb = _mm512_set1_ps(*p.add(n * KC + j));
                for (t, v) in t.iter_mut().zip(&v) {
                    *t = _mm512_fmadd_ps(pb, *v, *t);
                }
            }
        }
        for (n, t) in t.iter().enumerate() {
            for (x, t) in t.iter().enumerate() {
                _mm512_storeu_ps(acc.add(n * hd + 16 * x), *t);
            }
        }
    }
}
