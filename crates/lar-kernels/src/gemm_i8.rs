//! A register-blocked int8 GEMM for many activation rows against a Q8_0 weight (the encoder's projections), on
//! AVX-512 VNNI: `out[m][n] (op)= epilogue(Σ_b dw[n][b]·da[m][b]·Σ_{k∈b} qa[m][k]·qw[n][k])`, blocks of 32 along K
//! as Q8_0 has them, so the integers are those of the Q8_0 dot kernels.
//!
//! - Weights are repacked once ([`PackedQ8`]) into panels of 16 output columns: per 32-element block, eight 64-byte
//!   lines `[k/4][column][4 bytes]` (what one `vpdpbusd` multiplies), the 16 column scales, and the 16 columns'
//!   `-128·Σq` (see below).
//! - Activation rows are quantized once per matrix product ([`QActs`]): per block of 32 an f32 scale and the quants
//!   stored as unsigned bytes `q + 128` (`vpdpbusd` multiplies unsigned by signed bytes); the accumulator of each
//!   block starts at `-128·Σqw`, which takes the offset back out exactly.
//! - The microkernel keeps a tile of 4 rows × 32 columns in registers (8 i32 and 8 f32 accumulators): per block,
//!   8 weight loads and 16 broadcast activation words feed 64 `vpdpbusd`, then each tile converts, scales and
//!   accumulates in f32. Bias, erf-GELU or a residual add are applied as a tile is stored; [`gemm_quantized`]
//!   quantizes the tile instead (a tile row is one 32-element block), so the FFN's hidden layer is never f32.
//!
//! [`gemm_reference`] is the plain twin (same integers, block sums in f32 in the same order); the tests compare.

use crate::pool::{ThreadPool, split};
use crate::quant::{QK, SimdLevel, simd_level};
use crate::tensor::SyncPtr;

/// One 64-byte line of packed weights (aligned, so loads never split a cache line).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Lines per (panel, block): eight of quants, one of scales, one of offsets.
const LINES: usize = 10;
/// Output columns per panel.
const NR: usize = 16;

/// A Q8_0 weight (`n` output rows of `k`) repacked for [`gemm`].
pub struct PackedQ8 {
    pub n: usize,
    pub k: usize,
    lines: Vec<Line>,
}

impl PackedQ8 {
    /// Packs `n` Q8_0 rows of `k` elements (`k` a multiple of 32, `n` of 16), given as the rows' bytes one after
    /// another (34 bytes per block: f16 scale, 32 quants).
    pub fn from_q8_0(data: &[u8], n: usize, k: usize) -> Self {
        assert!(
            k.is_multiple_of(QK) && n.is_multiple_of(NR),
            "packed Q8_0 shape {n}x{k}"
        );
        let nb = k / QK;
        let rb = nb * 34;
        assert_eq!(data.len(), n * rb, "Q8_0 rows");
        let mut lines = vec![Line([0; 64]); n / NR * nb * LINES];
        for p in 0..n / NR {
            for b in 0..nb {
                let l = &mut lines[(p * nb + b) * LINES..][..LINES];
                for c in 0..NR {
                    let blk = &data[(p * NR + c) * rb + b * 34..][..34];
                    let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
                    let q = &blk[2..];
                    for g in 0..8 {
                        l[g].0[c * 4..c * 4 + 4].copy_from_slice(&q[g * 4..g * 4 + 4]);
                    }
                    let sum: i32 = q.iter().map(|&v| v as i8 as i32).sum();
                    l[8].0[c * 4..c * 4 + 4].copy_from_slice(&d.to_le_bytes());
                    l[9].0[c * 4..c * 4 + 4].copy_from_slice(&(-128 * sum).to_le_bytes());
                }
            }
        }
        Self { n, k, lines }
    }

    /// Quant `kk` of column `c` in block `b`, its scale and offset (for the reference).
    fn q(&self, c: usize, kk: usize) -> i8 {
        let (p, cc, b, j) = (c / NR, c % NR, kk / QK, kk % QK);
        self.lines[(p * (self.k / QK) + b) * LINES + j / 4].0[cc * 4 + j % 4] as i8
    }

    fn scale(&self, c: usize, b: usize) -> f32 {
        let l = &self.lines[((c / NR) * (self.k / QK) + b) * LINES + 8].0;
        f32::from_le_bytes(l[c % NR * 4..c % NR * 4 + 4].try_into().expect("4 bytes"))
    }
}

