//! F16, BF16 and F32 weights repacked sixteen rows side by side, and the AVX-512 kernel that multiplies them with
//! f32 activation rows: the prompt's matrix products (a register-blocked GEMM) and the decode's mat-vec.
//!
//! The one-row kernels ([`super::avx2`]) convert a weight row's elements once per activation row they meet, and
//! reduce each dot product horizontally: fine for decode, a fifth of llama.cpp's speed for prompts. Here a panel of
//! 16 rows is stored so that one 64-byte line holds, for every row, its elements at two consecutive columns (F16,
//! BF16) or at one (F32), `[k][row]`: each column's 16 weights convert to one f32 vector, which is multiplied with
//! the broadcast activation of up to eight rows at once (outer products, no horizontal sums). The file's bytes move,
//! nothing is rounded: F16 and BF16 widen to f32 exactly, and the products are f32 FMAs.
//!
//! Every (row, activation) sums its products in one FMA chain, column after column, whatever group of activation
//! rows it is in, so decode (one row) and prompt give a token the same bits. [`dot_reference`] is the plain twin.
//! Decode (one activation row) takes four panels at a time, so four chains (eight on AVX2) hide the FMA latency.
//!
//! On AVX2 (no AVX-512) the same panels are read as two halves of eight rows: a column's two ymm vectors meet up
//! to six activation rows at once (twelve accumulators), with the same FMAs per (row, activation) in the same
//! order, so both tiers give the same bits. Six rows per column give a column's two converts and six broadcasts
//! twelve FMAs (three, with two chains each, gave them six): +11-12% on F16/BF16 prompts on AMD Zen 3.

use super::panels::{self, PanelKernel, PanelKernelAvx2};
use super::{GgmlType, f16_at, f32_at};

pub use super::panels::NR;

/// Columns a packed weight must be a multiple of (a whole line of F16/BF16 per column pair, and aligned pairs).
const COL_BLOCK: usize = 32;

/// An F16, BF16 or F32 weight of `rows` (a multiple of [`NR`]) × `cols` (a multiple of 32), repacked.
pub struct PackedFloat {
    pub rows: usize,
    pub cols: usize,
    pub ty: GgmlType,
    lines: panels::Lines,
}

/// Bytes of one element of a float type this module packs.
fn elem_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::F16 | GgmlType::BF16 => Some(2),
        GgmlType::F32 => Some(4),
        _ => None,
    }
}

/// The element at byte `i` of a row of `ty`, as f32 (exact).
#[inline]
fn elem_at(ty: GgmlType, b: &[u8], i: usize) -> f32 {
    match ty {
        GgmlType::F16 => f16_at(b, i),
        GgmlType::BF16 => f32::from_bits((u16::from_le_bytes([b[i], b[i + 1]]) as u32) << 16),
        _ => f32_at(b, i),
    }
}

impl PackedFloat {
    /// Whether a `rows × cols` weight of `ty` can be packed.
    pub fn fits(ty: GgmlType, rows: usize, cols: usize) -> bool {
        elem_bytes(ty).is_some() && panels::fits(rows, cols, COL_BLOCK)
    }

