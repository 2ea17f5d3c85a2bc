//! The transposed product `dx += dy · W` on AMX tiles: the gradient of a frozen projection's input, which
//! training's backward needs and no serving kernel computes. `dy` is `[n, rows]`, `W` `[rows, cols]` (given a row
//! at a time in f32, whatever its type in the file), `dx` `[n, cols]`.
//!
//! As `TDPBF16PS` sees it, the tokens are the tiles' rows (16 per group), the weight's rows the sums' K, and its
//! columns the outputs: the second operand is `W` itself, each 32-bit lane the same column of two consecutive rows.
//! A block of `W`'s rows is converted into that layout once (the threads share the rows out), then every token
//! group meets it (the threads share the groups out), its sums loaded from `dx`, added to and stored back.
//!
//! Precision is [`super::amx`]'s: `dy` is split into two BF16 planes `hi + lo` (16 bits of each value), a weight
//! value too unless it is a BF16 value already (BF16 weights are exact in `hi`); the sums are
//! `w_hi·g_hi + w_hi·g_lo (+ w_lo·g_hi)`, each product exact in f32, so a result is within ~2^-16 of the sum of the
//! products' sizes of the f32 result. Training's reference twin (`lar_train::linear::frozen_backward_reference`)
//! and this module's test hold it to that.

use crate::pool::ThreadPool;
#[cfg(target_arch = "x86_64")]
use crate::pool::split;
#[cfg(target_arch = "x86_64")]
use crate::tensor::SyncPtr;

/// Gradient rows (tokens) from which the product goes to AMX.
pub const MIN_ROWS: usize = 16;
/// Rows of a tile: tokens of a group, and lines of a weight tile; also the f32 columns of a sum tile.
#[cfg(target_arch = "x86_64")]
const TILE: usize = 16;
/// K (weight rows) per tile product: 32 BF16 = 64 bytes per tile row.
#[cfg(target_arch = "x86_64")]
const CHUNK: usize = 32;
/// Bytes of one 16 × 64-byte tile.
#[cfg(target_arch = "x86_64")]
const TILE_BYTES: usize = 1024;
/// Bytes of converted weight rows per block (all the block's columns; the threads read them from L2 or L3 one
/// pair of column tiles at a time).
#[cfg(target_arch = "x86_64")]
const BLOCK_BYTES: usize = 4 << 20;

/// Whether [`accumulate`] takes `n` gradient rows of a weight `cols` wide: AMX-BF16 granted ([`super::amx`]),
/// `cols` whole tiles of 16, at least [`MIN_ROWS`] rows.
pub fn fits(n: usize, cols: usize) -> bool {
    n >= MIN_ROWS && cols > 0 && cols.is_multiple_of(16) && super::amx::available()
}

/// `dx[t] += Σ_r dy[t·rows + r] · W[r]` for every gradient row `t`, where `row(r, out)` writes `W`'s row `r` in
/// f32 (`cols` values); `exact`: every such value is a BF16 value (so its low half is zero and skipped).
///
/// # Panics
/// If [`fits`] is false for `(dy.len() / rows, cols)` or the slices' lengths disagree.
pub fn accumulate(
    rows: usize,
    cols: usize,
    exact: bool,
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    dy: &[f32],
    dx: &mut [f32],
    pool: &ThreadPool,
) {
    assert!(rows > 0, "a weight with rows");
    let n = dy.len() / rows;
    assert!(fits(n, cols), "an AMX transposed product of {n} x {cols}");
    assert_eq!(dy.len(), n * rows, "gradient rows");
    assert_eq!(dx.len(), n * cols, "input gradient rows");
    #[cfg(target_arch = "x86_64")]
    run(rows, cols, exact, row, dy, dx, pool);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (exact, row, pool);
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The caller's split gradient planes and converted weight block (one block's worth each), kept between
    /// calls (no mapping and page faults per call).
    static SCRATCH: std::cell::Cell<(Vec<u16>, Vec<super::panels::Line>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// The shape of one product: what the conversion writes and the kernel reads.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Layout {
    cols: usize,
    /// Column tiles (16 columns each).
    col_tiles: usize,
    /// `dy`'s rows padded to whole groups (zeros).
    n_pad: usize,
    /// Weight rows per block (whole chunks): the K of the gradient planes.
    block: usize,
    /// Tiles per (chunk, column tile) of converted weights: 1 (`hi`), or 2 (`hi`, `lo`).
    halves: usize,
}