/// Activation rows quantized for [`gemm`]: `m` rows of `k`, quants as `q + 128`, one f32 scale per block.
#[derive(Default)]
pub struct QActs {
    pub m: usize,
    pub k: usize,
    q: Vec<u8>,
    d: Vec<f32>,
}

/// One row's blocks: `d = amax/127`, `q = round(x/d)` (ties to even), stored `q + 128`.
#[inline(always)]
fn quantize_row(x: &[f32], q: &mut [u8], d: &mut [f32]) {
    for ((xb, qb), db) in x.chunks_exact(QK).zip(q.chunks_exact_mut(QK)).zip(d) {
        let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
        *db = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        for (o, v) in qb.iter_mut().zip(xb) {
            *o = ((v * id).round_ties_even() as i32 + 128) as u8;
        }
    }
}

impl QActs {
    /// Quantizes `m` rows of `k` (row-major `x`), rows shared out over `pool`.
    pub fn quantize(&mut self, x: &[f32], m: usize, k: usize, pool: &ThreadPool) {
        assert!(k.is_multiple_of(QK) && x.len() >= m * k);
        let nb = k / QK;
        (self.m, self.k) = (m, k);
        self.q.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        let (qp, dp) = (SyncPtr(self.q.as_mut_ptr()), SyncPtr(self.d.as_mut_ptr()));
        let tasks = if m < 16 { 1 } else { pool.n_threads() };
        pool.run(tasks, &|t| {
            let r = split(m, tasks, t);
            // SAFETY: the row ranges of the tasks are disjoint and inside the buffers sized above.
            let (q, d) = unsafe {
                (
                    std::slice::from_raw_parts_mut(qp.get().add(r.start * k), r.len() * k),
                    std::slice::from_raw_parts_mut(dp.get().add(r.start * nb), r.len() * nb),
                )
            };
            let x = &x[r.start * k..r.end * k];
            #[cfg(target_arch = "x86_64")]
            if simd_level() == SimdLevel::Avx512Vnni {
                // SAFETY: the CPU has AVX-512 (simd_level); the three slices hold the same rows.
                return unsafe { x86::quantize(x, q, d) };
            }
            for ((x, q), d) in x
                .chunks_exact(k)
                .zip(q.chunks_exact_mut(k))
                .zip(d.chunks_exact_mut(nb))
            {
                quantize_row(x, q, d);
            }
        });
    }
}

/// What happens to a result as it is stored.
#[derive(Clone, Copy)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    /// erf GELU after the bias ([`crate::bert_ops::gelu_fast`]).
    pub gelu: bool,
    /// Add to what `out` holds instead of overwriting it.
    pub accumulate: bool,
}

/// Where a tile's results go: f32 rows, or straight into the quantized input of the next product (whole blocks:
/// a tile is 32 columns wide).
#[derive(Clone, Copy)]
enum Sink {
    F32 {
        out: SyncPtr<f32>,
        ldc: usize,
    },
    Q8 {
        q: SyncPtr<u8>,
        d: SyncPtr<f32>,
        k: usize,
    },
}

/// Whether this CPU runs [`gemm`] (AVX-512 with VNNI).
pub fn available() -> bool {
    simd_level() == SimdLevel::Avx512Vnni
}

/// `a` (m × k) times `w` transposed into `out` (row `i` at `out[i * ldc..]`, `w.n` columns), through `epi`.
/// Requires [`available`].
pub fn gemm(
    a: &QActs,
    w: &PackedQ8,
    out: &mut [f32],
    ldc: usize,
    epi: Epilogue,
    pool: &ThreadPool,
) {
    assert!(available(), "gemm_i8 needs AVX-512 VNNI");
    assert_eq!(a.k, w.k, "inner dimensions");
    assert!(ldc >= w.n && out.len() >= a.m.saturating_sub(1) * ldc + w.n);
    assert!(epi.bias.is_none_or(|b| b.len() >= w.n));
    run_tasks(
        a,
        w,
        Sink::F32 {
            out: SyncPtr(out.as_mut_ptr()),
            ldc,
        },
        epi,
        pool,
    );
}

