//! Causal attention of a batch's new tokens over the paged f16 KV cache, tiled: one task takes a run of up to
//! `TMAX` consecutive tokens of one sequence and the query heads of one KV head that share it (at most `QMAX`
//! query vectors), so each key and value is converted from f16 once per task rather than once per query head.
//!
//! Keys go by chunks of [`KC`] at absolute positions `c·KC ..`: the chunk's keys transposed into f32 (`hd × KC`),
//! its values into f32 rows, the scores of every query by a register tile (AVX-512: 4 queries × 64 keys, the query
//! element broadcast), then per query the causal and sliding-window mask, an online softmax (running max `m`, the
//! accumulator rescaled when `m` grows, the weights summed in 16 lanes by key position) and the weighted values
//! (4 queries × 64 dimensions, the weight broadcast). The output is `acc / l` with `l` the lanes summed in a fixed
//! tree.
//!
//! A query's bits depend only on its own position, window and the cache: each score is one fused sum over `d` in
//! order, chunk bounds are absolute, a masked key weighs exactly 0 and a chunk with no visible key leaves the
//! query's state alone (zero signs canonicalized at the end), so prefill and decode, alone or batched, agree
//! bitwise. Queries are rounded to f16 first (as llama.cpp's f16 KQ product). [`attention_reference`] is the plain
//! per-query twin with the same arithmetic; the AVX-512 path, the generic one (compiled once more with AVX2+FMA+F16C)
//! and the twin agree bitwise, which the tests check.

use std::cell::RefCell;
use std::ops::Range;

use crate::kv::KvStore;
use crate::pool::ThreadPool;
use crate::quant::{SimdLevel, simd_level};
use crate::seq_batch::SeqBatch;
use crate::tensor::SyncPtr;

/// Keys per chunk (a multiple of 16; chunks start at multiples of it).
pub const KC: usize = 64;
/// Query vectors per task.
const QMAX: usize = 64;
/// Tokens per task.
const TMAX: usize = 16;
/// Largest head dimension (the model refuses larger ones).
const MAX_HD: usize = 512;

/// One layer's attention: shapes, and where the queries and the cache are.
#[derive(Clone, Copy)]
pub struct Attn<'a> {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Score multiplier (`1/√hd` for most models).
    pub scale: f32,
    /// A query at `p` sees keys `p + 1 - window ..= p` (all of `0..=p` when `None`).
    pub window: Option<usize>,
    pub layer: usize,
    /// `(token, head, head_dim)` f32.
    pub q: &'a [f32],
    pub batch: &'a [SeqBatch<'a>],
    /// Token index -> (sequence, position), as the forward pass builds it.
    pub where_: &'a [(usize, usize)],
    pub kv: &'a KvStore,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tier {
    Generic,
    Avx2,
    Avx512,
}

fn tier(hd: usize) -> Tier {
    match simd_level() {
        SimdLevel::Avx512Vnni if hd.is_multiple_of(16) => Tier::Avx512,
        SimdLevel::Scalar => Tier::Generic,
        _ => Tier::Avx2,
    }
}

