//! Q4_K weights repacked sixteen rows side by side, and the AVX-512 VNNI kernel that multiplies them with Q8_K
//! activation rows: the prompt's matrix products and the decode's mat-vec on the K-quant models.
//!
//! A Q4_K row stores per 256 weights an f16 `d` and `dmin`, eight 6-bit scales and mins (one per 32) and 4-bit
//! quants, `w = d·sc·q − dmin·m`. The one-row kernel ([`super::avx2`]) unpacks one row's block and multiplies it
//! with 32 activations at a time; here a panel of 16 rows is stored so that one 64-byte line holds, for each row, the
//! same four consecutive quants (`[row][4 bytes]`, low nibbles) and the four 16 places further (high nibbles): one
//! `vpdpbusd` multiplies all 16 rows with a broadcast word of four activations. Per (panel, block), [`LINES`] lines
//! in the order the kernel reads them (one sequential stream, which the hardware prefetcher follows):
//! - per half `c` of the block ([`scale_line`], [`quant_line`]): the scales of sub-blocks `4c..4c+4` as bytes
//!   `[j][row]`, then per sub-block `j` four lines of quants, line `i` holding quants `32j + 4i..+4` (low nibble) and
//!   `32j + 16 + 4i..+4` (high nibble) of each row;
//! - 34, 35: the mins as byte pairs `[j/2][row][j%2]`; 36: `d[16]` then `dmin[16]` as f16.
//!
//! Same size as the file's rows plus 2.8% (unpacked 6-bit scales). The integers are those of the one-row kernel,
//! and both finish a block the same way (`acc = fma(d·dy, Σ sc·q·y, acc)`, then `fma(−dmin·dy, Σ m·ysum, acc)`, with
//! whole-block integer sums), so a token's logits have the same bits whether its row went through here or there.
//! [`dot_reference`] is the plain twin of both.

use super::panels::{self, PanelKernel};
use super::{QK_K, f16_at, scale_min_k4};

pub use super::panels::NR;
/// 64-byte lines per (panel, 256-element block).
pub const LINES: usize = 37;
/// The line of the scales of sub-blocks `4c..4c+4`.
pub(super) const fn scale_line(c: usize) -> usize {
    17 * c
}

/// Line `i` (0..4) of sub-block `j`'s quants.
pub(super) const fn quant_line(j: usize, i: usize) -> usize {
    17 * (j / 4) + 1 + 4 * (j % 4) + i
}

/// The first of the two lines of mins, and the line of `d` and `dmin`.
const MIN_LINE: usize = 34;
const D_LINE: usize = 36;

/// Bytes of one Q4_K block and one Q8_K block.
const W_BLOCK: usize = 144;
pub(super) const A_BLOCK: usize = 292;

/// A Q4_K weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 256), repacked.
pub struct PackedQ4K {
    pub rows: usize,
    pub cols: usize,
    lines: panels::Lines,
}

impl PackedQ4K {
    /// Whether a `rows × cols` Q4_K weight can be packed.
    pub fn fits(rows: usize, cols: usize) -> bool {
        panels::fits(rows, cols, QK_K)
    }