/// [`gemm`] with the results quantized as [`QActs::quantize`] would (same rounding, from the same f32 values as
/// [`gemm`] stores) into `out`, never stored as f32: the input of the next product. `w.n` must be a multiple of 32;
/// no accumulate.
pub fn gemm_quantized(a: &QActs, w: &PackedQ8, out: &mut QActs, epi: Epilogue, pool: &ThreadPool) {
    assert!(available(), "gemm_i8 needs AVX-512 VNNI");
    assert_eq!(a.k, w.k, "inner dimensions");
    assert!(w.n.is_multiple_of(2 * NR) && !epi.accumulate);
    assert!(epi.bias.is_none_or(|b| b.len() >= w.n));
    (out.m, out.k) = (a.m, w.n);
    out.q.resize(a.m * w.n, 0);
    out.d.resize(a.m * w.n / QK, 0.0);
    let sink = Sink::Q8 {
        q: SyncPtr(out.q.as_mut_ptr()),
        d: SyncPtr(out.d.as_mut_ptr()),
        k: w.n,
    };
    run_tasks(a, w, sink, epi, pool);
}

fn run_tasks(a: &QActs, w: &PackedQ8, sink: Sink, epi: Epilogue, pool: &ThreadPool) {
    if a.m == 0 {
        return;
    }
    // Tasks: chunks of rows (a chunk's activations stay in L2 while every panel passes) times groups of panels
    // where there are too few chunks to keep every thread busy.
    const ROWS: usize = 64;
    let chunks = a.m.div_ceil(ROWS);
    let pairs = w.n.div_ceil(2 * NR);
    let groups = (pool.n_threads() * 4).div_ceil(chunks).min(pairs).max(1);
    pool.run(chunks * groups, &|t| {
        let (c, g) = (t / groups, t % groups);
        let rows = c * ROWS..((c + 1) * ROWS).min(a.m);
        let pr = split(pairs, groups, g);
        let panels = pr.start * 2..(pr.end * 2).min(w.n / NR);
        // SAFETY: tasks write disjoint (row, column) tiles of `out`, inside it (asserted above); the CPU has the
        // features (asserted above).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            x86::run(a, w, sink, rows, panels, epi)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (rows, panels, sink);
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Rows per tile.
    const MR: usize = 4;

    /// [`quantize_row`] over whole blocks: the same rounding (`vcvtps2dq` rounds to nearest even).
    ///
    /// # Safety
    /// AVX-512 F/BW; `q` has 32 bytes and `d` one scale per 32 elements of `x`.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quantize(x: &[f32], q: &mut [u8], d: &mut [f32]) {
        assert!(q.len() >= x.len() && d.len() >= x.len() / QK);
        for (b, db) in d.iter_mut().enumerate().take(x.len() / QK) {
            // SAFETY: block b is inside all three (asserted).
            unsafe {
                let p = x.as_ptr().add(b * QK);
                let (v0, v1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                block(v0, v1, q.as_mut_ptr().add(b * QK), db);
            }
        }
    }

    /// One block of 32 (`v0`, `v1`) quantized: the scale to `d`, `q + 128` to the 32 bytes at `q`.
    ///
    /// # Safety
    /// AVX-512 F/BW; `q` writable for 32 bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl")]
    unsafe fn block(v0: __m512, v1: __m512, q: *mut u8, d: &mut f32) {
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        *d = amax / 127.0;
        let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let off = _mm512_set1_epi32(128);
        for (h, v) in [v0, v1].into_iter().enumerate() {
            let i = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, id)), off);
            // SAFETY: the caller's.
            unsafe { _mm_storeu_si128(q.add(h * 16) as *mut __m128i, _mm512_cvtepi32_epi8(i)) };
        }
    }

    /// The tiles of `rows` × `panels`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI; `out` valid for the rows and columns named, written by no one else meanwhile.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn run(
        a: &QActs,
        w: &PackedQ8,
        sink: Sink,
        rows: std::ops::Range<usize>,
        panels: std::ops::Range<usize>,
        epi: Epilogue,
    ) {
        let mut p = panels.start;
        while p < panels.end {
            let np = (panels.end - p).min(2);
            let mut m = rows.start;
            while m < rows.end {
                let nm = (rows.end - m).min(MR);
                // SAFETY: as this function's.
                unsafe {
                    match (nm, np) {
                        (4, 2) => tile::<4, 2>(a, w, sink, m, p, epi),
                        (3, 2) => tile::<3, 2>(a, w, sink, m, p, epi),
                        (2, 2) => tile::<2, 2>(a, w, sink, m, p, epi),
                        (1, 2) => tile::<1, 2>(a, w, sink, m, p, epi),
                        (4, _) => tile::<4, 1>(a, w, sink, m, p, epi),
                        (3, _) => tile::<3, 1>(a, w, sink, m, p, epi),
                        (2, _) => tile::<2, 1>(a, w, sink, m, p, epi),
                        _ => tile::<1, 1>(a, w, sink, m, p, epi),
                    }
                }
                m += nm;
            }
            p += np;
        }
    }

    /// Rows `m0..m0 + M` × panels `p0..p0 + P`.
    #[inline]
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const M: usize, const P: usize>(
        a: &QActs,
        w: &PackedQ8,
        sink: Sink,
        m0: usize,
        p0: usize,
        epi: Epilogue,
    ) {
        let (k, nb) = (a.k, a.k / QK);
        // SAFETY (whole body): rows m0..m0+M < a.m and panels p0..p0+P < w.n/16 (the caller's ranges), so every
        // read is inside the quants, scales and lines; `out` as the caller promises.
        unsafe {
            let qa = a.q.as_ptr().add(m0 * k);
            let da = a.d.as_ptr().add(m0 * nb);
            let wl: [*const Line; P] =
                std::array::from_fn(|p| w.lines.as_ptr().add((p0 + p) * nb * LINES));
            let mut acc = [[_mm512_setzero_ps(); P]; M];
            for b in 0..nb {
                let mut iacc = [[_mm512_setzero_si512(); P]; M];
                let comp: [__m512i; P] =
                    std::array::from_fn(
                        |p| _mm512_load_si512(wl[p].add(b * LINES + 9) as *const _),
                    );
                for r in iacc.iter_mut() {
                    *r = comp;
                }
                for g in 0..8 {
                    let wv: [__m512i; P] = std::array::from_fn(|p| {
                        _mm512_load_si512(wl[p].add(b * LINES + g) as *const _)
                    });
                    for (mi, r) in iacc.iter_mut().enumerate() {
                        let word = (qa.add(mi * k + b * QK + g * 4) as *const i32).read_unaligned();
                        let av = _mm512_set1_epi32(word);
                        for p in 0..P {
                            r[p] = _mm512_dpbusd_epi32(r[p], av, wv[p]);
                        }
                    }
                }
                let dw: [__m512; P] =
                    std::array::from_fn(|p| _mm512_load_ps(wl[p].add(b * LINES + 8) as *const f32));
                for mi in 0..M {
                    let s = _mm512_set1_ps(*da.add(mi * nb + b));
                    for p in 0..P {
                        let sc = _mm512_mul_ps(dw[p], s);
                        acc[mi][p] =
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[mi][p]), sc, acc[mi][p]);
                    }
                }
            }
            for (mi, row) in acc.iter().enumerate() {
                let mut vs = *row;
                for (p, v) in vs.iter_mut().enumerate() {
                    let col = (p0 + p) * NR;
                    if let Some(bias) = epi.bias {
                        *v = _mm512_add_ps(*v, _mm512_loadu_ps(bias.as_ptr().add(col)));
                    }
                    if epi.gelu {
                        *v = crate::bert_ops::x86::gelu16(*v);
                    }
                }
                match sink {
                    Sink::F32 { out, ldc } => {
                        for (p, &v) in vs.iter().enumerate() {
                            let dst = out.get().add((m0 + mi) * ldc + (p0 + p) * NR);
                            let v = if epi.accumulate {
                                _mm512_add_ps(v, _mm512_loadu_ps(dst))
                            } else {
                                v
                            };
                            _mm512_storeu_ps(dst, v);
                        }
                    }
                    Sink::Q8 { q, d, k } => {
                        // Whole blocks: P is 2 and p0 even where the columns are a multiple of 32.
                        debug_assert!(P == 2 && p0.is_multiple_of(2));
                        let (row, b) = (m0 + mi, p0 * NR / QK);
                        block(
                            vs[0],
                            vs[P - 1],
                            q.get().add(row * k + b * QK),
                            &mut *d.get().add(row * k / QK + b),
                        );
                    }
                }
            }
        }
    }
}

