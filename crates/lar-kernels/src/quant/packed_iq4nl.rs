//! IQ4_NL and Q4_0 weights repacked sixteen rows side by side, and the AVX-512 VNNI kernel that multiplies them with
//! Q8_0 activation rows (the prompt's matrix products and the decode's mat-vec; most of an IQ4_XS file whose rows
//! are not a multiple of 256 wide is IQ4_NL, as llama-quantize falls back).
//!
//! Both blocks are 32 weights `w = d·VALUES[q]` with 4-bit `q` and the same 18 bytes (an f16 `d` and 16 bytes of
//! nibbles); they differ only in the table: IQ4_NL's non-linear one ([`super::iq4`]), Q4_0's `q − 8`. Packed, two blocks of a panel of 16 rows take nine 64-byte lines, the file's bytes in the order the
//! kernel reads them: one line with both blocks' sixteen `d` as f16, then per block ([`quant_line`]) four lines of
//! nibbles, line `i` holding for each row its quants `4i..4i+4` (low nibbles) and `16 + 4i..+4` (high nibbles),
//! `[row][4 bytes]`, what one `vpdpbusd` multiplies with a broadcast word.
//!
//! `vpshufb` looks each nibble up in the table shifted to unsigned bytes (`VALUES + 128`: 1..241 for IQ4_NL), so
//! `Σ VALUES[q]·y = Σ (VALUES[q] + 128)·y − 128·Σy`: a block's integer accumulator starts at `−128·Σy`, then
//! `acc = fma(float(Σ), d·dy, acc)` per block. Every weight of this layout goes through this kernel (decode as
//! well as prompts), so a token's result does not depend on how it was batched; [`dot_reference`] is the plain
//! twin.

use super::GgmlType;
use super::iq4::KVALUES;
use super::panels::{self, PanelKernel};
use super::{QK, f16_at};

pub use super::panels::NR;
/// 64-byte lines per (panel, pair of blocks).
const LINES: usize = 9;
/// The line of both blocks' `d`.
const D_LINE: usize = 0;

/// Line `i` (0..4) of block `h`'s nibbles.
const fn quant_line(h: usize, i: usize) -> usize {
    1 + 4 * h + i
}

/// Bytes of an IQ4_NL and a Q8_0 block.
const W_BLOCK: usize = 18;
const A_BLOCK: usize = 34;

/// An IQ4_NL or Q4_0 weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 64), repacked.
pub struct PackedIq4Nl {
    pub rows: usize,
    pub cols: usize,
    /// The values the nibbles stand for.
    values: [i8; 16],
    lines: panels::Lines,
}

/// The values a nibble of `ty` (IQ4_NL or Q4_0) stands for.
pub fn values(ty: GgmlType) -> [i8; 16] {
    match ty {
        GgmlType::IQ4_NL => KVALUES,
        GgmlType::Q4_0 => std::array::from_fn(|i| i as i8 - 8),
        other => panic!("{} is not a 4-bit table type", other.name()),
    }
}

/// Quant `e` (0..32) of an IQ4_NL block.
fn quant(blk: &[u8], e: usize) -> u8 {
    if e < 16 {
        blk[2 + e] & 15
    } else {
        blk[2 + e - 16] >> 4
    }
}

impl PackedIq4Nl {
    /// Whether a `rows × cols` IQ4_NL or Q4_0 weight can be packed.
    pub fn fits(rows: usize, cols: usize) -> bool {
        panels::fits(rows, cols, 2 * QK)
    }

