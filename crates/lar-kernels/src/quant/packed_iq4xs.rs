//! IQ4_XS weights repacked sixteen rows side by side, and the AVX-512 VNNI kernel that multiplies them with Q8_K
//! activation rows (the prompt's matrix products and the decode's mat-vec).
//!
//! An IQ4_XS block is 256 weights in eight sub-blocks of 32, `w = d·(ls − 32)·KVALUES[q]` ([`super::iq4`]). Packed,
//! a (panel, block) takes [`LINES`] 64-byte lines, in the order the kernel reads them: three lines with the sixteen
//! rows' `d` (f16, 32 bytes) and their eight scales `ls − 32` as i8 (`[sub-block][row]`, 128 bytes; the third line's
//! last 32 bytes unused), then per sub-block ([`quant_line`]) four lines of nibbles laid out as
//! the 32-block panels (`super::packed_32`): line `i` holds for each row its quants `4i..4i+4` (low nibbles) and
//! `16 + 4i..+4` (high nibbles).
//!
//! Per sub-block the nibbles are looked up in the table shifted to unsigned bytes (+128) and multiplied with the
//! activation by `vpdpbusd`, the accumulator starting at `−128·Σy` of the sub-block; the sub-block's sum times its
//! scale goes into the block's integer sum, then `acc = fma(float(Σ), d·dy, acc)` per block: the integers and the
//! float step of the one-row kernel ([`super::avx2`]), so the two give the same bits, and [`dot_reference`] is the
//! plain twin of both.

use super::iq4::{KVALUES, XS_BLOCK, xs_scale};
use super::panels::{self, PanelKernel};
use super::{QK_K, f16_at};

pub use super::panels::NR;
/// 64-byte lines per (panel, block): `d` and the scales in three, then 8 × 4 lines of quants (3% over the file's
/// bytes).
pub const LINES: usize = 35;

/// Line `i` (0..4) of sub-block `ib`'s nibbles.
const fn quant_line(ib: usize, i: usize) -> usize {
    3 + 4 * ib + i
}

/// Byte offset of the scales (`[ib][row]` as i8) in a (panel, block)'s lines.
const SCALES_AT: usize = 32;

/// Bytes of a Q8_K block.
const A_BLOCK: usize = 292;

/// An IQ4_XS weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 256), repacked.
pub struct PackedIq4Xs {
    pub rows: usize,
    pub cols: usize,
    lines: panels::Lines,
}

/// Quant `e` (0..32) of sub-block `ib` of an IQ4_XS block.
fn quant(blk: &[u8], ib: usize, e: usize) -> u8 {
    let qs = &blk[8 + 16 * ib..][..16];
    if e < 16 { qs[e] & 15 } else { qs[e - 16] >> 4 }
}

impl PackedIq4Xs {
    /// Whether a `rows × cols` IQ4_XS weight can be packed.
    pub fn fits(rows: usize, cols: usize) -> bool {
        panels::fits(rows, cols, QK_K)
    }