/// The plain twin of [`gemm`]: the same integer block sums, scaled and summed in f32 block by block.
pub fn gemm_reference(a: &QActs, w: &PackedQ8, out: &mut [f32], ldc: usize, epi: Epilogue) {
    let nb = a.k / QK;
    for m in 0..a.m {
        for n in 0..w.n {
            let mut acc = 0f32;
            for b in 0..nb {
                let mut s = 0i32;
                for j in 0..QK {
                    let kk = b * QK + j;
                    s += (a.q[m * a.k + kk] as i32 - 128) * w.q(n, kk) as i32;
                }
                acc += s as f32 * (w.scale(n, b) * a.d[m * nb + b]);
            }
            if let Some(bias) = epi.bias {
                acc += bias[n];
            }
            if epi.gelu {
                acc = crate::bert_ops::gelu_erf(acc);
            }
            let o = &mut out[m * ldc + n];
            *o = if epi.accumulate { *o + acc } else { acc };
        }
    }
}

/// The plain twin of [`QActs::quantize`].
pub fn quantize_reference(x: &[f32], m: usize, k: usize) -> QActs {
    let mut a = QActs {
        m,
        k,
        q: vec![0; m * k],
        d: vec![0.0; m * k / QK],
    };
    for r in 0..m {
        quantize_row(
            &x[r * k..(r + 1) * k],
            &mut a.q[r * k..(r + 1) * k],
            &mut a.d[r * k / QK..(r + 1) * k / QK],
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn q8_0_rows(x: &[f32]) -> Vec<u8> {
        let mut out = Vec::new();
        crate::quant::reference::quantize_q8_0(x, &mut out);
        out
    }

    #[test]
    fn gemm_matches_reference() {
        if !available() {
            eprintln!("skipped: no AVX-512 VNNI");
            return;
        }
        let pool = ThreadPool::new(2);
        let mut seed = 7;
        for &(m, n, k) in &[(1, 16, 32), (7, 48, 64), (70, 96, 384), (133, 160, 96)] {
            let x: Vec<f32> = (0..m * k).map(|_| rand(&mut seed) * 3.0).collect();
            let wf: Vec<f32> = (0..n * k).map(|_| rand(&mut seed) * 0.2).collect();
            let bias: Vec<f32> = (0..n).map(|_| rand(&mut seed)).collect();
            let w = PackedQ8::from_q8_0(&q8_0_rows(&wf), n, k);
            let mut a = QActs::default();
            a.quantize(&x, m, k, &pool);
            let r = quantize_reference(&x, m, k);
            assert_eq!(a.q, r.q, "quants");
            assert_eq!(a.d, r.d, "scales");
            for (gelu, accumulate) in [(false, false), (true, false), (false, true)] {
                let epi = Epilogue {
                    bias: Some(&bias),
                    gelu,
                    accumulate,
                };
                let ldc = n + 3;
                let init: Vec<f32> = (0..m * ldc).map(|_| rand(&mut seed)).collect();
                let (mut got, mut want) = (init.clone(), init);
                gemm(&a, &w, &mut got, ldc, epi, &pool);
                gemm_reference(&r, &w, &mut want, ldc, epi);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "{m}x{n}x{k} gelu {gelu} acc {accumulate} at {i}: {g} vs {e}"
                    );
                }
            }
            // Quantized straight from the tile: what quantizing gemm's f32 output gives, exactly.
            if n.is_multiple_of(32) {
                let epi = Epilogue {
                    bias: Some(&bias),
                    gelu: true,
                    accumulate: false,
                };
                let mut f = vec![0f32; m * n];
                gemm(&a, &w, &mut f, n, epi, &pool);
                let (mut want, mut got) = (QActs::default(), QActs::default());
                want.quantize(&f, m, n, &pool);
                gemm_quantized(&a, &w, &mut got, epi, &pool);
                assert!(
                    got.q == want.q && got.d == want.d,
                    "{m}x{n}x{k} quantized sink"
                );
            }
            // The integers are those of the Q8_0 dot kernel: compare against it on the unfused product.
            let mut act = Vec::new();
            crate::quant::reference::quantize_q8_0(&x[..k], &mut act);
            let wq = q8_0_rows(&wf);
            let mut got = vec![0f32; n];
            let epi = Epilogue {
                bias: None,
                gelu: false,
                accumulate: false,
            };
            gemm_reference(&quantize_reference(&x[..k], 1, k), &w, &mut got, n, epi);
            let dot = crate::quant::reference::dot_fn(crate::quant::GgmlType::Q8_0);
            for (c, g) in got.iter().enumerate() {
                let e = dot(k, &wq[c * k / QK * 34..(c + 1) * k / QK * 34], &act);
                assert!(
                    (g - e).abs() <= 2e-3 * (1.0 + e.abs()),
                    "vs Q8_0 dot: {g} vs {e}"
                );
            }
        }
    }
}