    /// Packs `rows` rows of `cols` of `ty` (IQ4_NL or Q4_0; the file's bytes, row after row).
    pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Self {
        let values = values(ty);
        assert!(
            Self::fits(rows, cols),
            "packed {} shape {rows}x{cols}",
            ty.name()
        );
        let (nb, pairs) = (cols / QK, cols / (2 * QK));
        let rb = nb * W_BLOCK;
        assert_eq!(data.len(), rows * rb, "IQ4_NL rows");
        let mut lines = panels::Lines::zeroed(rows / NR * pairs * LINES);
        for (pp, l) in lines.chunks_exact_mut(LINES).enumerate() {
            let (p, pair) = (pp / pairs, pp % pairs);
            for h in 0..2 {
                let b = 2 * pair + h;
                for r in 0..NR {
                    let blk = &data[(p * NR + r) * rb + b * W_BLOCK..][..W_BLOCK];
                    for i in 0..4 {
                        for e in 0..4 {
                            l[quant_line(h, i)].0[r * 4 + e] =
                                quant(blk, 4 * i + e) | quant(blk, 16 + 4 * i + e) << 4;
                        }
                    }
                    l[D_LINE].0[h * 32 + r * 2..h * 32 + r * 2 + 2].copy_from_slice(&blk[0..2]);
                }
            }
        }
        Self {
            rows,
            cols,
            values,
            lines,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Quant `e` of block `b` of row `r` and the block's `d`.
    #[cfg(test)]
    fn get(&self, r: usize, b: usize, e: usize) -> (u8, f32) {
        let pairs = self.cols / (2 * QK);
        let (p, rr, h) = (r / NR, r % NR, b % 2);
        let l = &self.lines[(p * pairs + b / 2) * LINES..][..LINES];
        let (i, shift) = if e < 16 {
            (e / 4, 0)
        } else {
            ((e - 16) / 4, 4)
        };
        let q = (l[quant_line(h, i)].0[rr * 4 + e % 4] >> shift) & 15;
        (q, f16_at(&l[D_LINE].0, h * 32 + rr * 2))
    }
}

/// The plain twin: one row of the type whose table is `values` (the file's layout) with one Q8_0 activation row,
/// the kernel's integers and float steps.
pub fn dot_reference(values: &[i8; 16], n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut acc = 0f32;
    for b in 0..n / QK {
        let (xb, yb) = (&x[b * W_BLOCK..][..W_BLOCK], &y[b * A_BLOCK..][..A_BLOCK]);
        let dot: i32 = (0..32)
            .map(|e| values[quant(xb, e) as usize] as i32 * yb[2 + e] as i8 as i32)
            .sum();
        acc = (dot as f32).mul_add(f16_at(xb, 0) * f16_at(yb, 0), acc);
    }
    acc
}

/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and `n_acts` Q8_0 activation rows
/// (`act(t)`, `cols/32` blocks each). Needs AVX-512 VNNI.
///
/// # Safety
/// As [`panels::matmul`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul<'a>(
    w: &PackedIq4Nl,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    // SAFETY: the caller's.
    unsafe { panels::matmul(w, panels, n_acts, &act, out, ldo) }
}

/// Per activation row and block: the scale as f32, and `−128·Σy`.
#[derive(Clone, Copy, Default)]
pub struct ActBlock {
    d: f32,
    neg128sum: i32,
}

impl PanelKernel for PackedIq4Nl {
    type Side = ActBlock;

    fn rows(&self) -> usize {
        self.rows
    }

    fn side_len(&self) -> usize {
        self.cols / QK
    }

    fn act_bytes(&self) -> usize {
        self.cols / QK * A_BLOCK
    }