#[cfg(target_arch = "x86_64")]
impl Layout {
    /// Byte offset of the converted tile (column tile `j`, chunk `c`, half `h`) in a block of `chunks` chunks.
    fn b_tile(&self, chunks: usize, j: usize, c: usize, h: usize) -> usize {
        ((j * chunks + c) * self.halves + h) * TILE_BYTES
    }
}

#[cfg(target_arch = "x86_64")]
fn run(
    rows: usize,
    cols: usize,
    exact: bool,
    row: &(dyn Fn(usize, &mut [f32]) + Sync),
    dy: &[f32],
    dx: &mut [f32],
    pool: &ThreadPool,
) {
    let n = dy.len() / rows;
    let halves = if exact { 1 } else { 2 };
    let k_pad = rows.next_multiple_of(CHUNK);
    let block = (BLOCK_BYTES / (cols * 2 * halves) / CHUNK * CHUNK).clamp(CHUNK, k_pad);
    let lay = Layout {
        cols,
        col_tiles: cols / TILE,
        n_pad: n.next_multiple_of(TILE),
        block,
        halves,
    };
    let (mut planes, mut conv) = SCRATCH.take();
    // The block's gradient columns as hi and lo planes (zero past its rows and the weight's), and its weight rows
    // converted.
    let plane = lay.n_pad * block;
    planes.clear();
    planes.resize(2 * plane, 0);
    conv.resize(
        lay.b_tile(block / CHUNK, lay.col_tiles, 0, 0) / 64,
        super::panels::Line([0; 64]),
    );
    let (pp, cp) = (
        SyncPtr(planes.as_mut_ptr()),
        SyncPtr(conv.as_mut_ptr() as *mut u8),
    );
    let dxp = SyncPtr(dx.as_mut_ptr());
    for start in (0..k_pad).step_by(block) {
        let kb = block.min(k_pad - start);
        let (chunks, pairs) = (kb / CHUNK, kb / 2);
        let live = kb.min(rows - start.min(rows));
        let tasks = pool.n_threads().min(pairs);
        pool.run(tasks, &|task| {
            for t in split(n, tasks, task) {
                // SAFETY: row t of both planes is this task's only, inside the buffer sized above.
                let (hi, lo) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(pp.get().add(t * block), kb),
                        std::slice::from_raw_parts_mut(pp.get().add(plane + t * block), kb),
                    )
                };
                // Past the weight's rows (the last block's padding): zeros, not the last block's values.
                hi[live..].fill(0);
                lo[live..].fill(0);
                super::amx::split_row(
                    &dy[t * rows + start..][..live],
                    &mut hi[..live],
                    &mut lo[..live],
                );
            }
            let mut two = vec![0f32; 2 * cols];
            for p in split(pairs, tasks, task) {
                let (a, b) = two.split_at_mut(cols);
                for (r, out) in [(start + 2 * p, a), (start + 2 * p + 1, b)] {
                    if r < rows {
                        row(r, out);
                    } else {
                        out.fill(0.0);
                    }
                }
                // SAFETY: AMX granted (fits), so AVX-512; pair p's lines are this task's only, inside `conv`.
                unsafe { convert_pair(&lay, chunks, p, &two, cp.get()) };
            }
        });
        let groups = lay.n_pad / TILE;
        let tasks = pool.n_threads().min(groups);
        pool.run(tasks, &|task| {
            let mine = split(groups, tasks, task);
            let a = pp.get() as *const u8;
            // SAFETY: AMX granted; the groups `mine` of dx are this task's only; the planes and the block are
            // read-only meanwhile and sized for every tile read (whole groups, whole chunks).
            unsafe { products(&lay, chunks, mine, a, plane * 2, cp.get(), dxp.get(), n) };
        });
    }
    SCRATCH.set((planes, conv));
}

