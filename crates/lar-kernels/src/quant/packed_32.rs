//! The 32-element block types dotted with Q8_0 activations, repacked sixteen rows side by side, and the AVX-512
//! VNNI kernel that multiplies them (the prompt's matrix products and the decode's mat-vec): Q4_0, IQ4_NL, MXFP4 and
//! Q8_0. MXFP4's E8M0 scale is stored as IQ4_NL's f16 `d` (exact: packed only when every scale of the tensor fits
//! an f16, [`mxfp4_scales_fit`]), its nibbles look up the E2M1 table.
//! (Q5_0, whose fifth bits need masks, has its own panels in [`super::packed_q5_0`].)
//!
//! Each block is 32 weights `w = d·v(q)` with an f16 `d`: Q4_0 and IQ4_NL hold 16 bytes of nibbles (low nibbles
//! are quants 0-15, high ones 16-31) and `v` is a table of 16 values (`q − 8`, or IQ4_NL's non-linear one in
//! [`super::iq4`]); Q8_0 holds 32 int8 quants, `v(q) = q`. Packed, two blocks of a panel of 16 rows take one line
//! with both blocks' sixteen `d` as f16, then per block ([`Packed32::quant_line`]) the quant lines in the order the
//! kernel reads them: line `i` holds for each row, `[row][4 bytes]`, its quants `4i..4i+4` (four nibble lines: and
//! in the high nibbles `16 + 4i..+4`; eight byte lines for Q8_0), what one `vpdpbusd` multiplies with a broadcast
//! word of activations.
//!
//! `vpdpbusd` wants unsigned weights: nibbles are looked up by `vpshufb` in the table shifted by +128 (1..241 for
//! IQ4_NL), Q8_0's bytes are stored with their sign bit flipped (`q + 128`), so `Σ v·y = Σ (v + 128)·y − 128·Σy`: a
//! block's integer accumulator starts at `−128·Σy`, then `acc = fma(float(Σ), d·dy, acc)` per block. Every weight
//! of this layout goes through this kernel (decode as well as prompts), so a token's result does not depend on how
//! it was batched; [`dot_reference`] is the plain twin.

use super::iq4::KVALUES;
use super::panels::{self, PanelKernel};
use super::{GgmlType, QK, f16_at};

pub use super::panels::NR;
/// The line of both blocks' `d`.
const D_LINE: usize = 0;
/// Bytes of a Q8_0 activation block.
const A_BLOCK: usize = 34;

/// How a block's quants are stored and what they stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quants {
    /// 16 bytes of nibbles standing for the table's values (Q4_0, IQ4_NL).
    Table([i8; 16]),
    /// 32 int8 (Q8_0).
    Bytes,
}

impl Quants {
    fn of(ty: GgmlType) -> Option<Quants> {
        match ty {
            GgmlType::IQ4_NL => Some(Quants::Table(KVALUES)),
            GgmlType::MXFP4 => Some(Quants::Table(super::fp4::KVALUES)),
            GgmlType::Q4_0 => Some(Quants::Table(std::array::from_fn(|i| i as i8 - 8))),
            GgmlType::Q8_0 => Some(Quants::Bytes),
            _ => None,
        }
    }

    /// Bytes of a weight block as packed (MXFP4's 17 become 18: [`block18`]).
    #[cfg(test)]
    fn block_bytes(self) -> usize {
        match self {
            Quants::Table(_) => 18,
            Quants::Bytes => 34,
        }
    }

    /// 64-byte lines per (panel, pair of blocks): the `d` line and both blocks' quant lines.
    fn pair_lines(self) -> usize {
        1 + 2 * self.lines()
    }

    /// Line `i` of block `h`'s (0, 1) quants within a pair.
    fn quant_line(self, h: usize, i: usize) -> usize {
        1 + self.lines() * h + i
    }

    /// Quant lines per block.
    fn lines(self) -> usize {
        match self {
            Quants::Table(_) => 4,
            Quants::Bytes => 8,
        }
    }

    /// The value of quant `e` (0..32) of a block.
    fn value(self, blk: &[u8], e: usize) -> i32 {
        match self {
            Quants::Table(t) => {
                let q = if e < 16 {
                    blk[2 + e] & 15
                } else {
                    blk[2 + e - 16] >> 4
                };
                t[q as usize] as i32
            }
            Quants::Bytes => blk[2 + e] as i8 as i32,
        }
    }

    /// The packed byte at place `e` (0..4) of row `r`'s word in quant line `i` of a block.
    fn packed_byte(self, blk: &[u8], i: usize, e: usize) -> u8 {
        match self {
            // The file's byte already holds quant 4i+e (low nibble) and 16+4i+e (high).
            Quants::Table(_) => blk[2 + 4 * i + e],
            Quants::Bytes => blk[2 + 4 * i + e] ^ 0x80,
        }
    }
}

