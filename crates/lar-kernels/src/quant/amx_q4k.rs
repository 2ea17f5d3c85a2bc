//! Intel AMX (AMX-INT8) for the Q4_K weights' prompt products: `TDPBSSD` multiplies 16 activation rows' 64 Q8_K
//! quants with 16 weight rows' 64 quants in one instruction (16384 products, where one AVX-512 `vpdpbusd` does 64).
//!
//! A Q4_K block is `w = d·sc_j·q − dmin·m_j` per sub-block `j` of 32, with 4-bit `q` and 6-bit `sc_j`. The packed
//! VNNI kernel ([`super::packed_q4k`]) sums `Σ_j sc_j·Σ q·y` per block in integers, then finishes the block in
//! floats. A tile product sums over 64 quants, two sub-blocks with different scales, so the scales go into the
//! weights before the product: `sc = 8·hi + lo` (3 bits each), and two planes `q·lo` and `q·hi` (at most 105,
//! signed bytes) give `Σ q·sc·y = Σ (q·lo)·y + 8·Σ (q·hi)·y`, the same integer. Each block is then finished with
//! the packed kernel's float steps, so a result has the same bits as the packed kernel's and the twin's
//! ([`super::packed_q4k::dot_reference`]): which kernel a row went through never shows in the logits.
//!
//! The packed panels need no reordering for the tile: a panel line holds, for each of its 16 rows, four consecutive
//! quants (low nibbles, and the four 16 places on in the high nibbles), which is exactly a row of `TDPBSSD`'s
//! second operand. The activation rows of a token tile are copied once into tiles (per block, group of 16 rows and
//! chunk of 64 quants). Then per panel and block, the block is converted ([`convert_block`]: nibbles out, times
//! the two scale planes; `vpmullw` multiplies the four bytes of a row's word pair by the row's scale at once, since
//! no byte product carries) into 8 KB that stay in L1 while every group of the tile meets them, two groups at a
//! time so that four chains of products keep the tile unit busy. One thread's product of 1024×2048 weights with
//! 256 rows, on the Xeon this was written on: 1.5 ms, against 2.9 ms for the packed VNNI kernel (1.3x at 16 rows).

#[cfg(target_arch = "x86_64")]
use super::QK_K;
#[cfg(target_arch = "x86_64")]
use super::packed_q4k::{A_BLOCK, PackedQ4K, block_mins, quant_line, scale_line};
#[cfg(target_arch = "x86_64")]
use super::panels::{Line, NR, PanelKernel};
#[cfg(target_arch = "x86_64")]
use std::ops::Range;

/// Activation rows from which a Q4_K product goes to AMX (fewer: the packed VNNI kernel).
pub const MIN_ROWS: usize = 16;
#[cfg(target_arch = "x86_64")]
/// Rows of a tile: activation rows per group, and weight rows per panel.
const TILE_ROWS: usize = 16;
#[cfg(target_arch = "x86_64")]
/// Bytes of activation rows per token tile (the panels are converted once per tile).
const TOKEN_TILE_BYTES: usize = 512 << 10;
#[cfg(target_arch = "x86_64")]
/// Converted tiles per block: four chunks of 64 quants, two scale planes each.
const TILES_PER_BLOCK: usize = 8;

#[cfg(target_arch = "x86_64")]
use super::amx::{CONFIG, tile_load, tile_store};

#[cfg(target_arch = "x86_64")]
/// `tdpbssd tmmC, tmmA, tmmB`: `C += A·B` over signed bytes, in 32-bit sums.
macro_rules! tile_dp {
    ($c:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbssd tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem),
        )
    };
}

#[cfg(target_arch = "x86_64")]
/// Four 16×16 tiles of 32-bit sums (per group, the `lo` plane's, then the `hi` plane's), as stored from the tile
/// registers.
#[repr(C, align(64))]
struct Sums([[i32; NR]; 4 * TILE_ROWS]);