    /// Packs `rows` rows of `cols` elements of `ty` (the file's bytes, row after row).
    pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Self {
        assert!(
            Self::fits(ty, rows, cols),
            "packed {} shape {rows}x{cols}",
            ty.name()
        );
        let s = elem_bytes(ty).expect("a float type (fits)");
        let rb = cols * s;
        assert_eq!(data.len(), rows * rb, "{} rows", ty.name());
        let panel_bytes = NR * rb;
        let mut lines = panels::Lines::zeroed(rows * rb / 64);
        let bytes = lines.as_bytes_mut();
        for (p, dst) in bytes.chunks_exact_mut(panel_bytes).enumerate() {
            for r in 0..NR {
                let row = &data[(p * NR + r) * rb..][..rb];
                for (k, e) in row.chunks_exact(s).enumerate() {
                    let at = (k * NR + r) * s;
                    dst[at..at + s].copy_from_slice(e);
                }
            }
        }
        Self {
            rows,
            cols,
            ty,
            lines,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lines.len() * 64
    }

    /// Panel `p`'s lines: for each column pair (F16, BF16) or column (F32), its 16 rows' elements.
    pub fn panel_bytes(&self, p: usize) -> &[u8] {
        let s = elem_bytes(self.ty).expect("a float type");
        &self.lines.as_bytes()[p * self.cols * NR * s..][..self.cols * NR * s]
    }

    /// Element `(r, k)` as f32 (for the tests).
    pub fn get(&self, r: usize, k: usize) -> f32 {
        let s = elem_bytes(self.ty).expect("a float type");
        let (p, rr) = (r / NR, r % NR);
        let at = (p * self.cols + k) * NR * s + rr * s;
        elem_at(self.ty, self.lines.as_bytes(), at)
    }
}

/// The plain twin: one row of `ty` (`x`, the file's layout) with one f32 activation row, the kernel's steps: the
/// columns summed in one FMA chain.
pub fn dot_reference(ty: GgmlType, n: usize, x: &[u8], y: &[u8]) -> f32 {
    let s = elem_bytes(ty).expect("a float type");
    (0..n).fold(0f32, |acc, k| {
        elem_at(ty, x, k * s).mul_add(f32_at(y, 4 * k), acc)
    })
}

/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` and `n_acts` f32 activation rows (`act(t)`,
/// `cols` elements each). Needs AVX-512 ([`super::SimdLevel::Avx512Vnni`]).
///
/// # Safety
/// As [`panels::matmul`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul<'a>(
    w: &PackedFloat,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    if n_acts == 1 {
        let y = act(0);
        assert!(y.len() >= w.act_bytes(), "activation row too short");
        assert!(panels.end * NR <= w.rows, "panels out of range");
        // SAFETY: the row's length and the panels are checked; the outputs and the CPU are the caller's.
        return unsafe { decode(w, panels, y.as_ptr() as *const f32, out) };
    }
    // SAFETY: the caller's.
    unsafe { panels::matmul(w, panels, n_acts, &act, out, ldo) }
}

/// As [`matmul`] on AVX2 + FMA + F16C ([`super::SimdLevel::Avx2`] and above), in groups of up to six activation
/// rows.
///
/// # Safety
/// As [`panels::matmul_avx2`].
#[cfg(target_arch = "x86_64")]
pub unsafe fn matmul_avx2<'a>(
    w: &PackedFloat,
    panels: std::ops::Range<usize>,
    n_acts: usize,
    act: impl Fn(usize) -> &'a [u8],
    out: *mut f32,
    ldo: usize,
) {
    if n_acts == 1 {
        let y = act(0);
        assert!(y.len() >= w.act_bytes(), "activation row too short");
        assert!(panels.end * NR <= w.rows, "panels out of range");
        // SAFETY: the row's length and the panels are checked; the outputs and the CPU are the caller's.
        return unsafe { decode_avx2(w, panels, y.as_ptr() as *const f32, out) };
    }
    // SAFETY: the caller's.
    unsafe { panels::matmul_avx2(w, panels, n_acts, &act, out, ldo) }
}

/// Panels decode multiplies at a time: a panel's single chain would wait on each FMA's result (and keep few of the
/// weight's lines in flight); four keep four (AVX-512) or eight (AVX2) chains going. Each (row, activation) still
/// sums its columns in order, so decode gives the prompt's bits.
const DECODE_PANELS: usize = 4;

/// One activation row `y` against `panels`, [`DECODE_PANELS`] at a time: `out[r]` for their rows.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; `y` holds `cols` f32, the panels are the weight's, `out` is writable at their rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode(w: &PackedFloat, panels: std::ops::Range<usize>, y: *const f32, out: *mut f32) {
    let mut p = panels.start;
    while p < panels.end {
        // SAFETY: panels p.. are the weight's (the group fits before `panels.end`); the rest is the caller's.
        unsafe {
            if panels.end - p >= DECODE_PANELS {
                w.decode_group::<DECODE_PANELS>(p, y, out.add(p * NR));
                p += DECODE_PANELS;
            } else {
                w.decode_group::<1>(p, y, out.add(p * NR));
                p += 1;
            }
        }
    }
}

/// As [`decode`] on AVX2 + FMA + F16C.
///
/// # Safety
/// AVX2, FMA and F16C; otherwise as [`decode`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_avx2(
    w: &PackedFloat,
    panels: std::ops::Range<usize>,
    y: *const f32,
    out: *mut f32,
) {
    let mut p = panels.start;
    while p < panels.end {
        // SAFETY: as in `decode`.
        unsafe {
            if panels.end - p >= DECODE_PANELS {
                w.decode_group_avx2::<DECODE_PANELS>(p, y, out.add(p * NR));
                p += DECODE_PANELS;
            } else {
                w.decode_group_avx2::<1>(p, y, out.add(p * NR));
                p += 1;
            }
        }
    }
}

/// The 16 weights of column `k` of a panel starting at `base`, as f32.
#[cfg(target_arch = "x86_64")]
macro_rules! load_column {
    (F16, $base:expr, $k:expr) => {
        _mm512_cvtph_ps(_mm256_load_si256($base.add($k * 32) as *const __m256i))
    };
    (BF16, $base:expr, $k:expr) => {
        _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_load_si256($base.add($k * 32) as *const __m256i)),
            16,
        ))
    };
    (F32, $base:expr, $k:expr) => {
        _mm512_load_ps($base.add($k * 64) as *const f32)
    };
}

/// The tile's loop for one element type: `T` activation rows against panel `p`, one chain per row.
#[cfg(target_arch = "x86_64")]
macro_rules! float_tile {
    ($ty:ident, $self:expr, $p:expr, $ys:expr, $out:expr, $ldo:expr, $s:expr) => {{
        let cols = $self.cols;
        let base = ($self.lines.as_ptr() as *const u8).add($p * cols * NR * $s);
        let ys: [*const f32; T] = std::array::from_fn(|t| $ys[t] as *const f32);
        let mut acc = [_mm512_setzero_ps(); T];
        for k in 0..cols {
            let w = load_column!($ty, base, k);
            for t in 0..T {
                let x = _mm512_set1_ps(ys[t].add(k).read_unaligned());
                acc[t] = _mm512_fmadd_ps(w, x, acc[t]);
            }
        }
        for t in 0..T {
            _mm512_storeu_ps($out.add(t * $ldo), acc[t]);
        }
    }};
}

/// The 16 weights of column `k` of a panel starting at `base`, as two f32 vectors of eight rows.
#[cfg(target_arch = "x86_64")]
macro_rules! load_halves {
    (F16, $base:expr, $k:expr) => {{
        let c = $base.add($k * 32) as *const __m128i;
        (
            _mm256_cvtph_ps(_mm_load_si128(c)),
            _mm256_cvtph_ps(_mm_load_si128(c.add(1))),
        )
    }};
    // One 32-byte load and two in-lane unpacks (each BF16 placed in the high half of an f32): the halves come out
    // as rows 0-3 and 8-11, and 4-7 and 12-15; `store_halves!` puts them back in order.
    (BF16, $base:expr, $k:expr) => {{
        let v = _mm256_load_si256($base.add($k * 32) as *const __m256i);
        let z = _mm256_setzero_si256();
        (
            _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v)),
            _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v)),
        )
    }};
    (F32, $base:expr, $k:expr) => {{
        let c = $base.add($k * 64) as *const f32;
        (_mm256_load_ps(c), _mm256_load_ps(c.add(8)))
    }};
}

/// The AVX2 tile for one element type: `T` (at most 6) activation rows against panel `p`, one chain per row and
/// half.
#[cfg(target_arch = "x86_64")]
macro_rules! float_tile_avx2 {
    ($ty:ident, $self:expr, $p:expr, $ys:expr, $out:expr, $ldo:expr, $s:expr) => {{
        let cols = $self.cols;
        let base = ($self.lines.as_ptr() as *const u8).add($p * cols * NR * $s);
        let ys: [*const f32; T] = std::array::from_fn(|t| $ys[t] as *const f32);
        let mut acc = [[_mm256_setzero_ps(); 2]; T];
        for k in 0..cols {
            let (lo, hi) = load_halves!($ty, base, k);
            for t in 0..T {
                let x = _mm256_set1_ps(ys[t].add(k).read_unaligned());
                acc[t][0] = _mm256_fmadd_ps(lo, x, acc[t][0]);
                acc[t][1] = _mm256_fmadd_ps(hi, x, acc[t][1]);
            }
        }
        for t in 0..T {
            store_halves!($ty, $out.add(t * $ldo), acc[t][0], acc[t][1]);
        }
    }};
}

/// A row's 16 sums from the two halves `load_halves!` gave, in row order.
#[cfg(target_arch = "x86_64")]
macro_rules! store_halves {
    (BF16, $o:expr, $a:expr, $b:expr) => {{
        _mm256_storeu_ps($o, _mm256_permute2f128_ps($a, $b, 0x20));
        _mm256_storeu_ps($o.add(8), _mm256_permute2f128_ps($a, $b, 0x31));
    }};
    ($ty:ident, $o:expr, $a:expr, $b:expr) => {{
        _mm256_storeu_ps($o, $a);
        _mm256_storeu_ps($o.add(8), $b);
    }};
}

/// Decode's loop for one element type: one activation row against `P` panels from `p`, one chain per panel.
#[cfg(target_arch = "x86_64")]
macro_rules! float_decode {
    ($ty:ident, $self:expr, $p:expr, $y:expr, $out:expr, $s:expr) => {{
        let cols = $self.cols;
        let stride = cols * NR * $s;
        let base = ($self.lines.as_ptr() as *const u8).add($p * stride);
        let mut acc = [_mm512_setzero_ps(); P];
        for k in 0..cols {
            let x = _mm512_set1_ps($y.add(k).read_unaligned());
            for q in 0..P {
                acc[q] = _mm512_fmadd_ps(load_column!($ty, base.add(q * stride), k), x, acc[q]);
            }
        }
        for q in 0..P {
            _mm512_storeu_ps($out.add(q * NR), acc[q]);
        }
    }};
}

/// As `float_decode!` on AVX2: one chain per panel and half.
#[cfg(target_arch = "x86_64")]
macro_rules! float_decode_avx2 {
    ($ty:ident, $self:expr, $p:expr, $y:expr, $out:expr, $s:expr) => {{
        let cols = $self.cols;
        let stride = cols * NR * $s;
        let base = ($self.lines.as_ptr() as *const u8).add($p * stride);
        let mut acc = [[_mm256_setzero_ps(); 2]; P];
        for k in 0..cols {
            let x = _mm256_set1_ps($y.add(k).read_unaligned());
            for q in 0..P {
                let (lo, hi) = load_halves!($ty, base.add(q * stride), k);
                acc[q][0] = _mm256_fmadd_ps(lo, x, acc[q][0]);
                acc[q][1] = _mm256_fmadd_ps(hi, x, acc[q][1]);
            }
        }
        for q in 0..P {
            store_halves!($ty, $out.add(q * NR), acc[q][0], acc[q][1]);
        }
    }};
}

impl PackedFloat {
    /// Panels `p..p + P` against one f32 activation row `y`: `out[0..16·P]`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; the panels are the weight's, `y` holds `cols` f32, `out` is writable at 16·P places.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode_group<const P: usize>(&self, p: usize, y: *const f32, out: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY (whole body): the contract above.
        unsafe {
            match self.ty {
                GgmlType::F16 => float_decode!(F16, self, p, y, out, 2),
                GgmlType::BF16 => float_decode!(BF16, self, p, y, out, 2),
                _ => float_decode!(F32, self, p, y, out, 4),
            }
        }
    }

    /// As [`Self::decode_group`] on AVX2 + FMA + F16C.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; otherwise as [`Self::decode_group`].
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn decode_group_avx2<const P: usize>(&self, p: usize, y: *const f32, out: *mut f32) {
        use std::arch::x86_64::*;
        // SAFETY (whole body): the contract above.
        unsafe {
            match self.ty {
                GgmlType::F16 => float_decode_avx2!(F16, self, p, y, out, 2),
                GgmlType::BF16 => float_decode_avx2!(BF16, self, p, y, out, 2),
                _ => float_decode_avx2!(F32, self, p, y, out, 4),
            }
        }
    }
}

impl PanelKernelAvx2 for PackedFloat {
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tile_avx2<const T: usize>(
        &self,
        p: usize,
        ys: [*const u8; T],
        _side: *const (),
        out: *mut f32,
        ldo: usize,
    ) {
        use std::arch::x86_64::*;
        // SAFETY (whole body): the trait's contract: panel p's lines (cols columns of 16 elements, each half 16-byte
        // aligned), T rows of cols f32, 16 outputs per row.
        unsafe {
            match self.ty {
                GgmlType::F16 => float_tile_avx2!(F16, self, p, ys, out, ldo, 2),
                GgmlType::BF16 => float_tile_avx2!(BF16, self, p, ys, out, ldo, 2),
                _ => float_tile_avx2!(F32, self, p, ys, out, ldo, 4),
            }
        }
    }
}

impl PanelKernel for PackedFloat {
    /// Nothing: an f32 activation row is used as it is.
    type Side = ();

    fn rows(&self) -> usize {
        self.rows
    }

    fn side_len(&self) -> usize {
        0
    }

    fn act_bytes(&self) -> usize {
        self.cols * 4
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
        // SAFETY (whole body): the trait's contract: panel p's lines (cols columns of 16 elements), T rows of cols
        // f32, 16 outputs per row.
        unsafe {
            match self.ty {
                GgmlType::F16 => float_tile!(F16, self, p, ys, out, ldo, 2),
                GgmlType::BF16 => float_tile!(BF16, self, p, ys, out, ldo, 2),
                _ => float_tile!(F32, self, p, ys, out, ldo, 4),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::tests::{Rng, random_row};
    use crate::quant::{SimdLevel, simd_level};

    const TYPES: [GgmlType; 3] = [GgmlType::F16, GgmlType::BF16, GgmlType::F32];

    #[test]
    fn packing_keeps_every_element() {
        let mut rng = Rng::new(5);
        let (rows, cols) = (32, 96);
        for ty in TYPES {
            let data = random_row(ty, rows * cols / ty.block_size(), &mut rng);
            let p = PackedFloat::pack(ty, &data, rows, cols);
            let s = elem_bytes(ty).unwrap();
            for r in 0..rows {
                for k in 0..cols {
                    let want = elem_at(ty, &data, (r * cols + k) * s);
                    assert_eq!(p.get(r, k).to_bits(), want.to_bits(), "{ty:?} r {r} k {k}");
                }
            }
            assert_eq!(p.bytes(), data.len());
        }
    }

    /// The twin against the plain reference (close: the same products summed in another order).
    #[test]
    fn twin_matches_the_reference() {
        let mut rng = Rng::new(9);
        let cols = 640;
        for ty in TYPES {
            let x = random_row(ty, cols / ty.block_size(), &mut rng);
            for y in panels::testing::acts(GgmlType::F32, 4, cols, &mut rng) {
                let want = crate::quant::reference::dot_fn(ty)(cols, &x, &y);
                let got = dot_reference(ty, cols, &x, &y);
                assert!(
                    (want - got).abs() <= 1e-4 * (1.0 + want.abs()),
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
            let data = random_row(ty, rows * cols / ty.block_size(), &mut rng);
            let p = PackedFloat::pack(ty, &data, rows, cols);
            let twin = match ty {
                GgmlType::F16 => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::F16, n, x, y),
                GgmlType::BF16 => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::BF16, n, x, y),
                _ => |n, x: &[u8], y: &[u8]| dot_reference(GgmlType::F32, n, x, y),
            };
            let shape = (ty.row_bytes(cols), cols, 2);
            panels::testing::kernel_gives_twin_bits(
                &p,
                &data,
                shape,
                GgmlType::F32,
                twin,
                &mut rng,
            );
            // The public entry points: decode's own loop for one row, the groups of six on AVX2.
            if simd_level().avx2() {
                // SAFETY: the CPU has AVX2 (checked); `gives_twin_bits` passes valid panels, rows and outputs.
                let run: panels::testing::Run =
                    &|ps, n, act, out, ldo| unsafe { matmul_avx2(&p, ps, n, act, out, ldo) };
                panels::testing::gives_twin_bits(
                    rows,
                    run,
                    &data,
                    shape,
                    GgmlType::F32,
                    twin,
                    &mut rng,
                );
            }
            if simd_level() == SimdLevel::Avx512Vnni {
                // SAFETY: the CPU has AVX-512 VNNI (checked); as above.
                let run: panels::testing::Run =
                    &|ps, n, act, out, ldo| unsafe { matmul(&p, ps, n, act, out, ldo) };
                panels::testing::gives_twin_bits(
                    rows,
                    run,
                    &data,
                    shape,
                    GgmlType::F32,
                    twin,
                    &mut rng,
                );
            }
        }
    }
}