/// Whether every MXFP4 block of `data` has a scale an f16 holds exactly (`2^-24 ..= 2^15`: E8M0 104..=143), so
/// the blocks can be packed as IQ4_NL's are, with that f16 as `d` ([`block18`]).
pub fn mxfp4_scales_fit(data: &[u8]) -> bool {
    data.chunks_exact(17).all(|b| (104..=143).contains(&b[0]))
}

/// A block of `ty` in the 18-byte form of Q4_0/IQ4_NL (f16 `d`, then the 16 bytes of nibbles): MXFP4's E8M0 scale
/// (halved, as ggml uses it) becomes that `d`, exactly where [`mxfp4_scales_fit`]. Other types as they are.
fn block18(ty: GgmlType, blk: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if ty != GgmlType::MXFP4 {
        return std::borrow::Cow::Borrowed(blk);
    }
    let mut b = vec![0u8; 18];
    b[..2].copy_from_slice(&half::f16::from_f32(super::fp4::e8m0_half(blk[0])).to_le_bytes());
    b[2..].copy_from_slice(&blk[1..17]);
    std::borrow::Cow::Owned(b)
}

/// A Q4_0, IQ4_NL, MXFP4 or Q8_0 weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 64), repacked.
pub struct Packed32 {
    pub rows: usize,
    pub cols: usize,
    quants: Quants,
    lines: panels::Lines,
}

impl Packed32 {
    /// Whether a `rows × cols` weight of `ty` can be packed.
    pub fn fits(ty: GgmlType, rows: usize, cols: usize) -> bool {
        Quants::of(ty).is_some() && panels::fits(rows, cols, 2 * QK)
    }

    /// 64-byte lines per (panel, pair of blocks).
    fn pair_lines(&self) -> usize {
        self.quants.pair_lines()
    }

    /// Line `i` of block `h`'s (0, 1) quants within a pair.
    fn quant_line(&self, h: usize, i: usize) -> usize {
        self.quants.quant_line(h, i)
    }