/// Writes each token's attention output into `out[(t * n_head + h) * head_dim ..]`.
pub fn attention(a: &Attn, out: &mut [f32], pool: &ThreadPool) {
    attention_on(tier(a.head_dim), a, out, pool);
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn attention_on(tier: Tier, a: &Attn, out: &mut [f32], pool: &ThreadPool) {
    let (nh, nkv, hd) = (a.n_head, a.n_head_kv, a.head_dim);
    let n = a.where_.len();
    assert!(
        nkv > 0 && nh.is_multiple_of(nkv),
        "{nh} heads, {nkv} KV heads"
    );
    assert!(hd > 0 && hd <= MAX_HD, "head dimension {hd}");
    assert!(
        a.q.len() >= n * nh * hd && out.len() >= n * nh * hd,
        "attention buffers"
    );
    let group = nh / nkv;
    let mut hs = group.min(QMAX);
    let tiles = tiles(a.where_, (QMAX / hs).clamp(1, TMAX));
    // Too few tasks for the pool (decoding a sequence or two): split a group's heads further.
    let base = tiles.len() * nkv;
    if base * group.div_ceil(hs) < pool.n_threads() {
        hs = hs.min(group.div_ceil(pool.n_threads().div_ceil(base)));
    }
    let per_group = group.div_ceil(hs);
    let per_tile = nkv * per_group;
    let ptr = SyncPtr(out.as_mut_ptr());
    pool.run(tiles.len() * per_tile, &|task| {
        let (tile, rest) = (tiles[task / per_tile].clone(), task % per_tile);
        let (g, part) = (rest / per_group, rest % per_group);
        let h0 = g * group + part * hs;
        let heads = h0..(h0 + hs).min((g + 1) * group);
        SCRATCH.with_borrow_mut(|buf| run_tile(tier, a, tile, g, heads, buf, ptr));
    });
}

/// Runs of consecutive positions of one sequence, at most `qt` tokens each, the longest contexts first.
fn tiles(where_: &[(usize, usize)], qt: usize) -> Vec<Range<usize>> {
    let mut tiles: Vec<Range<usize>> = Vec::new();
    for (t, &(s, p)) in where_.iter().enumerate() {
        match tiles.last_mut() {
            Some(r) if r.len() < qt && where_[r.end - 1] == (s, p.wrapping_sub(1)) => r.end += 1,
            _ => tiles.push(t..t + 1),
        }
    }
    tiles.sort_by_key(|r| std::cmp::Reverse(where_[r.end - 1].1));
    tiles
}

/// Per-task buffers (f32, from the thread's scratch).
struct Work<'a> {
    hd: usize,
    nq: usize,
    scale: f32,
    /// `nq × hd`, rounded to f16.
    q: &'a [f32],
    /// `nq × hd` unnormalized outputs.
    acc: &'a mut [f32],
    /// The chunk's keys transposed, `hd × KC`.
    kt: &'a mut [f32],
    /// The chunk's values, `KC × hd`.
    vv: &'a mut [f32],
    /// Scores, then weights, `nq × KC`.
    s: &'a mut [f32],
    /// Sums of the weights by key position mod 16, `nq × 16`.
    lsum: &'a mut [f32],
    /// Running maxima, `nq`.
    m: &'a mut [f32],
}