    /// Packs `rows` Q4_K rows of `cols` (the file's bytes, row after row).
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Self {
        assert!(Self::fits(rows, cols), "packed Q4_K shape {rows}x{cols}");
        let nb = cols / QK_K;
        let rb = nb * W_BLOCK;
        assert_eq!(data.len(), rows * rb, "Q4_K rows");
        let mut lines = panels::Lines::zeroed(rows / NR * nb * LINES);
        for (pb, l) in lines.chunks_exact_mut(LINES).enumerate() {
            let (p, b) = (pb / nb, pb % nb);
            for r in 0..NR {
                let blk = &data[(p * NR + r) * rb + b * W_BLOCK..][..W_BLOCK];
                let (sm, qs) = (&blk[4..16], &blk[16..]);
                // Quant e of sub-block j: qs[32·(j/2) + e], low nibble for even j, high for odd.
                let q = |j: usize, e: usize| {
                    let v = qs[32 * (j / 2) + e];
                    if j.is_multiple_of(2) { v & 15 } else { v >> 4 }
                };
                for j in 0..8 {
                    for i in 0..4 {
                        for e in 0..4 {
                            l[quant_line(j, i)].0[r * 4 + e] =
                                q(j, 4 * i + e) | q(j, 16 + 4 * i + e) << 4;
                        }
                    }
                    let (sc, m) = scale_min_k4(j, sm);
                    l[scale_line(j / 4)].0[(j % 4) * NR + r] = sc;
                    l[MIN_LINE + j / 4].0[((j % 4) / 2) * 32 + r * 2 + j % 2] = m;
                }
                l[D_LINE].0[r * 2..r * 2 + 2].copy_from_slice(&blk[0..2]);
                l[D_LINE].0[32 + r * 2..32 + r * 2 + 2].copy_from_slice(&blk[2..4]);
            }
        }
        Self { rows, cols, lines }
    }

    /// The first of the [`LINES`] lines of panel `p`, block `b`.
    pub(super) fn block_lines(&self, p: usize, b: usize) -> *const u8 {
        let nb = self.cols / QK_K;
        assert!(p < self.rows / NR && b < nb, "panel {p} block {b}");
        self.lines[(p * nb + b) * LINES..].as_ptr() as *const u8
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Row `r` back in the file's Q4_K layout (for the tests and the reference).
    pub fn row_q4k(&self, r: usize) -> Vec<u8> {
        let nb = self.cols / QK_K;
        let (p, rr) = (r / NR, r % NR);
        let mut out = Vec::with_capacity(nb * W_BLOCK);
        for b in 0..nb {
            let l = &self.lines[(p * nb + b) * LINES..][..LINES];
            let mut blk = [0u8; W_BLOCK];
            blk[0..2].copy_from_slice(&l[D_LINE].0[rr * 2..rr * 2 + 2]);
            blk[2..4].copy_from_slice(&l[D_LINE].0[32 + rr * 2..32 + rr * 2 + 2]);
            let sc = |j: usize| l[scale_line(j / 4)].0[(j % 4) * NR + rr];
            let m = |j: usize| l[MIN_LINE + j / 4].0[((j % 4) / 2) * 32 + rr * 2 + j % 2];
            // The 12 scale bytes (inverse of `scale_min_k4`).
            for j in 0..4 {
                blk[4 + j] = sc(j) | (sc(j + 4) >> 4) << 6;
                blk[8 + j] = m(j) | (m(j + 4) >> 4) << 6;
                blk[12 + j] = (sc(j + 4) & 15) | (m(j + 4) & 15) << 4;
            }
            for j in 0..8 {
                for i in 0..4 {
                    for e in 0..4 {
                        let v = l[quant_line(j, i)].0[rr * 4 + e];
                        for (half, q) in [(0, v & 15), (16, v >> 4)] {
                            let byte = &mut blk[16 + 32 * (j / 2) + half + 4 * i + e];
                            *byte |= if j % 2 == 0 { q } else { q << 4 };
                        }
                    }
                }
            }
            out.extend_from_slice(&blk);
        }
        out
    }
}

/// The plain twin: one Q4_K row (`x`, the file's layout) with one Q8_K activation row, the same integers and the
/// same float steps as the kernels.
pub fn dot_reference(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for b in 0..n / QK_K {
        let (xb, yb) = (&x[b * W_BLOCK..][..W_BLOCK], &y[b * A_BLOCK..][..A_BLOCK]);
        let dy = f32::from_le_bytes([yb[0], yb[1], yb[2], yb[3]]);
        let (mut si, mut sm) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = scale_min_k4(j, &xb[4..16]);
            let mut dot = 0i32;
            for e in 0..32 {
                let v = xb[16 + 32 * (j / 2) + e];
                let q = if j.is_multiple_of(2) { v & 15 } else { v >> 4 };
                dot += q as i32 * yb[4 + 32 * j + e] as i8 as i32;
            }
            si += sc as i32 * dot;
            let ysum = |k: usize| i16::from_le_bytes([yb[260 + 2 * k], yb[261 + 2 * k]]) as i32;
            sm += m as i32 * (ysum(2 * j) + ysum(2 * j + 1));
        }
        let (d, dmin) = (f16_at(xb, 0), f16_at(xb, 2));
        acc = (d * dy).mul_add(si as f32, acc);
        acc = (-(dmin * dy)).mul_add(sm as f32, acc);
    }
    acc
}