/// Weight rows `start + 2p` and `start + 2p + 1` (`two`: the first then the second, f32) into their line of the
/// block: line `p % 16` of chunk `p / 16`'s tile in every column tile, each lane the two rows' values of a column.
///
/// # Safety
/// AVX-512 F/BW; `dst` holds the block's converted tiles for `chunks` chunks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn convert_pair(lay: &Layout, chunks: usize, p: usize, two: &[f32], dst: *mut u8) {
    use super::amx::{back, pairs, to_bf16};
    use std::arch::x86_64::*;
    let (c, line) = (p / TILE, p % TILE);
    let (a, b) = two.split_at(lay.cols);
    for j in 0..lay.col_tiles {
        // SAFETY: the caller's; 16 values of each row at column tile j.
        unsafe {
            let va = _mm512_loadu_ps(a.as_ptr().add(j * TILE));
            let vb = _mm512_loadu_ps(b.as_ptr().add(j * TILE));
            let (ha, hb) = (to_bf16(va), to_bf16(vb));
            let at = dst.add(lay.b_tile(chunks, j, c, 0) + line * 64);
            _mm512_storeu_si512(at as *mut __m512i, pairs(ha, hb));
            if lay.halves == 2 {
                let la = to_bf16(_mm512_sub_ps(va, back(ha)));
                let lb = to_bf16(_mm512_sub_ps(vb, back(hb)));
                _mm512_storeu_si512(at.add(TILE_BYTES) as *mut __m512i, pairs(la, lb));
            }
        }
    }
}

/// A 16×16 f32 tile's bytes, for a group with fewer than 16 gradient rows.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct Tail([[f32; TILE]; TILE]);