#[cfg(target_arch = "x86_64")]
/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and the `n` Q8_K activation rows in
/// `acts` (one after another).
///
/// # Safety
/// [`super::amx::int8_available`] is true; `out` is valid for writes at `t·ldo + r` for every activation row `t`
/// and row `r` of `panels`, and no one else writes those places meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn matmul(
    w: &PackedQ4K,
    panels: Range<usize>,
    acts: &[u8],
    n: usize,
    out: *mut f32,
    ldo: usize,
) {
    assert!(acts.len() >= n * w.cols / QK_K * A_BLOCK, "activation rows");
    assert!(panels.end * NR <= w.rows, "panels out of range");
    if n == 0 || panels.is_empty() {
        return;
    }

    let nb = w.cols / QK_K;
    let rb = nb * A_BLOCK;
    let tile = (((TOKEN_TILE_BYTES / rb) / TILE_ROWS).max(1) * TILE_ROWS)
        .min(n.div_ceil(TILE_ROWS) * TILE_ROWS);
    let max_groups = tile / TILE_ROWS;
    // The tile's activation rows as tiles (per block, group of 16 rows and chunk: 16 lines of 64 quants, zero rows
    // past the last), their blocks' scales (per block and group, 16), their sub-block sums for the mins (the
    // packed kernel's side data, per row), and the sums of one panel so far (per row, 16): this thread's scratch,
    // kept between calls (no zeroed pages to fault in per product).
    let mut sc = SCRATCH.take();
    let side_len = w.side_len();
    sc.at.resize(nb * max_groups * 4 * TILE_ROWS, Line([0; 64]));
    sc.dys.resize(nb * tile, 0.0);
    sc.side.resize(tile * side_len, 0);
    sc.acc.resize(tile, Line([0; 64]));
    let Scratch { at, dys, side, acc } = &mut sc;
    let mut conv = [Line([0; 64]); TILES_PER_BLOCK * TILE_ROWS];
    let mut sums = Sums([[0; NR]; 4 * TILE_ROWS]);
    // SAFETY (whole body): the caller's (AMX-INT8 granted, so AVX-512 too; outputs theirs); reads are inside
    // `acts` and the panels (asserted) and the scratch.
    unsafe {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        for t0 in (0..n).step_by(tile) {
            let t_end = (t0 + tile).min(n);
            let groups = (t_end - t0).div_ceil(TILE_ROWS);
            // Every real row is written below; the last group's rows past the end are zero.
            for r in t_end - t0..groups * TILE_ROWS {
                let (g, r) = (r / TILE_ROWS, r % TILE_ROWS);
                for b in 0..nb {
                    dys[(b * groups + g) * TILE_ROWS + r] = 0.0;
                    for c in 0..4 {
                        at[((b * groups + g) * 4 + c) * TILE_ROWS + r] = Line([0; 64]);
                    }
                }
                side[(g * TILE_ROWS + r) * side_len..][..side_len].fill(0);
            }
            for t in t0..t_end {
                let (g, r) = ((t - t0) / TILE_ROWS, (t - t0) % TILE_ROWS);
                let y = &acts[t * rb..(t + 1) * rb];
                for b in 0..nb {
                    let blk = &y[b * A_BLOCK..(b + 1) * A_BLOCK];
                    dys[(b * groups + g) * TILE_ROWS + r] =
                        f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
                    for c in 0..4 {
                        at[((b * groups + g) * 4 + c) * TILE_ROWS + r]
                            .0
                            .copy_from_slice(&blk[4 + 64 * c..4 + 64 * (c + 1)]);
                    }
                }
                w.side(y, &mut side[(t - t0) * side_len..][..side_len]);
            }
            for p in panels.clone() {
                acc.fill(Line([0; 64]));
                for b in 0..nb {
                    convert_block(w, p, b, conv.as_mut_ptr() as *mut u8);
                    let k = BlockKernel {
                        w,
                        p,
                        b,
                        conv: conv.as_ptr() as *const u8,
                        at: at[b * groups * 4 * TILE_ROWS..].as_ptr() as *const u8,
                        dys: dys[b * groups * TILE_ROWS..].as_ptr(),
                        side: side.as_ptr(),
                        acc: acc.as_mut_ptr() as *mut f32,
                    };
                    k.run(groups, &mut sums);
                }
                for t in t0..t_end {
                    let src = acc[t - t0].0.as_ptr() as *const f32;
                    std::ptr::copy_nonoverlapping(src, out.add(t * ldo + p * NR), NR);
                }
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
    SCRATCH.set(sc);
}

#[cfg(target_arch = "x86_64")]
/// A thread's buffers for [`matmul`], kept between calls.
#[derive(Default)]
struct Scratch {
    at: Vec<Line>,
    dys: Vec<f32>,
    side: Vec<u32>,
    acc: Vec<Line>,
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

#[cfg(target_arch = "x86_64")]
/// One block of one panel against every group of a token tile: its converted tiles, the block's activation tiles
/// and scales (group after group), the tile's side data and the panel's sums so far (per row of the tile).
struct BlockKernel<'a> {
    w: &'a PackedQ4K,
    p: usize,
    b: usize,
    conv: *const u8,
    at: *const u8,
    dys: *const f32,
    side: *const u32,
    acc: *mut f32,
}

#[cfg(target_arch = "x86_64")]
impl BlockKernel<'_> {
    /// The groups two at a time: the planes' sums of the first in tmm0/tmm1 and of the second in tmm2/tmm3 over
    /// the four chunks (activations in tmm4/tmm5, the block's planes in tmm6/tmm7, which stay in L1 for every
    /// group): four independent chains of products. A pair's sums are stored to `sums` and added to the panel's
    /// (as the packed kernel finishes a block) after the next pair's products are issued, so the vector work
    /// overlaps the tile unit's.
    #[inline(always)]
    unsafe fn run(&self, groups: usize, sums: &mut Sums) {
        const TILE: usize = TILE_ROWS * 64;
        let pairs = groups.div_ceil(2);
        let s0 = sums.0.as_mut_ptr() as *mut u8;
        // SAFETY: the caller's: `groups` groups of activation tiles, scales and side data, 16 sums per row.
        unsafe {
            for i in 0..=pairs {
                if i < pairs {
                    let g = 2 * i;
                    let two = g + 1 < groups;
                    std::arch::asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
                    if two {
                        std::arch::asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                    }
                    for c in 0..4 {
                        let a = self.at.add((g * 4 + c) * TILE);
                        let bt = self.conv.add(2 * c * TILE);
                        tile_load!("4", a, 64usize);
                        tile_load!("6", bt, 64usize);
                        tile_load!("7", bt.add(TILE), 64usize);
                        tile_dp!("0", "4", "6");
                        tile_dp!("1", "4", "7");
                        if two {
                            tile_load!("5", a.add(4 * TILE), 64usize);
                            tile_dp!("2", "5", "6");
                            tile_dp!("3", "5", "7");
                        }
                    }
                }
                if i > 0 {
                    let g = 2 * (i - 1);
                    self.finish(g, s0);
                    if g + 1 < groups {
                        self.finish(g + 1, s0.add(2 * TILE));
                    }
                }
                if i < pairs {
                    tile_store!("0", s0, 64usize);
                    tile_store!("1", s0.add(TILE), 64usize);
                    if 2 * i + 1 < groups {
                        tile_store!("2", s0.add(2 * TILE), 64usize);
                        tile_store!("3", s0.add(3 * TILE), 64usize);
                    }
                }
            }
        }
    }

    /// Adds group `g`'s block (its two planes' sums at `s`) to the panel's sums, with the packed kernel's steps:
    /// `acc = fma(d·dy, Σ sc·q·y, acc)`, then `acc − dmin·dy·Σ m·ysum`.
    #[inline(always)]
    unsafe fn finish(&self, g: usize, s: *const u8) {
        use std::arch::x86_64::*;
        let nb = self.w.cols / QK_K;
        // SAFETY: the caller's: two planes of sums at `s`, the group's rows in the side data and sums.
        unsafe {
            let (mins, d, dmin) = block_mins(self.w.block_lines(self.p, self.b));
            for t in 0..TILE_ROWS {
                let row = g * TILE_ROWS + t;
                let lo = _mm512_load_si512(s.add(t * 64) as *const _);
                let hi = _mm512_load_si512(s.add((TILE_ROWS + t) * 64) as *const _);
                let isum = _mm512_add_epi32(lo, _mm512_slli_epi32(hi, 3));
                let ys = self.side.add((row * nb + self.b) * 4);
                let mut msum = _mm512_setzero_si512();
                for (i, mv) in mins.iter().enumerate() {
                    msum = _mm512_dpwssd_epi32(msum, *mv, _mm512_set1_epi32(*ys.add(i) as i32));
                }
                let dy = _mm512_set1_ps(*self.dys.add(row));
                let acc = self.acc.add(row * NR);
                let x = _mm512_fmadd_ps(
                    _mm512_mul_ps(d, dy),
                    _mm512_cvtepi32_ps(isum),
                    _mm512_load_ps(acc),
                );
                let x = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(msum), x);
                _mm512_store_ps(acc, x);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Block `b` of panel `p` as [`TILES_PER_BLOCK`] tiles at `dst`: per chunk `c` of 64 quants (sub-blocks `2c` and
/// `2c + 1`), the `lo` plane's 16 lines, then the `hi` plane's. Line `k` of a plane holds quants `4k..4k + 4` of
/// the chunk for each row, times that row's scale bits: the low nibbles of a sub-block's four quant lines are its
/// quants `0..16`, the high nibbles `16..32`.
#[inline(always)]
unsafe fn convert_block(w: &PackedQ4K, p: usize, b: usize, dst: *mut u8) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's: AVX-512 F/BW; `dst` holds 8 64-byte aligned tiles.
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let m3 = _mm512_set1_epi32(7);
        let l = w.block_lines(p, b);
        for c in 0..4 {
            let lo_plane = dst.add(2 * c * TILE_ROWS * 64);
            let hi_plane = lo_plane.add(TILE_ROWS * 64);
            for (half, j) in [2 * c, 2 * c + 1].into_iter().enumerate() {
                let sc = _mm512_cvtepu8_epi32(_mm_load_si128(
                    l.add(scale_line(j / 4) * 64 + (j % 4) * 16) as *const __m128i,
                ));
                // Each row's scale bits in both 16-bit halves of its lane.
                let (s_lo, s_hi) = (
                    both_halves(_mm512_and_si512(sc, m3)),
                    both_halves(_mm512_srli_epi32(sc, 3)),
                );
                for i in 0..4 {
                    let q = _mm512_load_si512(l.add(quant_line(j, i) * 64) as *const _);
                    let low = _mm512_and_si512(q, m4);
                    let high = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                    for (k, v) in [(8 * half + i, low), (8 * half + 4 + i, high)] {
                        let at = k * 64;
                        _mm512_store_si512(lo_plane.add(at) as *mut _, _mm512_mullo_epi16(v, s_lo));
                        _mm512_store_si512(hi_plane.add(at) as *mut _, _mm512_mullo_epi16(v, s_hi));
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// Each 32-bit lane's low half copied into its high half.
#[inline(always)]
unsafe fn both_halves(v: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX-512 F.
    unsafe { _mm512_or_si512(v, _mm512_slli_epi32(v, 16)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;
    use crate::quant::packed_q4k::dot_reference;
    use crate::quant::panels::testing::acts;
    use crate::quant::tests::{Rng, random_row};

    /// The AMX product gives the twin's bits (so the packed kernel's) for every row count (a tail group, one and
    /// several groups, several token tiles), on a sub-range of panels written at an offset. Skipped where the CPU
    /// has no AMX-INT8.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_q4k_gives_the_twin_bits() {
        if !crate::quant::amx::int8_available() {
            eprintln!("no AMX-INT8 on this CPU (or LAR_AMX=0): skipped");
            return;
        }
        let mut rng = Rng::new(5);
        // 7 blocks a row (an odd count); token tiles of 256 rows at this width.
        let (rows, cols) = (48, 1792);
        let data = random_row(GgmlType::Q4_K, rows * cols / QK_K, &mut rng);
        let w = PackedQ4K::pack(&data, rows, cols);
        let rb = cols / QK_K * 144;
        // 300 and 513 rows: two and three token tiles, the last short.
        for (n, panels) in [
            (16, 1..3),
            (17, 0..3),
            (31, 1..3),
            (48, 2..3),
            (300, 1..3),
            (513, 0..3),
        ] {
            let ys = acts(GgmlType::Q8_K, n, cols, &mut rng);
            let flat: Vec<u8> = ys.concat();
            let ldo = rows + 3;
            let mut out = vec![f32::NAN; n * ldo];
            // SAFETY: AMX-INT8 checked above; out holds n rows of ldo.
            unsafe { matmul(&w, panels.clone(), &flat, n, out.as_mut_ptr(), ldo) };
            for (t, y) in ys.iter().enumerate() {
                for r in 0..ldo {
                    let got = out[t * ldo + r];
                    if !(panels.start * 16..panels.end * 16).contains(&r) {
                        assert!(got.is_nan(), "n {n}: row {r} is outside the panels");
                        continue;
                    }
                    let want = dot_reference(cols, &data[r * rb..(r + 1) * rb], y);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "n {n} t {t} r {r}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
