//! Intel AMX for the F16 and BF16 weights' prompt products: tile registers and `TDPBF16PS`, which multiplies a
//! 16×32 BF16 tile by a 32×16 one into 16×16 f32 sums (8192 products per instruction; ~17x the AVX-512 FMAs' rate
//! on the Xeon this was written on).
//!
//! BF16 keeps 8 significant bits, F16 11 and an activation 24, so one BF16 product would round both operands.
//! Nothing is rounded that way here: an activation row is split into `hi + lo`, two BF16 values whose sum holds 16
//! bits of it ([`SplitActs`]); a BF16 weight is exact in one BF16 value, an F16 weight in two (8 bits in `hi`, the
//! other 3 in `lo`: converted per panel as the product needs it). The product sums `w_hi·x_hi + w_hi·x_lo +
//! w_lo·x_hi` (the omitted `w_lo·x_lo` is under 2^-16 of the term), each term exact in f32 before it is added, so a
//! result is within ~2^-16 of the f32 product, where llama.cpp's F16 path rounds every activation to F16 (2^-11).
//! The AVX-512 FMA kernel ([`super::packed_float`]) stays the decode path and the twin of this one.
//!
//! The packed panels ([`super::packed_float::PackedFloat`]: 16 rows, each 64-byte line two columns of every row)
//! are converted a panel at a time into the tile layout `TDPBF16PS` wants for its second operand (each row's two
//! columns side by side, 16 lines a tile) while the panel is in L2, and every tile of activation rows meets it. Linux
//! gives a process the tile state only when asked (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), which [`available`] does
//! once. The instructions are written as inline assembly: Rust's AMX intrinsics are not stable.

use std::sync::OnceLock;

use super::GgmlType;
use super::packed_float::PackedFloat;
use super::panels::NR;
use crate::pool::{ThreadPool, split};
use crate::tensor::SyncPtr;

/// Activation rows from which a product goes to AMX (fewer: the FMA kernel, as decode).
pub const MIN_ROWS: usize = 16;
/// Rows of a tile (and the activation rows it covers).
const TILE_ROWS: usize = 16;
/// Columns of K one tile product covers (32 BF16 = 64 bytes per row).
const CHUNK: usize = 32;

/// Whether F16/BF16 prompt products run on AMX: the CPU has AMX-TILE and AMX-BF16, Linux granted the tile state,
/// the kernels run at their AVX-512 tier, and `LAR_AMX` is not `0`.
pub fn available() -> bool {
    features().0
}

/// Whether the Q4_K prompt products run on AMX ([`super::amx_q4k`]): as [`available`], with AMX-INT8.
pub fn int8_available() -> bool {
    features().1
}

/// (AMX-BF16 usable, AMX-INT8 usable), checked once.
fn features() -> (bool, bool) {
    static FEATURES: OnceLock<(bool, bool)> = OnceLock::new();
    *FEATURES.get_or_init(|| {
        if std::env::var("LAR_AMX").as_deref() == Ok("0")
            || super::simd_level() != super::SimdLevel::Avx512Vnni
        {
            return (false, false);
        }
        request_tiles()
    })
}

/// Checks CPUID for AMX-TILE, AMX-BF16 and AMX-INT8 and asks Linux for the tile data state
/// (`ARCH_REQ_XCOMP_PERM`); returns which of BF16 and INT8 products can run.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tiles() -> (bool, bool) {
    use std::arch::x86_64::__cpuid_count;
    // CPUID leaf 7 exists on every x86-64 CPU that has AVX-512 (checked by the caller).
    let edx = __cpuid_count(7, 0).edx;
    let (amx_bf16, amx_tile, amx_int8) = (
        edx & (1 << 22) != 0,
        edx & (1 << 24) != 0,
        edx & (1 << 25) != 0,
    );
    if !(amx_tile && (amx_bf16 || amx_int8)) {
        return (false, false);
    }
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // SAFETY: a plain Linux system call (arch_prctl) with integer arguments; it touches no memory of ours. The
    // kernel clobbers rcx and r11.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (ret == 0 && amx_bf16, ret == 0 && amx_int8)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tiles() -> (bool, bool) {
    (false, false)
}