/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and `n_acts` Q8_K activation rows
/// (`act(t)`, `cols/256` blocks each). Needs AVX-512 VNNI ([`super::SimdLevel::Avx512Vnni`]).
///
/// # Safety
/// As [`panels::matmul`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul<'a>(
    w: &PackedQ4K,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: the caller's.
    unsafe { panels::matmul(w, panels, n_acts, &act, out, ldo) }
}

impl PanelKernel for PackedQ4K {
    /// Per block, the activation's sums of its sub-blocks of 32 as i16 pairs (the mins' partners).
    type Side = u32;

    fn rows(&self) -> usize {
        self.rows
    }

    fn side_len(&self) -> usize {
        self.cols / QK_K * 4
    }

    fn act_bytes(&self) -> usize {
        self.cols / QK_K * A_BLOCK
    }

    fn side(&self, y: &[u8], out: &mut [u32]) {
        for (b, o) in out.chunks_exact_mut(4).enumerate() {
            let s = |k: usize| {
                let at = b * A_BLOCK + 260 + 2 * k;
                i16::from_le_bytes([y[at], y[at + 1]])
            };
            for (i, w) in o.iter_mut().enumerate() {
                let lo = s(4 * i) + s(4 * i + 1);
                let hi = s(4 * i + 2) + s(4 * i + 3);
                *w = lo as u16 as u32 | (hi as u16 as u32) << 16;
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        ysum: *const u32,
        out: *mut f32,
        ldo: usize,
    ) {
        use std::arch::x86_64::*;
        let nb = self.cols / QK_K;
        // SAFETY (whole body): the trait's contract: panel p's lines, T rows of nb Q8_K blocks, T·nb·4 sums, and
        // 16 outputs per row.
        unsafe {
            let base = self.lines.as_ptr().add(p * nb * LINES) as *const u8;
            let m4 = _mm512_set1_epi8(0x0F);
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..nb {
                let l = base.add(b * LINES * 64);
                let mut isum = [_mm512_setzero_si512(); T];
                for j in 0..8 {
                    let sc = _mm512_cvtepu8_epi32(_mm_load_si128(
                        l.add(scale_line(j / 4) * 64 + (j % 4) * 16) as *const __m128i,
                    ));
                    // Two chains of `vpdpbusd` per activation row (low and high nibbles; integer sums, so the
                    // same result): half the latency of one long chain, which decode's single row waits on.
                    let mut dot = [_mm512_setzero_si512(); T];
                    let mut dot2 = [_mm512_setzero_si512(); T];
                    for i in 0..4 {
                        let q = _mm512_load_si512(l.add(quant_line(j, i) * 64) as *const _);
                        let lo = _mm512_and_si512(q, m4);
                        let hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
                        for t in 0..T {
                            let y = ys[t].add(b * A_BLOCK + 4 + 32 * j + 4 * i);
                            let y0 = _mm512_set1_epi32((y as *const i32).read_unaligned());
                            let y1 = _mm512_set1_epi32((y.add(16) as *const i32).read_unaligned());
                            dot[t] = _mm512_dpbusd_epi32(dot[t], lo, y0);
                            dot2[t] = _mm512_dpbusd_epi32(dot2[t], hi, y1);
                        }
                    }
                    for t in 0..T {
                        let d = _mm512_add_epi32(dot[t], dot2[t]);
                        isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(d, sc));
                    }
                }
                let (mins, d, dmin) = block_mins(l);
                for t in 0..T {
                    let s = ysum.add((t * nb + b) * 4);
                    let mut msum = _mm512_setzero_si512();
                    for (i, mv) in mins.iter().enumerate() {
                        msum = _mm512_dpwssd_epi32(msum, *mv, _mm512_set1_epi32(*s.add(i) as i32));
                    }
                    let dy =
                        _mm512_set1_ps((ys[t].add(b * A_BLOCK) as *const f32).read_unaligned());
                    let a =
                        _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                    acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dy), _mm512_cvtepi32_ps(msum), a);
                }
            }
            for (t, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(t * ldo), *a);
            }
        }
    }
}

