//! Q6_K weights repacked sixteen rows side by side, and the AVX-512 VNNI kernel that multiplies them with Q8_K
//! activation rows (the FFN down projections and output layers of Q4_K_M files).
//!
//! A Q6_K block is 256 weights `w = d·sc·(q − 32)`: 6-bit `q` (low four bits in `ql`, top two in `qh`), sixteen
//! signed 8-bit scales (one per 16), an f16 `d`. Packed, a (panel of 16 rows, block) takes [`LINES`] lines, in the
//! order the kernel reads them (one sequential stream, which the hardware prefetcher follows), per group `c` of four
//! sub-blocks of 16 ([`scale_line`], [`quant_line`], [`mask_line`]):
//! - the scales of sub-blocks `4c..4c+4` as signed byte pairs `[pair][row][s%2]`;
//! - per sub-block `s`: two lines of nibbles, line `i` holding quants `16s + 4i..+4` (low nibbles) and
//!   `16s + 8 + 4i..+4` (high nibbles) of each row, `[row][4 bytes]` (what one `vpdpbusd` multiplies with a broadcast
//!   word); then one line of masks: per group of four quants `g` (four per sub-block), bit 4 and bit 5 of each row's
//!   four quants as two 64-bit masks (masked adds put them in place);
//! - last, the sixteen `d` as f16.
//!
//! `Σ sc·(q − 32)·y = Σ sc·q·y − 32·Σ sc·ysum16`: the second term from the activation's sums of 16 (Q8_K keeps
//! them), with `vpdpwssd` on the scale pairs times −32. Then `acc = fma(d·dy, float(Σ), acc)` per block. Every weight
//! of this layout goes through this kernel, so results do not depend on batching; [`dot_reference`] is the twin.

use super::panels::{self, PanelKernel};
use super::{QK_K, f16_at};

pub use super::panels::NR;
/// 64-byte lines per (panel, block).
pub const LINES: usize = 53;
const W_BLOCK: usize = 210;
const A_BLOCK: usize = 292;

/// A Q6_K weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 256), repacked.
pub struct PackedQ6K {
    pub rows: usize,
    pub cols: usize,
    lines: panels::Lines,
}

/// The line of the scales of sub-blocks `4c..4c+4`.
const fn scale_line(c: usize) -> usize {
    13 * c
}

/// Line `i` (0, 1) of sub-block `s`'s nibbles.
const fn quant_line(s: usize, i: usize) -> usize {
    13 * (s / 4) + 1 + 3 * (s % 4) + i
}

/// The line of sub-block `s`'s high-bit masks.
const fn mask_line(s: usize) -> usize {
    quant_line(s, 2)
}

/// The line of the sixteen `d`.
const D_LINE: usize = 52;

/// Quant `e` (0..256, unsigned 0..64) of a Q6_K block.
fn quant(blk: &[u8], e: usize) -> u8 {
    let (n, r) = (e / 128, e % 128);
    let (part, l) = (r / 32, r % 32);
    let ql = blk[64 * n + l + 32 * (part % 2)];
    let nib = if part < 2 { ql & 15 } else { ql >> 4 };
    let qh = (blk[128 + 32 * n + l] >> (2 * part)) & 3;
    nib | qh << 4
}

/// Scale of quant `e`.
fn scale(blk: &[u8], e: usize) -> i8 {
    blk[192 + e / 16] as i8
}

impl PackedQ6K {
    /// Whether a `rows × cols` Q6_K weight can be packed.
    pub fn fits(rows: usize, cols: usize) -> bool {
        panels::fits(rows, cols, QK_K)
    }