/// The BF16 nearest to `x` (ties to even), as its bits.
#[inline(always)]
fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The f32 a BF16 stands for.
#[inline(always)]
fn bf16_value(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `(hi, lo)`: `hi` the BF16 nearest `x`, `lo` the BF16 nearest `x - hi` (exact in f32).
#[inline(always)]
fn split_bf16(x: f32) -> (u16, u16) {
    let hi = bf16_bits(x);
    (hi, bf16_bits(x - bf16_value(hi)))
}

/// Activation rows as BF16 `hi` and `lo` planes (`x ≈ hi + lo`), each padded with zero rows to whole tiles.
#[derive(Default)]
pub struct SplitActs {
    pub n_rows: usize,
    pub cols: usize,
    /// `hi` rows then `lo` rows, [`SplitActs::padded`] each.
    data: Vec<u16>,
}

impl SplitActs {
    /// Splits `n_rows` rows of `cols` f32 (rows shared out over `pool`).
    pub fn fill(&mut self, x: &[f32], n_rows: usize, cols: usize, pool: &ThreadPool) {
        assert!(x.len() >= n_rows * cols, "activation rows");
        self.n_rows = n_rows;
        self.cols = cols;
        let plane = Self::padded(n_rows) * cols;
        self.data.clear();
        self.data.resize(2 * plane, 0);
        let out = SyncPtr(self.data.as_mut_ptr());
        let tasks = pool.n_threads().min(n_rows).max(1);
        pool.run(tasks, &|task| {
            for r in split(n_rows, tasks, task) {
                // SAFETY: row r of both planes is written by this task only, inside the buffer sized above.
                let (hi, lo) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(out.get().add(r * cols), cols),
                        std::slice::from_raw_parts_mut(out.get().add(plane + r * cols), cols),
                    )
                };
                split_row(&x[r * cols..(r + 1) * cols], hi, lo);
            }
        });
    }

    /// Rows per plane: `n` rounded up to whole tiles.
    fn padded(n: usize) -> usize {
        n.div_ceil(TILE_ROWS) * TILE_ROWS
    }

    /// Row `r`'s `(hi, lo)` as f32 (for the tests).
    pub fn get(&self, r: usize, k: usize) -> (f32, f32) {
        let plane = Self::padded(self.n_rows) * self.cols;
        let at = r * self.cols + k;
        (bf16_value(self.data[at]), bf16_value(self.data[plane + at]))
    }
}

/// One row's split, vectorized where the CPU allows.
pub(super) fn split_row(x: &[f32], hi: &mut [u16], lo: &mut [u16]) {
    #[inline(always)]
    fn plain(x: &[f32], hi: &mut [u16], lo: &mut [u16]) {
        for ((v, h), l) in x.iter().zip(hi.iter_mut()).zip(lo.iter_mut()) {
            (*h, *l) = split_bf16(*v);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
        fn wide(x: &[f32], hi: &mut [u16], lo: &mut [u16]) {
            plain(x, hi, lo)
        }
        if super::simd_level() == super::SimdLevel::Avx512Vnni {
            // SAFETY: the CPU has AVX-512 F/BW/VL (checked by simd_level).
            return unsafe { wide(x, hi, lo) };
        }
    }
    plain(x, hi, lo)
}

/// The tile configuration: palette 1, eight tiles of 16 rows × 64 bytes.
#[repr(C, align(64))]
pub(super) struct TileConfig(pub(super) [u8; 64]);

impl TileConfig {
    const fn all_full() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1;
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64;
            c[48 + t] = TILE_ROWS as u8;
            t += 1;
        }
        Self(c)
    }
}

pub(super) static CONFIG: TileConfig = TileConfig::all_full();