/// One chunk of keys: its length, its K and V rows (`None`: a block never written, read as zeros) and each
/// query's visible keys within it (`a..b`, empty when `a >= b`).
struct Chunk<'a> {
    nk: usize,
    k: [Option<&'a [u16]>; KC],
    v: [Option<&'a [u16]>; KC],
    ranges: [(usize, usize); QMAX],
}

/// The first key a query at `pos` sees.
fn first_key(window: Option<usize>, pos: usize) -> usize {
    window.map_or(0, |w| (pos + 1).saturating_sub(w))
}

/// K and V rows of KV head `g` at positions `c0..c0 + nk` of the sequence with block table `table`.
fn rows<'a>(
    a: &Attn<'a>,
    table: &[u32],
    g: usize,
    c0: usize,
    k: &mut [Option<&'a [u16]>],
    v: &mut [Option<&'a [u16]>],
) {
    let (bs, kvd, hd) = (a.kv.block_size, a.kv.kv_dim, a.head_dim);
    let mut block = None;
    for (j, (kr, vr)) in k.iter_mut().zip(v.iter_mut()).enumerate() {
        let p = c0 + j;
        if j == 0 || p.is_multiple_of(bs) {
            block = table.get(p / bs).and_then(|&b| a.kv.layer(b, a.layer));
        }
        let off = (p % bs) * kvd + g * hd;
        *kr = block.and_then(|(kb, _)| kb.get(off..off + hd));
        *vr = block.and_then(|(_, vb)| vb.get(off..off + hd));
    }
}

fn round_f16(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Query heads `heads` (of KV head `g`) of tokens `tile`.
fn run_tile(
    tier: Tier,
    a: &Attn,
    tile: Range<usize>,
    g: usize,
    heads: Range<usize>,
    buf: &mut Vec<f32>,
    out: SyncPtr<f32>,
) {
    let (nh, hd, hs) = (a.n_head, a.head_dim, heads.len());
    let nq = tile.len() * hs;
    let need = 2 * nq * hd + 2 * KC * hd + nq * (KC + 17);
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let (q, rest) = buf.split_at_mut(nq * hd);
    let (acc, rest) = rest.split_at_mut(nq * hd);
    let (kt, rest) = rest.split_at_mut(hd * KC);
    let (vv, rest) = rest.split_at_mut(KC * hd);
    let (s, rest) = rest.split_at_mut(nq * KC);
    let (lsum, rest) = rest.split_at_mut(nq * 16);
    let m = &mut rest[..nq];
    let (mut pos, mut lo) = ([0usize; QMAX], [0usize; QMAX]);
    for (i, t) in tile.clone().enumerate() {
        let p = a.where_[t].1;
        for (j, h) in heads.clone().enumerate() {
            let r = i * hs + j;
            (pos[r], lo[r]) = (p, first_key(a.window, p));
            let mut bits = [0u16; MAX_HD];
            crate::ops::f32_to_f16(&a.q[(t * nh + h) * hd..][..hd], &mut bits[..hd]);
            let dst = &mut q[r * hd..][..hd];
            match tier {
                // SAFETY: both tiers are chosen only when the CPU has AVX2 and F16C.
                #[cfg(target_arch = "x86_64")]
                Tier::Avx2 | Tier::Avx512 => unsafe { f16c_widen(&bits[..hd], dst) },
                _ => widen::<false>(&bits[..hd], dst),
            }
        }
    }
    acc.fill(0.0);
    lsum.fill(0.0);
    m.fill(f32::NEG_INFINITY);
    let (klo, khi) = (lo[..nq].iter().min(), pos[..nq].iter().max());
    let (Some(&klo), Some(&khi)) = (klo, khi) else {
        return;
    };
    let table = a
        .batch
        .get(a.where_[tile.start].0)
        .map_or(&[][..], |b| b.block_table);
    let mut w = Work {
        hd,
        nq,
        scale: a.scale,
        q,
        acc,
        kt,
        vv,
        s,
        lsum,
        m,
    };
    let mut c0 = klo / KC * KC;
    while c0 <= khi {
        let nk = (khi + 1 - c0).min(KC);
        let mut ch = Chunk {
            nk,
            k: [None; KC],
            v: [None; KC],
            ranges: [(0, 0); QMAX],
        };
        rows(a, table, g, c0, &mut ch.k[..nk], &mut ch.v[..nk]);
        for r in 0..nq {
            let b = (pos[r] + 1).min(c0 + nk).saturating_sub(c0);
            ch.ranges[r] = (lo[r].saturating_sub(c0).min(b), b);
        }
        match tier {
            // SAFETY: Tier::Avx512 is chosen only when the CPU has AVX-512F/BW/VL, AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => unsafe { x86::chunk(&ch, &mut w) },
            // SAFETY: Tier::Avx2 is chosen only when the CPU has AVX2, FMA and F16C.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => unsafe { chunk_avx2(&ch, &mut w) },
            _ => chunk_generic::<false>(&ch, &mut w),
        }
        c0 += KC;
    }
    for (i, t) in tile.enumerate() {
        for (j, h) in heads.clone().enumerate() {
            let r = i * hs + j;
            let l = sum16(&w.lsum[r * 16..][..16]);
            let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
            // SAFETY: `out` holds every token's heads (asserted in attention_on); this task alone writes head h
            // of token t.
            let dst =
                unsafe { std::slice::from_raw_parts_mut(out.get().add((t * nh + h) * hd), hd) };
            for (o, x) in dst.iter_mut().zip(&w.acc[r * hd..][..hd]) {
                *o = x * inv + 0.0;
            }
        }
    }
}

/// `e^x` in f32: Cody-Waite reduction, the Cephes polynomial, `2^k` into the exponent (relative error ~2e-7;
/// inputs clamped to [-87, 88]). Fused steps only, so the AVX-512 lanes compute the same bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = k.mul_add(-0.693_145_75, x);
    let r = k.mul_add(-1.428_606_8e-6, r);
    let mut p = 1.987_569_1e-4_f32;
    for c in EXP_POLY {
        p = p.mul_add(r, c);
    }
    let e = (p * r).mul_add(r, r) + 1.0;
    e * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

const EXP_POLY: [f32; 5] = [
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// The 16 lane sums of the weights added in a fixed tree.
fn sum16(l: &[f32]) -> f32 {
    let a: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
    let b: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (b[0] + b[2]) + (b[1] + b[3])
}

/// A new chunk maximum `cmax`: raises `m`, rescaling the accumulator and the lane sums by `e^(m - cmax)`.
#[inline(always)]
fn raise_max(cmax: f32, m: &mut f32, acc: &mut [f32], l: &mut [f32]) {
    if cmax > *m {
        if *m != f32::NEG_INFINITY {
            let c = exp(*m - cmax);
            acc.iter_mut().chain(l.iter_mut()).for_each(|x| *x *= c);
        }
        *m = cmax;
    }
}

/// f16 bit patterns to f32.
#[inline(always)]
fn widen<const F16C: bool>(src: &[u16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if F16C {
        // SAFETY: F16C is set only inside chunk_avx2, which runs when the CPU has AVX2 and F16C.
        return unsafe { f16c_widen(src, dst) };
    }
    for (d, &h) in dst.iter_mut().zip(src) {
        *d = half::f16::from_bits(h).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
fn f16c_widen(src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = half::f16::from_bits(src[j]).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn chunk_avx2(ch: &Chunk, w: &mut Work) {
    chunk_generic::<true>(ch, w);
}

/// One chunk in plain Rust, lane for lane the arithmetic of the AVX-512 kernel.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed 16-lane loops, indexed so they vectorize
fn chunk_generic<const F16C: bool>(ch: &Chunk, w: &mut Work) {
    let (hd, nk) = (w.hd, ch.nk);
    let nv = nk.div_ceil(16);
    let mut row = [0f32; MAX_HD];
    let row = &mut row[..hd];
    for j in 0..nv * 16 {
        match ch.k[..nk].get(j).copied().flatten() {
            Some(k) => widen::<F16C>(k, row),
            None => row.fill(0.0),
        }
        for (d, x) in row.iter().enumerate() {
            w.kt[d * KC + j] = *x;
        }
        if j < nk {
            let dst = &mut w.vv[j * hd..][..hd];
            match ch.v[j] {
                Some(v) => widen::<F16C>(v, dst),
                None => dst.fill(0.0),
            }
        }
    }
    for r in 0..w.nq {
        let (a, b) = ch.ranges[r];
        if a >= b {
            continue;
        }
        let q = &w.q[r * hd..][..hd];
        let srow = &mut w.s[r * KC..][..nv * 16];
        match nv {
            4 => scores_row::<4>(q, w.kt, w.scale, srow),
            3 => scores_row::<3>(q, w.kt, w.scale, srow),
            2 => scores_row::<2>(q, w.kt, w.scale, srow),
            _ => scores_row::<1>(q, w.kt, w.scale, srow),
        }
        let cmax = srow[a..b].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let acc = &mut w.acc[r * hd..][..hd];
        let lsum = &mut w.lsum[r * 16..][..16];
        raise_max(cmax, &mut w.m[r], acc, lsum);
        let m = w.m[r];
        for (j, x) in srow.iter_mut().enumerate() {
            let e = exp(*x - m);
            *x = if j >= a && j < b { e } else { 0.0 };
        }
        for v in 0..nv {
            for l in 0..16 {
                lsum[l] += srow[v * 16 + l];
            }
        }
        let mut db = 0;
        while db < hd {
            let (vv, acc) = (&w.vv[db..], &mut acc[db..]);
            db += match (hd - db) / 16 {
                0 => values_row::<1>(srow, a..b, vv, hd, acc),
                1 => values_row::<16>(srow, a..b, vv, hd, acc),
                2 => values_row::<32>(srow, a..b, vv, hd, acc),
                3 => values_row::<48>(srow, a..b, vv, hd, acc),
                _ => values_row::<64>(srow, a..b, vv, hd, acc),
            };
        }
    }
}

/// One query's scores against `16·V` keys of `kt`: `V` rows of 16 lanes, summed over `d` in order.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed 16-lane loops, indexed so they vectorize
fn scores_row<const V: usize>(q: &[f32], kt: &[f32], scale: f32, out: &mut [f32]) {
    let mut acc = [[0f32; 16]; V];
    for (d, &qd) in q.iter().enumerate() {
        let k = &kt[d * KC..][..16 * V];
        for v in 0..V {
            for l in 0..16 {
                acc[v][l] = qd.mul_add(k[16 * v + l], acc[v][l]);
            }
        }
    }
    for v in 0..V {
        for l in 0..16 {
            out[16 * v + l] = acc[v][l] * scale;
        }
    }
}

/// `acc[0..W] += Σ_{j∈keys} p[j] · vv[j·hd ..][..W]` (W outputs kept in registers); returns W.
#[inline(always)]
fn values_row<const W: usize>(
    p: &[f32],
    keys: Range<usize>,
    vv: &[f32],
    hd: usize,
    acc: &mut [f32],
) -> usize {
    let mut t = [0f32; W];
    t.copy_from_slice(&acc[..W]);
    for j in keys {
        for (t, v) in t.iter_mut().zip(&vv[j * hd..][..W]) {
            *t = p[j].mul_add(*v, *t);
        }
    }
    acc[..W].copy_from_slice(&t);
    W
}

/// The plain twin of [`attention`]: each (token, head) alone, key by key, with the same arithmetic.
pub fn attention_reference(a: &Attn, out: &mut [f32]) {
    let (nh, hd) = (a.n_head, a.head_dim);
    let group = nh / a.n_head_kv;
    let zeros = vec![0u16; hd];
    for (t, &(s, pos)) in a.where_.iter().enumerate() {
        let table = a.batch.get(s).map_or(&[][..], |b| b.block_table);
        for h in 0..nh {
            let q: Vec<f32> = a.q[(t * nh + h) * hd..][..hd]
                .iter()
                .map(|x| round_f16(*x))
                .collect();
            let lo = first_key(a.window, pos);
            let (mut m, mut acc, mut l) = (f32::NEG_INFINITY, vec![0f32; hd], [0f32; 16]);
            let mut c0 = lo / KC * KC;
            while c0 <= pos {
                let nk = (pos + 1 - c0).min(KC);
                let (mut k, mut v) = ([None; KC], [None; KC]);
                rows(a, table, h / group, c0, &mut k[..nk], &mut v[..nk]);
                let f32_of = |r: Option<&[u16]>, d: usize| {
                    half::f16::from_bits(r.unwrap_or(&zeros)[d]).to_f32()
                };
                let mut scores = Vec::new();
                for (j, &kr) in k.iter().enumerate().take(nk).skip(lo.saturating_sub(c0)) {
                    let mut sc = 0f32;
                    for (d, qd) in q.iter().enumerate() {
                        sc = qd.mul_add(f32_of(kr, d), sc);
                    }
                    scores.push((j, sc * a.scale));
                }
                let cmax = scores.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
                raise_max(cmax, &mut m, &mut acc, &mut l);
                for (j, sc) in scores {
                    let p = exp(sc - m);
                    l[j % 16] += p;
                    for (d, o) in acc.iter_mut().enumerate() {
                        *o = p.mul_add(f32_of(v[j], d), *o);
                    }
                }
                c0 += KC;
            }
            let sum = sum16(&l);
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            for (o, x) in out[(t * nh + h) * hd..][..hd].iter_mut().zip(&acc) {
                *o = x * inv + 0.0;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::Rng;

    /// A cache of `lens[s]` random positions per sequence, and a random query per (sequence, position).
    struct Case {
        nh: usize,
        nkv: usize,
        hd: usize,
        window: Option<usize>,
        kv: KvStore,
        tables: Vec<Vec<u32>>,
        tokens: Vec<u32>,
        q: Vec<f32>,
    }

    impl Case {
        fn new(nh: usize, nkv: usize, hd: usize, bs: usize, lens: &[usize], seed: u64) -> Self {
            let layers = 2;
            // Block ids interleaved across the sequences.
            let (n, most) = (lens.len(), lens.iter().max().map_or(0, |l| l.div_ceil(bs)));
            let mut kv = KvStore::new(bs, layers, nkv * hd, n * most);
            let tables: Vec<Vec<u32>> = (0..n)
                .map(|s| {
                    (0..lens[s].div_ceil(bs))
                        .map(|b| (b * n + s) as u32)
                        .collect()
                })
                .collect();
            let mut rng = Rng::new(seed);
            let mut row =
                |scale: f32| -> Vec<f32> { (0..nkv * hd).map(|_| rng.f32() * scale).collect() };
            for (s, &len) in lens.iter().enumerate() {
                for p in 0..len {
                    for layer in 0..layers {
                        let (k, v) = (row(2.0), row(1.0));
                        kv.write(tables[s][p / bs], layer, p % bs, &k, &v);
                    }
                }
            }
            Self {
                nh,
                nkv,
                hd,
                window: None,
                kv,
                tables,
                tokens: vec![0; 1024],
                q: (0..1024 * nh * hd).map(|_| rng.f32() * 2.0).collect(),
            }
        }

        /// Runs the batch `news` (sequence, first position, count) through `f`; returns the outputs.
        fn run(
            &self,
            news: &[(usize, usize, usize)],
            f: impl FnOnce(&Attn, &mut [f32]),
        ) -> Vec<f32> {
            let batch: Vec<SeqBatch> = news
                .iter()
                .map(|&(s, pos, n)| SeqBatch {
                    tokens: &self.tokens[..n],
                    pos,
                    block_table: &self.tables[s],
                    logits_from: None,
                    lora: None,
                })
                .collect();
            let where_: Vec<(usize, usize)> = batch
                .iter()
                .enumerate()
                .flat_map(|(i, b)| (b.pos..b.pos + b.tokens.len()).map(move |p| (i, p)))
                .collect();
            // Token t's query is fixed by its (sequence, position), whatever the batch.
            let qd = self.nh * self.hd;
            let mut q = Vec::new();
            for &(i, p) in &where_ {
                let at = (news[i].0 * 300 + p) % 1024 * qd;
                q.extend_from_slice(&self.q[at..at + qd]);
            }
            let a = Attn {
                n_head: self.nh,
                n_head_kv: self.nkv,
                head_dim: self.hd,
                scale: 1.0 / (self.hd as f32).sqrt(),
                window: self.window,
                layer: 1,
                q: &q,
                batch: &batch,
                where_: &where_,
                kv: &self.kv,
            };
            let mut out = vec![f32::NAN; q.len()];
            f(&a, &mut out);
            out
        }
    }

    fn tiers() -> Vec<Tier> {
        let mut t = vec![Tier::Generic];
        if simd_level().avx2() {
            t.push(Tier::Avx2);
        }
        if simd_level() == SimdLevel::Avx512Vnni {
            t.push(Tier::Avx512);
        }
        t
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Every tier, on one and two threads, equals the twin bit for bit.
    fn check(case: &Case, news: &[(usize, usize, usize)]) {
        let want = case.run(news, attention_reference);
        for pool in [ThreadPool::new(1), ThreadPool::new(2)] {
            for tier in tiers() {
                if tier == Tier::Avx512 && !case.hd.is_multiple_of(16) {
                    continue;
                }
                let got = case.run(news, |a, o| attention_on(tier, a, o, &pool));
                assert!(
                    bits(&got) == bits(&want),
                    "{tier:?}, hd {}, {} threads, window {:?}",
                    case.hd,
                    pool.n_threads(),
                    case.window
                );
            }
        }
    }

    #[test]
    fn tiled_equals_reference_bitwise() {
        // (heads, KV heads, head dim, block size): a 1.1B Llama, Gemma 3 270M, SmolLM2, an odd head dim.
        for (nh, nkv, hd, bs) in [
            (32, 4, 64, 16),
            (4, 1, 256, 7),
            (9, 3, 64, 16),
            (4, 2, 40, 5),
        ] {
            let mut case = Case::new(nh, nkv, hd, bs, &[150, 90, 200], 7 + hd as u64);
            // A prefill from 0, one mid-sequence (positions 70..90, crossing a chunk), a decode at 199.
            let news = [(0, 0, 150), (1, 70, 20), (2, 199, 1)];
            for window in [None, Some(37), Some(64)] {
                case.window = window;
                check(&case, &news);
            }
        }
    }

    #[test]
    fn reference_matches_exact_softmax() {
        let (nh, nkv, hd) = (8, 2, 64);
        let mut case = Case::new(nh, nkv, hd, 16, &[130], 3);
        case.window = Some(50);
        let news = [(0, 100, 30)];
        let got = case.run(&news, attention_reference);
        let f = |h: u16| half::f16::from_bits(h).to_f64();
        let table = &case.tables[0];
        for t in 0..30 {
            let pos = 100 + t;
            for h in 0..nh {
                let q = &case.q[(pos * nh + h) * hd..][..hd];
                let g = h / (nh / nkv);
                let keys = first_key(case.window, pos)..=pos;
                let mut w = Vec::new();
                for p in keys.clone() {
                    let (k, _) = case.kv.layer(table[p / 16], 1).unwrap();
                    let k = &k[(p % 16) * nkv * hd + g * hd..][..hd];
                    let s: f64 = q
                        .iter()
                        .zip(k)
                        .map(|(x, y)| round_f16(*x) as f64 * f(*y))
                        .sum();
                    w.push(s / (hd as f64).sqrt());
                }
                let mx = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = w.iter().map(|s| (s - mx).exp()).sum();
                for d in 0..hd {
                    let mut o = 0.0;
                    for (p, s) in keys.clone().zip(&w) {
                        let (_, v) = case.kv.layer(table[p / 16], 1).unwrap();
                        o += (s - mx).exp() / z * f(v[(p % 16) * nkv * hd + g * hd + d]);
                    }
                    let x = got[(t * nh + h) * hd + d] as f64;
                    assert!(
                        (x - o).abs() < 1e-5,
                        "token {t} head {h} dim {d}: {x} vs {o}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_query_does_not_depend_on_its_batch() {
        let (nh, nkv, hd) = (8, 1, 64);
        let mut case = Case::new(nh, nkv, hd, 16, &[300, 300], 5);
        case.window = Some(100);
        let pool = ThreadPool::new(2);
        let qd = nh * hd;
        for tier in tiers() {
            let run = |news: &[(usize, usize, usize)]| {
                case.run(news, |a, o| attention_on(tier, a, o, &pool))
            };
            // Position 207 of sequence 0: decoded alone, last of a batch of 8, inside a 40-token prefill that
            // shares the batch with another sequence.
            let alone = run(&[(0, 207, 1)]);
            let eight = run(&[(0, 200, 8)]);
            let mixed = run(&[(1, 250, 3), (0, 180, 40)]);
            assert_eq!(bits(&alone), bits(&eight[7 * qd..]), "{tier:?}");
            assert_eq!(
                bits(&alone),
                bits(&mixed[(3 + 27) * qd..][..qd]),
                "{tier:?}"
            );
        }
    }

    #[test]
    fn missing_blocks_read_as_zeros_and_tiles_split() {
        let case = Case::new(4, 1, 64, 16, &[40], 9);
        // Block table shorter than the positions (the forward pass refuses this; the kernel must not panic).
        let t = vec![case.tables[0][0]];
        let batch = [SeqBatch {
            tokens: &case.tokens[..1],
            pos: 39,
            block_table: &t,
            logits_from: None,
            lora: None,
        }];
        let a = Attn {
            n_head: 4,
            n_head_kv: 1,
            head_dim: 64,
            scale: 0.125,
            window: None,
            layer: 0,
            q: &case.q[..256],
            batch: &batch,
            where_: &[(0, 39)],
            kv: &case.kv,
        };
        let (mut got, mut want) = (vec![0f32; 256], vec![0f32; 256]);
        attention(&a, &mut got, &ThreadPool::new(2));
        attention_reference(&a, &mut want);
        assert_eq!(bits(&got), bits(&want));
        assert!(got.iter().all(|x| x.is_finite()));
        let w = [(0, 0), (0, 1), (0, 2), (1, 5), (1, 6), (0, 3)];
        assert_eq!(tiles(&w, 2), vec![3..5, 5..6, 2..3, 0..2]);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp16_equals_scalar_exp() {
        if simd_level() != SimdLevel::Avx512Vnni {
            return;
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        fn lanes(x: &[f32; 16]) -> [f32; 16] {
            use std::arch::x86_64::*;
            let mut o = [0f32; 16];
            // SAFETY: 16 f32 each way.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), x86::exp16(_mm512_loadu_ps(x.as_ptr()))) };
            o
        }
        for i in (-12_000..12_000).step_by(16) {
            let x: [f32; 16] = std::array::from_fn(|k| (i + k as i32) as f32 * 0.0075);
            // SAFETY: the CPU has AVX-512 (checked above).
            let y = unsafe { lanes(&x) };
            for (x, y) in x.iter().zip(y) {
                assert_eq!(y.to_bits(), exp(*x).to_bits(), "exp({x})");
                let e = (x.clamp(-87.0, 88.0) as f64).exp();
                assert!((y as f64 - e).abs() <= 3e-7 * e, "exp({x}) = {y}, want {e}");
            }
        }
    }
}