    /// Packs `rows` Q6_K rows of `cols` (the file's bytes, row after row).
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Self {
        assert!(Self::fits(rows, cols), "packed Q6_K shape {rows}x{cols}");
        let nb = cols / QK_K;
        let rb = nb * W_BLOCK;
        assert_eq!(data.len(), rows * rb, "Q6_K rows");
        let mut lines = panels::Lines::zeroed(rows / NR * nb * LINES);
        for (pb, l) in lines.chunks_exact_mut(LINES).enumerate() {
            let (p, b) = (pb / nb, pb % nb);
            for r in 0..NR {
                let blk = &data[(p * NR + r) * rb + b * W_BLOCK..][..W_BLOCK];
                for s in 0..16 {
                    for i in 0..2 {
                        for e in 0..4 {
                            let (lo, hi) = (
                                quant(blk, 16 * s + 4 * i + e),
                                quant(blk, 16 * s + 8 + 4 * i + e),
                            );
                            l[quant_line(s, i)].0[r * 4 + e] = (lo & 15) | (hi & 15) << 4;
                        }
                    }
                    l[scale_line(s / 4)].0[((s % 4) / 2) * 32 + r * 2 + s % 2] =
                        scale(blk, 16 * s) as u8;
                }
                for g in 0..64 {
                    for e in 0..4 {
                        let (q, bit) = (quant(blk, 4 * g + e), r * 4 + e);
                        for h in 0..2 {
                            let m = &mut l[mask_line(g / 4)].0[(g % 4) * 16 + h * 8..][..8];
                            m[bit / 8] |= ((q >> (4 + h)) & 1) << (bit % 8);
                        }
                    }
                }
                l[D_LINE].0[r * 2..r * 2 + 2].copy_from_slice(&blk[208..210]);
            }
        }
        Self { rows, cols, lines }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Quant `e` of block `b` of row `r`, its scale, the block's `d`.
    #[cfg(test)]
    fn get(&self, r: usize, b: usize, e: usize) -> (u8, i8, f32) {
        let nb = self.cols / QK_K;
        let (p, rr) = (r / NR, r % NR);
        let l = &self.lines[(p * nb + b) * LINES..][..LINES];
        let (s, w) = (e / 16, e % 16);
        let (i, shift) = ((w % 8) / 4, if w < 8 { 0 } else { 4 });
        let nib = (l[quant_line(s, i)].0[rr * 4 + w % 4] >> shift) & 15;
        let (g, bit) = (e / 4, rr * 4 + e % 4);
        let hb =
            |h: usize| (l[mask_line(g / 4)].0[(g % 4) * 16 + h * 8 + bit / 8] >> (bit % 8)) & 1;
        let sc = l[scale_line(s / 4)].0[((s % 4) / 2) * 32 + rr * 2 + s % 2] as i8;
        (
            nib | hb(0) << 4 | hb(1) << 5,
            sc,
            f16_at(&l[D_LINE].0, rr * 2),
        )
    }
}

/// The plain twin: one Q6_K row (the file's layout) with one Q8_K activation row, the kernel's integers and float
/// steps.
pub fn dot_reference(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for b in 0..n / QK_K {
        let (xb, yb) = (&x[b * W_BLOCK..][..W_BLOCK], &y[b * A_BLOCK..][..A_BLOCK]);
        let mut sum = 0i32;
        for s in 0..16 {
            let (mut dot, mut ysum) = (0i32, 0i32);
            for e in 16 * s..16 * s + 16 {
                let yv = yb[4 + e] as i8 as i32;
                dot += quant(xb, e) as i32 * yv;
                ysum += yv;
            }
            sum += scale(xb, 16 * s) as i32 * (dot - 32 * ysum);
        }
        let dy = f32::from_le_bytes([yb[0], yb[1], yb[2], yb[3]]);
        acc = (f16_at(xb, 208) * dy).mul_add(sum as f32, acc);
    }
    acc
}

/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and `n_acts` Q8_K activation rows
/// (`act(t)`, `cols/256` blocks each). Needs AVX-512 VNNI.
///
/// # Safety
/// As [`panels::matmul`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul<'a>(
    w: &PackedQ6K,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: the caller's.
    unsafe { panels::matmul(w, panels, n_acts, &act, out, ldo) }
}

impl PanelKernel for PackedQ6K {
    /// Nothing: the tiles read the activation's own sums of 16.
    type Side = ();

    fn rows(&self) -> usize {
        self.rows
    }

    fn side_len(&self) -> usize {
        0
    }

    fn act_bytes(&self) -> usize {
        self.cols / QK_K * A_BLOCK
    }