/// The block's products for token groups `mine`: per pair of column tiles and pair of groups, four sums loaded
/// from `dx` into tmm0..tmm3, every chunk of the block added, stored back.
///
/// # Safety
/// AMX granted; as the caller's closure says.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn products(
    lay: &Layout,
    chunks: usize,
    mine: std::ops::Range<usize>,
    a: *const u8,
    a_lo: usize,
    b: *const u8,
    dx: *mut f32,
    n: usize,
) {
    let mut tail = Tail([[0.0; TILE]; TILE]);
    let k = Kernel {
        chunks,
        a_stride: lay.block * 2,
        a_lo,
        b_next: lay.b_tile(chunks, 1, 0, 0),
        b_chunk: lay.b_tile(chunks, 0, 1, 0),
    };
    // SAFETY (whole body): the caller's.
    unsafe {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) super::amx::CONFIG.0.as_ptr(), options(nostack, readonly));
        for j in (0..lay.col_tiles).step_by(2) {
            let nj = (lay.col_tiles - j).min(2);
            let bj = b.add(lay.b_tile(chunks, j, 0, 0));
            let mut g = mine.start;
            while g < mine.end {
                let ng = (mine.end - g).min(2);
                let sum = |gi: usize, ji: usize| {
                    let rows = n.saturating_sub((g + gi) * TILE).min(TILE);
                    (dx.add((g + gi) * TILE * lay.cols + (j + ji) * TILE), rows)
                };
                for gi in 0..ng {
                    for ji in 0..nj {
                        let (at, rows) = sum(gi, ji);
                        load_sum(2 * gi + ji, at, lay.cols, rows, &mut tail);
                    }
                }
                let x = a.add(g * TILE * k.a_stride);
                match (nj, ng, lay.halves) {
                    (2, 2, 1) => k.block::<true, true, true>(x, bj),
                    (2, 1, 1) => k.block::<true, true, false>(x, bj),
                    (1, 2, 1) => k.block::<true, false, true>(x, bj),
                    (1, 1, 1) => k.block::<true, false, false>(x, bj),
                    (2, 2, _) => k.block::<false, true, true>(x, bj),
                    (2, 1, _) => k.block::<false, true, false>(x, bj),
                    (1, 2, _) => k.block::<false, false, true>(x, bj),
                    _ => k.block::<false, false, false>(x, bj),
                }
                for gi in 0..ng {
                    for ji in 0..nj {
                        let (at, rows) = sum(gi, ji);
                        store_sum(2 * gi + ji, at, lay.cols, rows, &mut tail);
                    }
                }
                g += 2;
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

/// The strides of one block's products.
#[cfg(target_arch = "x86_64")]
struct Kernel {
    chunks: usize,
    /// Bytes between gradient rows, and from the `hi` plane to the `lo` one.
    a_stride: usize,
    a_lo: usize,
    /// Bytes from one column tile's converted tiles to the next's, and from one chunk's to the next's.
    b_next: usize,
    b_chunk: usize,
}

#[cfg(target_arch = "x86_64")]
impl Kernel {
    /// Adds every chunk's products to the sums in tmm0 (group 0, column tile 0), tmm1 (group 0, column tile 1),
    /// tmm2 (group 1, column tile 0), tmm3 (group 1, column tile 1): gradient tiles in tmm4/tmm5 (groups), weight
    /// tiles in tmm6/tmm7 (column tiles). Per chunk `hi·hi`, the gradient's `lo` against the weights' `hi`, and
    /// unless `EXACT` the weights' `lo` against the gradient's `hi`, loaded again.
    #[inline(always)]
    unsafe fn block<const EXACT: bool, const J2: bool, const G2: bool>(
        &self,
        x: *const u8,
        b: *const u8,
    ) {
        use super::amx::tile_load;
        let st = self.a_stride;
        let x1 = x.wrapping_add(TILE * st);
        // SAFETY: the caller's: tiles at these places.
        unsafe {
            for c in 0..self.chunks {
                let (a0, a1) = (x.add(c * 64), x1.wrapping_add(c * 64));
                let w0 = b.add(c * self.b_chunk);
                let w1 = w0.wrapping_add(self.b_next);
                tile_load!("4", a0, st);
                if G2 {
                    tile_load!("5", a1, st);
                }
                tile_load!("6", w0, 64usize);
                if J2 {
                    tile_load!("7", w1, 64usize);
                }
                four::<J2, G2>();
                tile_load!("4", a0.add(self.a_lo), st);
                if G2 {
                    tile_load!("5", a1.add(self.a_lo), st);
                }
                four::<J2, G2>();
                if !EXACT {
                    tile_load!("4", a0, st);
                    if G2 {
                        tile_load!("5", a1, st);
                    }
                    tile_load!("6", w0.add(TILE_BYTES), 64usize);
                    if J2 {
                        tile_load!("7", w1.add(TILE_BYTES), 64usize);
                    }
                    four::<J2, G2>();
                }
            }
        }
    }
}

/// The products of the loaded tiles into the sums.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn four<const J2: bool, const G2: bool>() {
    use super::amx::tile_dp;
    // SAFETY: the caller's: the tiles are loaded.
    unsafe {
        tile_dp!("0", "4", "6");
        if J2 {
            tile_dp!("1", "4", "7");
        }
        if G2 {
            tile_dp!("2", "5", "6");
            if J2 {
                tile_dp!("3", "5", "7");
            }
        }
    }
}

/// Loads sum tile `t` (tmm0..tmm3) from `rows` rows of 16 f32 at `at`, `cols` apart (through `tail` when fewer
/// than 16).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn load_sum(t: usize, at: *const f32, cols: usize, rows: usize, tail: &mut Tail) {
    use super::amx::tile_load;
    // SAFETY: the caller's: `rows` rows of 16 values at `at`, `cols` apart.
    unsafe {
        let (src, stride) = if rows == TILE {
            (at, cols * 4)
        } else {
            for (m, r) in tail.0.iter_mut().enumerate() {
                if m < rows {
                    std::ptr::copy_nonoverlapping(at.add(m * cols), r.as_mut_ptr(), TILE);
                } else {
                    *r = [0.0; TILE];
                }
            }
            (tail.0.as_ptr() as *const f32, TILE * 4)
        };
        match t {
            0 => tile_load!("0", src, stride),
            1 => tile_load!("1", src, stride),
            2 => tile_load!("2", src, stride),
            _ => tile_load!("3", src, stride),
        }
    }
}