    fn side(&self, y: &[u8], out: &mut [ActBlock]) {
        for (yb, o) in y.chunks_exact(A_BLOCK).zip(out) {
            let sum: i32 = yb[2..].iter().map(|&v| v as i8 as i32).sum();
            *o = ActBlock {
                d: f16_at(yb, 0),
                neg128sum: -128 * sum,
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
        let (nb, pairs) = (self.cols / QK, self.cols / (2 * QK));
        // SAFETY (whole body): the trait's contract: panel p's lines, T rows of nb Q8_0 blocks and their side data,
        // 16 outputs per row.
        unsafe {
            let base = self.lines.as_ptr().add(p * pairs * LINES) as *const u8;
            let shifted: [u8; 16] = std::array::from_fn(|i| (self.values[i] as i32 + 128) as u8);
            let table = _mm512_broadcast_i32x4(_mm_loadu_si128(shifted.as_ptr() as *const __m128i));
            let m4 = _mm512_set1_epi8(0x0F);
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..nb {
                let (l, h) = (base.add(b / 2 * LINES * 64), b % 2);
                let dw = _mm512_cvtph_ps(_mm256_load_si256(
                    l.add(D_LINE * 64 + 32 * h) as *const __m256i
                ));
                let mut dot: [__m512i; T] =
                    std::array::from_fn(|t| _mm512_set1_epi32((*side.add(t * nb + b)).neg128sum));
                for i in 0..4 {
                    let q = _mm512_load_si512(l.add(quant_line(h, i) * 64) as *const _);
                    let lo = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
                    let hi =
                        _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
                    for t in 0..T {
                        let y = ys[t].add(b * A_BLOCK + 2 + 4 * i);
                        let y0 = _mm512_set1_epi32((y as *const i32).read_unaligned());
                        let y1 = _mm512_set1_epi32((y.add(16) as *const i32).read_unaligned());
                        dot[t] = _mm512_dpbusd_epi32(dot[t], lo, y0);
                        dot[t] = _mm512_dpbusd_epi32(dot[t], hi, y1);
                    }
                }
                for t in 0..T {
                    let dy = _mm512_set1_ps((*side.add(t * nb + b)).d);
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(dw, dy), acc[t]);
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

    const TYPES: [GgmlType; 2] = [GgmlType::IQ4_NL, GgmlType::Q4_0];

    #[test]
    fn packing_keeps_every_quant_and_scale() {
        let mut rng = Rng::new(5);
        let (rows, cols) = (32, 128);
        let data = random_row(GgmlType::IQ4_NL, rows * cols / QK, &mut rng);
        let p = PackedIq4Nl::pack(GgmlType::IQ4_NL, &data, rows, cols);
        let rb = cols / QK * W_BLOCK;
        for r in 0..rows {
            for b in 0..cols / QK {
                let blk = &data[r * rb + b * W_BLOCK..][..W_BLOCK];
                for e in 0..32 {
                    assert_eq!(
                        p.get(r, b, e),
                        (quant(blk, e), f16_at(blk, 0)),
                        "r {r} b {b} e {e}"
                    );
                }
            }
        }
        assert_eq!(p.bytes(), rows * rb);
    }

    /// The twin against the dequantizing reference (close: float sums in another order).
    #[test]
    fn twin_matches_the_dequantizing_reference() {
        let mut rng = Rng::new(9);
        let cols = 640;
        for ty in TYPES {
            let x = random_row(ty, cols / QK, &mut rng);
            for y in panels::testing::acts(GgmlType::Q8_0, 4, cols, &mut rng) {
                let want = crate::quant::reference::dot_fn(ty)(cols, &x, &y);
                let got = dot_reference(&values(ty), cols, &x, &y);
                assert!(
                    (want - got).abs() <= 1e-3 * (1.0 + want.abs()),
                    "{ty:?}: {got} vs {want}"
                );
            }
        }
    }

    /// The kernel gives the twin's bits for every row and activation row, however the rows are grouped.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn packed_kernel_gives_the_twin_bits() {
        let mut rng = Rng::new(13);
        let (rows, cols) = (96, 640);
        for ty in TYPES {
            let data = random_row(ty, rows * cols / QK, &mut rng);
            let p = PackedIq4Nl::pack(ty, &data, rows, cols);
            let rb = cols / QK * W_BLOCK;
            let twin = match ty {
                GgmlType::IQ4_NL => |n, x: &[u8], y: &[u8]| dot_reference(&KVALUES, n, x, y),
                _ => |n, x: &[u8], y: &[u8]| dot_reference(&values(GgmlType::Q4_0), n, x, y),
            };
            panels::testing::kernel_gives_twin_bits(
                &p,
                &data,
                (rb, cols, 1),
                GgmlType::Q8_0,
                twin,
                &mut rng,
            );
        }
    }
}