    fn side(&self, _y: &[u8], _out: &mut [()]) {}

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        _side: *const (),
        out: *mut f32,
        ldo: usize,
    ) {
        use std::arch::x86_64::*;
        let nb = self.cols / QK_K;
        // SAFETY (whole body): the trait's contract: panel p's lines, T rows of nb Q8_K blocks, 16 outputs per row.
        unsafe {
            let base = self.lines.as_ptr().add(p * nb * LINES) as *const u8;
            let (m4, b4, b5) = (
                _mm512_set1_epi8(0x0F),
                _mm512_set1_epi8(0x10),
                _mm512_set1_epi8(0x20),
            );
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..nb {
                let l = base.add(b * LINES * 64);
                let mut isum = [_mm512_setzero_si512(); T];
                for i in 0..8 {
                    // Scales of sub-blocks 2i and 2i+1 as i16 pairs: times −32 against the sums of 16 (the offset),
                    // and each as i32 for its sub-block's products.
                    let pair = _mm512_cvtepi8_epi16(_mm256_load_si256(
                        l.add(scale_line(i / 2) * 64 + (i % 2) * 32) as *const __m256i,
                    ));
                    let off = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(pair, 5));
                    for t in 0..T {
                        let bs =
                            (ys[t].add(b * A_BLOCK + 260 + 4 * i) as *const i32).read_unaligned();
                        isum[t] = _mm512_dpwssd_epi32(isum[t], off, _mm512_set1_epi32(bs));
                    }
                    let scs = [
                        _mm512_srai_epi32(_mm512_slli_epi32(pair, 16), 16),
                        _mm512_srai_epi32(pair, 16),
                    ];
                    for (h, sc) in scs.iter().enumerate() {
                        let s = 2 * i + h;
                        // Two chains per activation row (as in the Q4_K kernel: shorter latency for decode).
                        let mut dot = [_mm512_setzero_si512(); T];
                        let mut dot2 = [_mm512_setzero_si512(); T];
                        let masks = l.add(mask_line(s) * 64) as *const u64;
                        for k in 0..2 {
                            let q = _mm512_load_si512(l.add(quant_line(s, k) * 64) as *const _);
                            let (glo, ghi) = (4 * s + k, 4 * s + 2 + k);
                            // The two top bits where the masks have them (adds: those bits are clear).
                            macro_rules! bits {
                                ($v:expr, $g:expr) => {{
                                    let v = $v;
                                    let v = _mm512_mask_add_epi8(
                                        v,
                                        masks.add(2 * ($g % 4)).read(),
                                        v,
                                        b4,
                                    );
                                    _mm512_mask_add_epi8(
                                        v,
                                        masks.add(2 * ($g % 4) + 1).read(),
                                        v,
                                        b5,
                                    )
                                }};
                            }
                            let lo = bits!(_mm512_and_si512(q, m4), glo);
                            let hi = bits!(_mm512_and_si512(_mm512_srli_epi16(q, 4), m4), ghi);
                            for t in 0..T {
                                let y = ys[t].add(b * A_BLOCK + 4);
                                let y0 = _mm512_set1_epi32(
                                    (y.add(4 * glo) as *const i32).read_unaligned(),
                                );
                                let y1 = _mm512_set1_epi32(
                                    (y.add(4 * ghi) as *const i32).read_unaligned(),
                                );
                                dot[t] = _mm512_dpbusd_epi32(dot[t], lo, y0);
                                dot2[t] = _mm512_dpbusd_epi32(dot2[t], hi, y1);
                            }
                        }
                        for t in 0..T {
                            let d = _mm512_add_epi32(dot[t], dot2[t]);
                            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(d, *sc));
                        }
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_load_si256(l.add(D_LINE * 64) as *const __m256i));
                for t in 0..T {
                    let dy =
                        _mm512_set1_ps((ys[t].add(b * A_BLOCK) as *const f32).read_unaligned());
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_mul_ps(d, dy), _mm512_cvtepi32_ps(isum[t]), acc[t]);
                }
            }
            for (t, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(t * ldo), *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;
    use crate::quant::tests::{Rng, random_row};

    #[test]
    fn packing_keeps_every_quant_and_scale() {
        let mut rng = Rng::new(21);
        let (rows, cols) = (32, 512);
        let data = random_row(GgmlType::Q6_K, rows * cols / QK_K, &mut rng);
        let p = PackedQ6K::pack(&data, rows, cols);
        let rb = cols / QK_K * W_BLOCK;
        for r in 0..rows {
            for b in 0..cols / QK_K {
                let blk = &data[r * rb + b * W_BLOCK..][..W_BLOCK];
                for e in 0..256 {
                    let want = (quant(blk, e), scale(blk, e), f16_at(blk, 208));
                    assert_eq!(p.get(r, b, e), want, "r {r} b {b} e {e}");
                }
            }
        }
    }

    /// The twin against the dequantizing reference (close: float sums in another order).
    #[test]
    fn twin_matches_the_dequantizing_reference() {
        let mut rng = Rng::new(23);
        let cols = 1024;
        let x = random_row(GgmlType::Q6_K, cols / QK_K, &mut rng);
        for y in panels::testing::acts(GgmlType::Q8_K, 4, cols, &mut rng) {
            let want = crate::quant::reference::dot_fn(GgmlType::Q6_K)(cols, &x, &y);
            let got = dot_reference(cols, &x, &y);
            assert!(
                (want - got).abs() <= 1e-3 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
        }
    }

    /// The kernel gives the twin's bits for every row and activation row, however the rows are grouped.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_kernel_gives_the_twin_bits() {
        let mut rng = Rng::new(29);
        let (rows, cols) = (80, 768);
        let data = random_row(GgmlType::Q6_K, rows * cols / QK_K, &mut rng);
        let p = PackedQ6K::pack(&data, rows, cols);
        let rb = cols / QK_K * W_BLOCK;
        panels::testing::kernel_gives_twin_bits(
            &p,
            &data,
            (rb, cols, 3),
            GgmlType::Q8_K,
            dot_reference,
            &mut rng,
        );
    }
}