    /// Packs `rows` IQ4_XS rows of `cols` (the file's bytes, row after row).
    pub fn pack(data: &[u8], rows: usize, cols: usize) -> Self {
        assert!(Self::fits(rows, cols), "packed IQ4_XS shape {rows}x{cols}");
        let nb = cols / QK_K;
        let rb = nb * XS_BLOCK;
        assert_eq!(data.len(), rows * rb, "IQ4_XS rows");
        let mut lines = panels::Lines::zeroed(rows / NR * nb * LINES);
        for (pb, l) in lines.chunks_exact_mut(LINES).enumerate() {
            let (p, b) = (pb / nb, pb % nb);
            let mut head = [0u8; 128 + 32];
            for r in 0..NR {
                let blk = &data[(p * NR + r) * rb + b * XS_BLOCK..][..XS_BLOCK];
                head[2 * r..2 * r + 2].copy_from_slice(&blk[0..2]);
                for ib in 0..8 {
                    head[SCALES_AT + ib * NR + r] = (xs_scale(blk, ib) as i8 - 32) as u8;
                    for i in 0..4 {
                        for e in 0..4 {
                            l[quant_line(ib, i)].0[r * 4 + e] =
                                quant(blk, ib, 4 * i + e) | quant(blk, ib, 16 + 4 * i + e) << 4;
                        }
                    }
                }
            }
            l[0].0.copy_from_slice(&head[..64]);
            l[1].0.copy_from_slice(&head[64..128]);
            l[2].0[..32].copy_from_slice(&head[128..]);
        }
        Self { rows, cols, lines }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Quant `e` of sub-block `ib` of block `b` of row `r`, the sub-block's scale (`ls − 32`) and the block's `d`.
    #[cfg(test)]
    fn get(&self, r: usize, b: usize, ib: usize, e: usize) -> (u8, i8, f32) {
        let nb = self.cols / QK_K;
        let (p, rr) = (r / NR, r % NR);
        let l = &self.lines[(p * nb + b) * LINES..][..LINES];
        let (i, shift) = if e < 16 {
            (e / 4, 0)
        } else {
            ((e - 16) / 4, 4)
        };
        let q = (l[quant_line(ib, i)].0[rr * 4 + e % 4] >> shift) & 15;
        let at = SCALES_AT + ib * NR + rr;
        let sc = l[at / 64].0[at % 64] as i8;
        (q, sc, f16_at(&l[0].0, rr * 2))
    }
}

/// The plain twin: one IQ4_XS row (the file's layout) with one Q8_K activation row, the kernels' integers and float
/// steps.
pub fn dot_reference(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for b in 0..n / QK_K {
        let (xb, yb) = (&x[b * XS_BLOCK..][..XS_BLOCK], &y[b * A_BLOCK..][..A_BLOCK]);
        let mut sum = 0i32;
        for ib in 0..8 {
            let dot: i32 = (0..32)
                .map(|e| {
                    KVALUES[quant(xb, ib, e) as usize] as i32 * yb[4 + 32 * ib + e] as i8 as i32
                })
                .sum();
            sum += dot * (xs_scale(xb, ib) as i32 - 32);
        }
        let dy = f32::from_le_bytes([yb[0], yb[1], yb[2], yb[3]]);
        acc = (f16_at(xb, 0) * dy).mul_add(sum as f32, acc);
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
    w: &PackedIq4Xs,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: the caller's.
    unsafe { panels::matmul(w, panels, n_acts, &act, out, ldo) }
}

/// Per activation row and block: the scale, and `−128·Σy` of each sub-block of 32.
#[derive(Clone, Copy, Default)]
pub struct ActBlock {
    d: f32,
    neg128sum: [i32; 8],
}

impl PanelKernel for PackedIq4Xs {
    type Side = ActBlock;

    fn rows(&self) -> usize {
        self.rows
    }

    fn side_len(&self) -> usize {
        self.cols / QK_K
    }

    fn act_bytes(&self) -> usize {
        self.cols / QK_K * A_BLOCK
    }

    fn side(&self, y: &[u8], out: &mut [ActBlock]) {
        for (yb, o) in y.chunks_exact(A_BLOCK).zip(out) {
            // Q8_K keeps the sums of each 16 values: two per sub-block.
            let s = |k: usize| i16::from_le_bytes([yb[260 + 2 * k], yb[261 + 2 * k]]) as i32;
            *o = ActBlock {
                d: f32::from_le_bytes([yb[0], yb[1], yb[2], yb[3]]),
                neg128sum: std::array::from_fn(|ib| -128 * (s(2 * ib) + s(2 * ib + 1))),
            };
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        side: *const ActBlock,
        out: *mut f32,
        ldo: usize,
    ) {
        use std::arch::x86_64::*;
        let nb = self.cols / QK_K;
        // SAFETY (whole body): the trait's contract: panel p's lines, T rows of nb Q8_K blocks and their side data,
        // 16 outputs per row.
        unsafe {
            let base = self.lines.as_ptr().add(p * nb * LINES) as *const u8;
            let shifted: [u8; 16] = std::array::from_fn(|i| (KVALUES[i] as i32 + 128) as u8);
            let table = _mm512_broadcast_i32x4(_mm_loadu_si128(shifted.as_ptr() as *const __m128i));
            let m4 = _mm512_set1_epi8(0x0F);
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..nb {
                let l = base.add(b * LINES * 64);
                let dw = _mm512_cvtph_ps(_mm256_load_si256(l as *const __m256i));
                let mut sum = [_mm512_setzero_si512(); T];
                for ib in 0..8 {
                    let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(
                        l.add(SCALES_AT + ib * NR) as *const __m128i
                    ));
                    let mut dot: [__m512i; T] = std::array::from_fn(|t| {
                        _mm512_set1_epi32((*side.add(t * nb + b)).neg128sum[ib])
                    });
                    for i in 0..4 {
                        let q = _mm512_load_si512(l.add(quant_line(ib, i) * 64) as *const _);
                        let lo = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
                        let hi = _mm512_shuffle_epi8(
                            table,
                            _mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                        );
                        for t in 0..T {
                            let y = ys[t].add(b * A_BLOCK + 4 + 32 * ib + 4 * i);
                            let y0 = _mm512_set1_epi32((y as *const i32).read_unaligned());
                            let y1 = _mm512_set1_epi32((y.add(16) as *const i32).read_unaligned());
                            dot[t] = _mm512_dpbusd_epi32(dot[t], lo, y0);
                            dot[t] = _mm512_dpbusd_epi32(dot[t], hi, y1);
                        }
                    }
                    for t in 0..T {
                        sum[t] = _mm512_add_epi32(sum[t], _mm512_mullo_epi32(dot[t], sc));
                    }
                }
                for t in 0..T {
                    let dy = _mm512_set1_ps((*side.add(t * nb + b)).d);
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_mul_ps(dw, dy), _mm512_cvtepi32_ps(sum[t]), acc[t]);
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
        let mut rng = Rng::new(5);
        let (rows, cols) = (32, 512);
        let data = random_row(GgmlType::IQ4_XS, rows * cols / QK_K, &mut rng);
        let p = PackedIq4Xs::pack(&data, rows, cols);
        let rb = cols / QK_K * XS_BLOCK;
        for r in 0..rows {
            for b in 0..cols / QK_K {
                let blk = &data[r * rb + b * XS_BLOCK..][..XS_BLOCK];
                for ib in 0..8 {
                    for e in 0..32 {
                        let want = (
                            quant(blk, ib, e),
                            xs_scale(blk, ib) as i8 - 32,
                            f16_at(blk, 0),
                        );
                        assert_eq!(p.get(r, b, ib, e), want, "r {r} b {b} ib {ib} e {e}");
                    }
                }
            }
        }
        assert!(
            p.bytes() <= rows * rb * 104 / 100,
            "{} vs {}",
            p.bytes(),
            rows * rb
        );
    }

    /// The twin against the dequantizing reference (close: float sums in another order), and the one-row
    /// kernels of every tier give its bits.
    #[test]
    fn twin_matches_the_reference_and_the_one_row_kernels() {
        let mut rng = Rng::new(9);
        let cols = 1024;
        let x = random_row(GgmlType::IQ4_XS, cols / QK_K, &mut rng);
        for y in panels::testing::acts(GgmlType::Q8_K, 4, cols, &mut rng) {
            let want = crate::quant::reference::dot_fn(GgmlType::IQ4_XS)(cols, &x, &y);
            let got = dot_reference(cols, &x, &y);
            assert!(
                (want - got).abs() <= 1e-3 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
            for level in crate::quant::available_levels()
                .into_iter()
                .filter(|l| l.avx2())
            {
                let fast = crate::quant::dot_fn_at(level, GgmlType::IQ4_XS)(cols, &x, &y);
                assert_eq!(fast.to_bits(), got.to_bits(), "{level:?}");
            }
        }
    }

    /// The kernel gives the twin's bits for every row and activation row, however the rows are grouped.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_kernel_gives_the_twin_bits() {
        let mut rng = Rng::new(13);
        let (rows, cols) = (96, 768);
        let data = random_row(GgmlType::IQ4_XS, rows * cols / QK_K, &mut rng);
        let p = PackedIq4Xs::pack(&data, rows, cols);
        let rb = cols / QK_K * XS_BLOCK;
        panels::testing::kernel_gives_twin_bits(
            &p,
            &data,
            (rb, cols, 1),
            GgmlType::Q8_K,
            dot_reference,
            &mut rng,
        );
    }
}