/// Stores sum tile `t` back to where [`load_sum`] read it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_sum(t: usize, at: *mut f32, cols: usize, rows: usize, tail: &mut Tail) {
    use super::amx::tile_store;
    // SAFETY: the caller's: `rows` rows of 16 values at `at`, `cols` apart, are this task's.
    unsafe {
        let (dst, stride) = if rows == TILE {
            (at, cols * 4)
        } else {
            (tail.0.as_mut_ptr() as *mut f32, TILE * 4)
        };
        match t {
            0 => tile_store!("0", dst, stride),
            1 => tile_store!("1", dst, stride),
            2 => tile_store!("2", dst, stride),
            _ => tile_store!("3", dst, stride),
        }
        if rows < TILE {
            for (m, r) in tail.0.iter().take(rows).enumerate() {
                std::ptr::copy_nonoverlapping(r.as_ptr(), at.add(m * cols), TILE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::Rng;

    /// Against f32 sums, with `dx` holding values already: every token count around a group (tails, one and
    /// two groups, odd group counts split over two threads), weight row counts short of a chunk and across
    /// blocks, one and several column tiles, exact (BF16-valued) weights and not; within 2^-14 of the sum of the
    /// products' sizes. Skipped where the CPU has no AMX.
    #[test]
    fn amx_transposed_matches_f32_sums() {
        if !fits(MIN_ROWS, 16) {
            eprintln!("no AMX on this CPU (or LAR_AMX=0): skipped");
            return;
        }
        let mut rng = Rng::new(5);
        let pool = ThreadPool::new(2);
        for (rows, cols) in [(45, 16), (64, 48), (300, 96), (2100, 1024)] {
            for exact in [true, false] {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|_| {
                        let v = rng.f32() * 0.3;
                        if exact {
                            f32::from_bits(v.to_bits() & 0xffff_0000)
                        } else {
                            v
                        }
                    })
                    .collect();
                let row = |r: usize, out: &mut [f32]| out.copy_from_slice(&w[r * cols..][..cols]);
                for n in [16, 17, 31, 33, 48, 70] {
                    if cols == 1024 && n > 17 {
                        continue;
                    }
                    let dy: Vec<f32> = (0..n * rows).map(|_| rng.f32() * 2.0).collect();
                    let dx0: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
                    let mut dx = dx0.clone();
                    accumulate(rows, cols, exact, &row, &dy, &mut dx, &pool);
                    for t in 0..n {
                        for j in 0..cols {
                            let (mut want, mut size) = (dx0[t * cols + j] as f64, 0f64);
                            for r in 0..rows {
                                let p = dy[t * rows + r] as f64 * w[r * cols + j] as f64;
                                want += p;
                                size += p.abs();
                            }
                            let got = dx[t * cols + j] as f64;
                            assert!(
                                (got - want).abs() <= size * 2f64.powi(-14) + 1e-6,
                                "{rows}x{cols} exact {exact} n {n} t {t} j {j}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