#[cfg(target_arch = "x86_64")]
/// `tileloadd tmmN, [base + stride]`.
macro_rules! tile_load {
    ($t:literal, $base:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tileloadd tmm", $t, ", [{0} + {1}]"),
            in(reg) $base,
            in(reg) $stride,
            options(nostack, readonly),
        )
    };
}

#[cfg(target_arch = "x86_64")]
/// `tilestored [base + stride], tmmN`.
macro_rules! tile_store {
    ($t:literal, $base:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tilestored [{0} + {1}], tmm", $t),
            in(reg) $base,
            in(reg) $stride,
            options(nostack),
        )
    };
}

#[cfg(target_arch = "x86_64")]
/// `tdpbf16ps tmmC, tmmA, tmmB`: `C += A·B`.
macro_rules! tile_dp {
    ($c:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem),
        )
    };
}

#[cfg(target_arch = "x86_64")]
pub(super) use {tile_dp, tile_load, tile_store};

#[cfg(target_arch = "x86_64")]
/// `out[t·ldo + r] = dot(row r, activation t)` for the rows of `panels` (F16 or BF16) and every row of `a`.
///
/// # Safety
/// [`available`] is true; `out` is valid for writes at `t·ldo + r` for every activation row `t` and row `r` of
/// `panels`, and no one else writes those places meanwhile.
pub unsafe fn matmul(
    w: &PackedFloat,
    panels: std::ops::Range<usize>,
    a: &SplitActs,
    out: *mut f32,
    ldo: usize,
) {
    assert!(matches!(w.ty, GgmlType::F16 | GgmlType::BF16));
    assert_eq!(a.cols, w.cols, "activation width");
    assert!(panels.end * NR <= w.rows, "panels out of range");
    let f16 = w.ty == GgmlType::F16;
    // SAFETY: the caller's (AMX granted, so AVX-512 too; outputs theirs); every pointer below is inside the
    // weight's lines, the split planes (padded to whole tiles) or the scratch.
    unsafe {
        if f16 {
            run::<true>(w, panels, a, out, ldo)
        } else {
            run::<false>(w, panels, a, out, ldo)
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// [`matmul`] for one weight type: token tiles whose split rows fit in L2, and in each, pairs of panels (converted
/// once per tile) against pairs of 16-row groups, four sums in tiles.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
unsafe fn run<const F16: bool>(
    w: &PackedFloat,
    panels: std::ops::Range<usize>,
    a: &SplitActs,
    out: *mut f32,
    ldo: usize,
) {
    let cols = w.cols;
    let chunks = cols / CHUNK;
    let plane = SplitActs::padded(a.n_rows) * cols;
    // Split rows (4 bytes per element) of about TOKEN_TILE_BYTES per token tile, in pairs of groups.
    let tile = ((TOKEN_TILE_BYTES / (4 * cols)) / (2 * TILE_ROWS)).max(1) * 2 * TILE_ROWS;
    let per_chunk = if F16 { 2 * TILE_ROWS } else { TILE_ROWS };
    // The converted panels, in this thread's scratch (no mapping and page faults per call).
    let mut conv = CONV.take();
    conv.resize(2 * chunks * per_chunk, super::panels::Line([0; 64]));
    let conv_panel = chunks * per_chunk * 64;
    let mut tail = Tail([[0.0; NR]; TILE_ROWS]);
    let k = Kernel {
        chunks,
        b_chunk: per_chunk * 64,
        b_lo: TILE_ROWS * 64,
        a_stride: cols * 2,
        a_lo: plane * 2,
    };
    // SAFETY (whole body): as `matmul`.
    unsafe {
        std::arch::asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        for t0 in (0..a.n_rows).step_by(tile) {
            let t_end = (t0 + tile).min(a.n_rows);
            let mut p = panels.start;
            while p < panels.end {
                let np = (panels.end - p).min(2);
                for i in 0..np {
                    let dst = (conv.as_mut_ptr() as *mut u8).add(i * conv_panel);
                    convert_panel::<F16>(w.panel_bytes(p + i).as_ptr(), chunks, dst);
                }
                let b = conv.as_ptr() as *const u8;
                let mut g = t0;
                while g < t_end {
                    let ng = if g + TILE_ROWS < t_end { 2 } else { 1 };
                    let x = (a.data.as_ptr() as *const u8).add(g * cols * 2);
                    match (np, ng) {
                        (2, 2) => k.block::<F16, true, true>(x, b, b.add(conv_panel)),
                        (2, _) => k.block::<F16, true, false>(x, b, b.add(conv_panel)),
                        (_, 2) => k.block::<F16, false, true>(x, b, b),
                        _ => k.block::<F16, false, false>(x, b, b),
                    }
                    for gi in 0..ng {
                        let g1 = g + gi * TILE_ROWS;
                        let rows = (t_end - g1).min(TILE_ROWS);
                        for pi in 0..np {
                            let o = out.add(g1 * ldo + (p + pi) * NR);
                            store_rows(o, ldo, rows, 2 * gi + pi, &mut tail);
                        }
                    }
                    g += 2 * TILE_ROWS;
                }
                p += np;
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
    CONV.set(conv);
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Each thread's converted panels ([`run`]).
    static CONV: std::cell::Cell<Vec<super::panels::Line>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Bytes of split activation rows per token tile.
const TOKEN_TILE_BYTES: usize = 1 << 20;

#[cfg(target_arch = "x86_64")]
/// The strides of one product.
struct Kernel {
    chunks: usize,
    /// Bytes between a converted panel's chunks, and from a chunk's `hi` tile to its `lo` (F16).
    b_chunk: usize,
    b_lo: usize,
    /// Bytes between split rows, and from the `hi` plane to the `lo` one.
    a_stride: usize,
    a_lo: usize,
}

#[cfg(target_arch = "x86_64")]
impl Kernel {
    /// Sums in tmm0 (group 0, panel 0), tmm1 (group 0, panel 1), tmm2 (group 1, panel 0), tmm3 (group 1, panel 1)
    /// over every chunk: activation tiles in tmm4/tmm5 (groups), weight tiles in tmm6/tmm7 (panels). Per chunk:
    /// `hi·hi`, then the activations' `lo` against the weights' `hi`, then (F16) the weights' `lo` against the
    /// activations' `hi`, loaded again.
    #[inline(always)]
    unsafe fn block<const F16: bool, const P2: bool, const G2: bool>(
        &self,
        x: *const u8,
        b0: *const u8,
        b1: *const u8,
    ) {
        let st = self.a_stride;
        let x1 = x.wrapping_add(TILE_ROWS * st);
        // SAFETY: the caller's: tiles at these places (split planes padded to whole tiles, converted panels).
        unsafe {
            std::arch::asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
            for c in 0..self.chunks {
                let (a0, a1) = (x.add(c * 64), x1.wrapping_add(c * 64));
                let (w0, w1) = (b0.add(c * self.b_chunk), b1.add(c * self.b_chunk));
                tile_load!("4", a0, st);
                if G2 {
                    tile_load!("5", a1, st);
                }
                tile_load!("6", w0, 64usize);
                if P2 {
                    tile_load!("7", w1, 64usize);
                }
                self.four::<P2, G2>();
                tile_load!("4", a0.add(self.a_lo), st);
                if G2 {
                    tile_load!("5", a1.add(self.a_lo), st);
                }
                self.four::<P2, G2>();
                if F16 {
                    tile_load!("4", a0, st);
                    if G2 {
                        tile_load!("5", a1, st);
                    }
                    tile_load!("6", w0.add(self.b_lo), 64usize);
                    if P2 {
                        tile_load!("7", w1.add(self.b_lo), 64usize);
                    }
                    self.four::<P2, G2>();
                }
            }
        }
    }

    /// The products of the loaded tiles into the sums.
    #[inline(always)]
    unsafe fn four<const P2: bool, const G2: bool>(&self) {
        // SAFETY: the caller's: the tiles are loaded.
        unsafe {
            tile_dp!("0", "4", "6");
            if P2 {
                tile_dp!("1", "4", "7");
            }
            if G2 {
                tile_dp!("2", "5", "6");
                if P2 {
                    tile_dp!("3", "5", "7");
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// A 16×16 f32 tile's bytes, for a group with fewer than 16 activation rows.
#[repr(C, align(64))]
struct Tail([[f32; NR]; TILE_ROWS]);

#[cfg(target_arch = "x86_64")]
/// Stores sum tile `t` (tmm0..tmm3) to `rows` rows of `out` (`ldo` apart): straight when all 16 are there, else
/// through `tail`.
#[inline(always)]
unsafe fn store_rows(out: *mut f32, ldo: usize, rows: usize, t: usize, tail: &mut Tail) {
    // SAFETY: the caller's: `rows` rows of 16 outputs at `out`, `ldo` apart, are writable.
    unsafe {
        let (dst, stride) = if rows == TILE_ROWS {
            (out, ldo * 4)
        } else {
            (tail.0.as_mut_ptr() as *mut f32, NR * 4)
        };
        match t {
            0 => tile_store!("0", dst, stride),
            1 => tile_store!("1", dst, stride),
            2 => tile_store!("2", dst, stride),
            _ => tile_store!("3", dst, stride),
        }
        if rows < TILE_ROWS {
            for (m, row) in tail.0.iter().take(rows).enumerate() {
                std::ptr::copy_nonoverlapping(row.as_ptr(), out.add(m * ldo), NR);
            }
        }
    }
}

/// f32 → BF16 bits (nearest, ties to even) in the low half of each 32-bit lane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn to_bf16(v: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX-512 F.
    unsafe {
        let b = _mm512_castps_si512(v);
        let odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
        _mm512_srli_epi32(
            _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd)),
            16,
        )
    }
}

/// BF16 bits in the low half of each lane → f32.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn back(h: std::arch::x86_64::__m512i) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX-512 F.
    unsafe { _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)) }
}

#[cfg(target_arch = "x86_64")]
/// A panel's lines (`chunks` × 16; each holds one column's 16 rows, then the next column's) as the pairs
/// `TDPBF16PS` wants (each row's two columns side by side in 32 bits), in BF16 tiles: per chunk 16 lines of `hi`,
/// then for F16 16 of `lo` (`hi + lo` is the F16 value exactly; a BF16 weight is its own `hi`).
#[inline(always)]
unsafe fn convert_panel<const F16: bool>(src: *const u8, chunks: usize, dst: *mut u8) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's: `chunks · 16` lines at `src`, one (BF16) or two (F16) times that at `dst`, both
    // 64-byte aligned; AVX-512 F/BW.
    unsafe {
        let per_chunk = if F16 { 2 * TILE_ROWS } else { TILE_ROWS };
        for c in 0..chunks {
            for l in 0..TILE_ROWS {
                let line = src.add((c * TILE_ROWS + l) * 64);
                let (c0, c1) = (
                    _mm256_load_si256(line as *const __m256i),
                    _mm256_load_si256(line.add(32) as *const __m256i),
                );
                let hi = dst.add((c * per_chunk + l) * 64) as *mut __m512i;
                if F16 {
                    let (x0, x1) = (_mm512_cvtph_ps(c0), _mm512_cvtph_ps(c1));
                    let (h0, h1) = (to_bf16(x0), to_bf16(x1));
                    let l0 = to_bf16(_mm512_sub_ps(x0, back(h0)));
                    let l1 = to_bf16(_mm512_sub_ps(x1, back(h1)));
                    _mm512_store_si512(hi, pairs(h0, h1));
                    _mm512_store_si512(hi.add(TILE_ROWS), pairs(l0, l1));
                } else {
                    _mm512_store_si512(
                        hi,
                        pairs(_mm512_cvtepu16_epi32(c0), _mm512_cvtepu16_epi32(c1)),
                    );
                }
            }
        }
    }
}

/// Each 32-bit lane: `even`'s low 16 bits, then `odd`'s (their high 16 bits are zero).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn pairs(
    even: std::arch::x86_64::__m512i,
    odd: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    // SAFETY: the caller's AVX-512 F.
    unsafe { _mm512_or_si512(even, _mm512_slli_epi32(odd, 16)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::packed_float::dot_reference;
    use crate::quant::tests::{Rng, random_row};

    /// `hi + lo` holds an activation to 2^-16 of its size, across magnitudes.
    #[test]
    fn split_keeps_sixteen_bits() {
        let mut rng = Rng::new(3);
        let pool = ThreadPool::new(2);
        let (n, cols) = (20, 96);
        let x: Vec<f32> = (0..n * cols)
            .map(|i| rng.f32() * 10f32.powi((i % 13) as i32 - 6))
            .collect();
        let mut s = SplitActs::default();
        s.fill(&x, n, cols, &pool);
        for r in 0..n {
            for k in 0..cols {
                let v = x[r * cols + k];
                let (hi, lo) = s.get(r, k);
                assert!(
                    (v - (hi + lo)).abs() <= v.abs() * 2f32.powi(-16),
                    "{v}: {hi} + {lo}"
                );
                assert_eq!(hi, bf16_value(bf16_bits(v)), "hi is the nearest BF16");
            }
        }
        for k in 0..cols {
            assert_eq!(s.get(n, k), (0.0, 0.0), "padding rows are zero");
        }
    }

    /// The AMX product against the FMA kernel's twin, for F16 and BF16, every row count (tails of a tile, one and
    /// two groups, several token tiles), a sub-range of panels written at an offset: within 2^-14 of the sum of
    /// the products' sizes (the split's error is 2^-16 per product). Skipped where the CPU has no AMX.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_product_matches_the_twin() {
        if !available() {
            eprintln!("no AMX on this CPU (or LAR_AMX=0): skipped");
            return;
        }
        let mut rng = Rng::new(11);
        let pool = ThreadPool::new(2);
        let (rows, cols) = (48, 640);
        for ty in [GgmlType::F16, GgmlType::BF16] {
            let data = random_row(ty, rows * cols / ty.block_size(), &mut rng);
            let w = PackedFloat::pack(ty, &data, rows, cols);
            let rb = ty.row_bytes(cols);
            // 400 rows: two token tiles at this width.
            for n in [1, 15, 16, 17, 33, 64, 70, 130, 400] {
                let x: Vec<f32> = (0..n * cols).map(|_| rng.f32() * 3.0).collect();
                let mut a = SplitActs::default();
                a.fill(&x, n, cols, &pool);
                let ldo = rows + 5;
                let mut out = vec![f32::NAN; n * ldo];
                // Panels 1..3 only: rows 16..48.
                // SAFETY: AMX checked above; out holds n rows of ldo.
                unsafe { matmul(&w, 1..3, &a, out.as_mut_ptr(), ldo) };
                for t in 0..n {
                    let y: Vec<u8> = x[t * cols..(t + 1) * cols]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    for r in 0..rows {
                        let got = out[t * ldo + r];
                        if r < 16 {
                            assert!(got.is_nan(), "{ty:?} n {n}: row {r} is outside the panels");
                            continue;
                        }
                        let row = &data[r * rb..(r + 1) * rb];
                        let want = dot_reference(ty, cols, row, &y);
                        let size: f32 = (0..cols)
                            .map(|k| (w.get(r, k) * x[t * cols + k]).abs())
                            .sum();
                        assert!(
                            (got - want).abs() <= size * 2f32.powi(-14),
                            "{ty:?} n {n} t {t} r {r}: {got} vs {want} (size {size})"
                        );
                    }
                    for r in rows..ldo {
                        assert!(out[t * ldo + r].is_nan(), "past the rows");
                    }
                }
            }
        }
    }
}