/// A (panel, block)'s 16 rows' mins (as i16 pairs, the partners of the activation's sub-block sums), `d` and
/// `dmin`, from its lines at `l`.
///
/// # Safety
/// AVX-512 F/BW; `l` is the first of a (panel, block)'s [`LINES`] lines.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn block_mins(
    l: *const u8,
) -> (
    [std::arch::x86_64::__m512i; 4],
    std::arch::x86_64::__m512,
    std::arch::x86_64::__m512,
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's.
    unsafe {
        let mins: [__m512i; 4] = std::array::from_fn(|i| {
            _mm512_cvtepu8_epi16(_mm256_load_si256(
                l.add(MIN_LINE * 64 + i * 32) as *const __m256i
            ))
        });
        let dd = l.add(D_LINE * 64);
        let d = _mm512_cvtph_ps(_mm256_load_si256(dd as *const __m256i));
        let dmin = _mm512_cvtph_ps(_mm256_load_si256(dd.add(32) as *const __m256i));
        (mins, d, dmin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{Rng, random_row};
    use crate::quant::{GgmlType, SimdLevel, dot_fn_at};

    fn weight(rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        random_row(GgmlType::Q4_K, rows * cols / QK_K, rng)
    }

    #[test]
    fn packing_round_trips() {
        let mut rng = Rng::new(7);
        let (rows, cols) = (32, 512);
        let data = weight(rows, cols, &mut rng);
        let p = PackedQ4K::pack(&data, rows, cols);
        let rb = cols / QK_K * W_BLOCK;
        for r in 0..rows {
            assert_eq!(p.row_q4k(r), &data[r * rb..(r + 1) * rb], "row {r}");
        }
        assert_eq!(p.bytes(), rows / NR * 2 * LINES * 64);
    }

    /// The reference twin against the dequantizing reference (float sums in another order: close, not equal), and
    /// the one-row kernels of every tier against the twin (equal bits).
    #[test]
    fn one_row_kernels_match_the_twin() {
        let mut rng = Rng::new(11);
        let cols = 1024;
        let data = weight(8, cols, &mut rng);
        let ys = panels::testing::acts(GgmlType::Q8_K, 3, cols, &mut rng);
        let rb = cols / QK_K * W_BLOCK;
        for r in 0..8 {
            let x = &data[r * rb..(r + 1) * rb];
            for y in &ys {
                let want = dot_reference(cols, x, y);
                let deq = crate::quant::reference::dot_fn(GgmlType::Q4_K)(cols, x, y);
                assert!(
                    (want - deq).abs() <= 1e-3 * (1.0 + deq.abs()),
                    "{want} vs {deq}"
                );
                for level in crate::quant::available_levels() {
                    if level != SimdLevel::Scalar {
                        let got = dot_fn_at(level, GgmlType::Q4_K)(cols, x, y);
                        assert_eq!(got.to_bits(), want.to_bits(), "{level:?} row {r}");
                    }
                }
            }
        }
    }

    /// The kernel gives the twin's bits for every row and activation row, however the rows are grouped.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_kernel_gives_the_twin_bits() {
        let mut rng = Rng::new(3);
        let (rows, cols) = (80, 768);
        let data = random_row(GgmlType::Q4_K, rows * cols / QK_K, &mut rng);
        let p = PackedQ4K::pack(&data, rows, cols);
        let rb = cols / QK_K * W_BLOCK;
        panels::testing::kernel_gives_twin_bits(
            &p,
            &data,
            (rb, cols, 2),
            GgmlType::Q8_K,
            dot_reference,
            &mut rng,
        );
    }
}