    /// Packs `rows` rows of `cols` of `ty` (the file's bytes, row after row).
    pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Self {
        assert!(
            Self::fits(ty, rows, cols),
            "packed {} shape {rows}x{cols}",
            ty.name()
        );
        let quants = Quants::of(ty).expect("a packed 32-block type (fits)");
        let pairs = cols / (2 * QK);
        let (wb, rb) = (ty.type_size(), ty.row_bytes(cols));
        assert_eq!(data.len(), rows * rb, "{} rows", ty.name());
        let per = quants.pair_lines();
        let mut lines = panels::Lines::zeroed(rows / NR * pairs * per);
        for (pp, l) in lines.chunks_exact_mut(per).enumerate() {
            let (p, pair) = (pp / pairs, pp % pairs);
            for h in 0..2 {
                let b = 2 * pair + h;
                for r in 0..NR {
                    let blk = block18(ty, &data[(p * NR + r) * rb + b * wb..][..wb]);
                    for i in 0..quants.lines() {
                        for e in 0..4 {
                            l[quants.quant_line(h, i)].0[r * 4 + e] =
                                quants.packed_byte(&blk, i, e);
                        }
                    }
                    l[D_LINE].0[h * 32 + r * 2..h * 32 + r * 2 + 2].copy_from_slice(&blk[0..2]);
                }
            }
        }
        Self {
            rows,
            cols,
            quants,
            lines,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// The value of quant `e` of block `b` of row `r`, and the block's `d`.
    #[cfg(test)]
    fn get(&self, r: usize, b: usize, e: usize) -> (i32, f32) {
        let pairs = self.cols / (2 * QK);
        let (p, rr, h) = (r / NR, r % NR, b % 2);
        let l = &self.lines[(p * pairs + b / 2) * self.pair_lines()..][..self.pair_lines()];
        let v = match self.quants {
            Quants::Table(t) => {
                let (i, shift) = if e < 16 {
                    (e / 4, 0)
                } else {
                    ((e - 16) / 4, 4)
                };
                t[((l[self.quant_line(h, i)].0[rr * 4 + e % 4] >> shift) & 15) as usize] as i32
            }
            Quants::Bytes => (l[self.quant_line(h, e / 4)].0[rr * 4 + e % 4] ^ 0x80) as i8 as i32,
        };
        (v, f16_at(&l[D_LINE].0, h * 32 + rr * 2))
    }
}

/// The plain twin: one row of `ty` (Q4_0, IQ4_NL, MXFP4 or Q8_0; the file's layout) with one Q8_0 activation row, the
/// kernel's integers and float steps.
pub fn dot_reference(ty: GgmlType, n: usize, x: &[u8], y: &[u8]) -> f32 {
    let quants = Quants::of(ty).expect("a packed 32-block type");
    let wb = ty.type_size();
    let mut acc = 0f32;
    for b in 0..n / QK {
        let (xb, yb) = (
            block18(ty, &x[b * wb..][..wb]),
            &y[b * A_BLOCK..][..A_BLOCK],
        );
        let dot: i32 = (0..32)
            .map(|e| quants.value(&xb, e) * yb[2 + e] as i8 as i32)
            .sum();
        acc = (dot as f32).mul_add(f16_at(&xb, 0) * f16_at(yb, 0), acc);
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
    w: &Packed32,
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

/// `dot[t] += q · (the four activations at byte `at` of row t)` for each of the `T` rows (inlined into the
/// kernel, whose target features it runs under).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dots<const T: usize>(
    dot: &mut [std::arch::x86_64::__m512i; T],
    ys: &[*const u8; T],
    at: usize,
    q: std::arch::x86_64::__m512i,
) {
    use std::arch::x86_64::*;
    // SAFETY: the kernel's: each row holds its blocks' quants at `at..at + 4`.
    unsafe {
        for t in 0..T {
            let y = _mm512_set1_epi32((ys[t].add(at) as *const i32).read_unaligned());
            dot[t] = _mm512_dpbusd_epi32(dot[t], q, y);
        }
    }
}

impl PanelKernel for Packed32 {
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
        let (nb, pairs, per) = (self.cols / QK, self.cols / (2 * QK), self.pair_lines());
        // SAFETY (whole body): the trait's contract: panel p's lines, T rows of nb Q8_0 blocks and their side data,
        // 16 outputs per row.
        unsafe {
            let base = self.lines.as_ptr().add(p * pairs * per) as *const u8;
            let table = match self.quants {
                Quants::Table(t) => {
                    let shifted: [u8; 16] = std::array::from_fn(|i| (t[i] as i32 + 128) as u8);
                    _mm512_broadcast_i32x4(_mm_loadu_si128(shifted.as_ptr() as *const __m128i))
                }
                Quants::Bytes => _mm512_setzero_si512(),
            };
            let m4 = _mm512_set1_epi8(0x0F);
            let mut acc = [_mm512_setzero_ps(); T];
            for b in 0..nb {
                let (l, h) = (base.add(b / 2 * per * 64), b % 2);
                let dw = _mm512_cvtph_ps(_mm256_load_si256(
                    l.add(D_LINE * 64 + 32 * h) as *const __m256i
                ));
                let mut dot: [__m512i; T] =
                    std::array::from_fn(|t| _mm512_set1_epi32((*side.add(t * nb + b)).neg128sum));
                macro_rules! line {
                    ($i:expr) => {
                        _mm512_load_si512(l.add(self.quant_line(h, $i) * 64) as *const _)
                    };
                }
                let at = b * A_BLOCK + 2;
                match self.quants {
                    Quants::Table(_) => {
                        for i in 0..4 {
                            let q = line!(i);
                            let lo = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
                            let hi = _mm512_shuffle_epi8(
                                table,
                                _mm512_and_si512(_mm512_srli_epi16(q, 4), m4),
                            );
                            dots(&mut dot, &ys, at + 4 * i, lo);
                            dots(&mut dot, &ys, at + 16 + 4 * i, hi);
                        }
                    }
                    Quants::Bytes => {
                        for i in 0..8 {
                            dots(&mut dot, &ys, at + 4 * i, line!(i));
                        }
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
    use crate::quant::tests::{Rng, random_row};

    const TYPES: [GgmlType; 4] = [
        GgmlType::Q4_0,
        GgmlType::IQ4_NL,
        GgmlType::MXFP4,
        GgmlType::Q8_0,
    ];

    #[test]
    fn packing_keeps_every_quant_and_scale() {
        let mut rng = Rng::new(5);
        let (rows, cols) = (32, 128);
        for ty in TYPES {
            let data = random_row(ty, rows * cols / QK, &mut rng);
            let p = Packed32::pack(ty, &data, rows, cols);
            let (quants, wb) = (Quants::of(ty).unwrap(), ty.type_size());
            let rb = cols / QK * wb;
            for r in 0..rows {
                for b in 0..cols / QK {
                    let blk = block18(ty, &data[r * rb + b * wb..][..wb]);
                    for e in 0..32 {
                        let want = (quants.value(&blk, e), f16_at(&blk, 0));
                        assert_eq!(p.get(r, b, e), want, "{ty:?} r {r} b {b} e {e}");
                    }
                }
            }
            assert_eq!(p.bytes(), rows * cols / QK * quants.block_bytes(), "{ty:?}");
        }
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
                let got = dot_reference(ty, cols, &x, &y);
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
            let p = Packed32::pack(ty, &data, rows, cols);
            let twin = match ty {
                GgmlType::Q4_0 => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::Q4_0, n, x, y),
                GgmlType::IQ4_NL => {
                    |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::IQ4_NL, n, x, y)
                }
                GgmlType::MXFP4 => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::MXFP4, n, x, y),
                _ => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::Q8_0, n, x, y),
            };
            panels::testing::kernel_gives_twin_bits(
                &p,
                &data,
                (ty.row_bytes(cols), cols, 1),
                GgmlType::Q8_0,
                twin,
                &mut rng,
            );
        }
    }
}
