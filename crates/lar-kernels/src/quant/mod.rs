//! GGML tensor types: block layouts, dequantization, and dot products against quantized activations.
//!
//! A weight row of type T is multiplied with an activation row that has first been quantized to T's
//! [`GgmlType::vec_dot_type`] (Q8_0, Q8_1 or Q8_K, as llama.cpp does), so the inner loop is an integer dot product.
//! Kernels are chosen once at run time from the CPU's features ([`simd_level`]): AVX2+FMA where the CPU has them,
//! else the portable reference code in [`reference`], which is also every fast kernel's twin in the tests.
//! `LAR_SIMD=scalar` forces the reference path.

#[cfg(target_arch = "x86_64")]
mod act_avx2;
pub mod amx;
pub mod amx_q4k;
pub mod amx_transposed;
#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod codebook;
mod codebook_grids;
pub mod fp4;
pub mod iq4;
mod kquants;
mod lanes;
pub mod low_bit;
pub mod packed_32;
pub mod packed_float;
pub mod packed_iq4xs;
pub mod packed_q4k;
pub mod packed_q5_0;
pub mod packed_q6k;
mod panels;
pub mod reference;
pub mod ternary;
pub mod weighted;
pub mod weights;
#[cfg(target_arch = "x86_64")]
mod weights_avx2;

use std::sync::OnceLock;

pub use lar_formats::ggml_type::{GgmlType, QK, QK_K};

/// Which kernels this process uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 plus AVX-512 VNNI (with VL): `vpdpbusd` / `vpdpwssd` in the integer dot products (Zen 4, Ice Lake and
    /// later). Bit-identical results to `Avx2`.
    Avx512Vnni,
}

impl SimdLevel {
    /// Whether the AVX2 + FMA + F16C kernels may run (true for every tier above scalar).
    pub fn avx2(self) -> bool {
        self != SimdLevel::Scalar
    }
}

/// Detected once; `LAR_SIMD=scalar` forces the portable path, `LAR_SIMD=avx2` caps the tier at AVX2.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("LAR_SIMD").unwrap_or_default();
        if cap == "scalar" {
            return SimdLevel::Scalar;
        }
        detected_level(cap == "avx2")
    })
}

/// The best tier this CPU runs (at most AVX2 with `cap_avx2`).
fn detected_level(cap_avx2: bool) -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        if !cap_avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
        {
            return SimdLevel::Avx512Vnni;
        }
        return SimdLevel::Avx2;
    }
    let _ = cap_avx2;
    SimdLevel::Scalar
}

/// Every tier this CPU can run, lowest first (for tests that compare them).
pub fn available_levels() -> Vec<SimdLevel> {
    let mut v = vec![SimdLevel::Scalar];
    for l in [detected_level(true), detected_level(false)] {
        if !v.contains(&l) {
            v.push(l);
        }
    }
    v
}

/// Dequantizes `data` (a whole number of blocks of `ty`) into `out`.
pub fn dequantize(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    // The float types element by element without the reference's per-element dispatch (10x slower): embedding rows
    // of float checkpoints, and the trainer's transposed product, which widens every weight of a BF16 base.
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        _ => {
            // The reference compiled a second time with AVX2: the same operations, so the same values, with the
            // block loops vectorized (a third of `lar quantize`'s time from a Q4_K source before).
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma,f16c")]
                fn avx2(ty: GgmlType, data: &[u8], out: &mut [f32]) {
                    reference::dequantize_blocks(ty, data, out)
                }
                if simd_level().avx2() {
                    // SAFETY: the CPU has AVX2, FMA and F16C (checked by simd_level).
                    return unsafe { avx2(ty, data, out) };
                }
            }
            reference::dequantize(ty, data, out)
        }
    }
}

/// Quantizes an activation row to `ty` (F32, Q8_0, Q8_1 or Q8_K), appending to `out`. The reference code is
/// compiled a second time with AVX2 so rounding and the max search vectorize (no libm `rintf` calls).
pub fn quantize_act(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn avx2(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
            quantize_act_generic(ty, x, out)
        }
        if simd_level().avx2() {
            // SAFETY: the CPU has AVX2, FMA and F16C (checked by simd_level).
            return unsafe {
                if ty == GgmlType::Q8_K {
                    act_avx2::quantize_q8_k(x, out)
                } else {
                    avx2(ty, x, out)
                }
            };
        }
    }
    quantize_act_generic(ty, x, out)
}

#[inline(always)]
fn quantize_act_generic(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => extend_f32_bytes(x, out),
        GgmlType::Q8_0 => reference::quantize_q8_0(x, out),
        GgmlType::Q8_1 => reference::quantize_q8_1(x, out),
        GgmlType::Q8_K => reference::quantize_q8_k(x, out),
        other => unreachable!("{} is not an activation type", other.name()),
    }
}

/// `x`'s little-endian bytes appended to `out`: one copy on a little-endian target (the float kernels read f32
/// activation rows; element by element this was a few percent of an F16 model's prompt).
fn extend_f32_bytes(x: &[f32], out: &mut Vec<u8>) {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: an f32 slice is valid as bytes (no padding, any bit pattern a u8), 4·len of them, and on a
        // little-endian target its bytes are its little-endian encoding.
        let bytes = unsafe {
            std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x))
        };
        out.extend_from_slice(bytes);
    }
    #[cfg(not(target_endian = "little"))]
    out.extend(x.iter().flat_map(|v| v.to_le_bytes()));
}

/// `$f(ty)` from the kernel tier for `level`: `None` at the scalar level and off x86-64.
macro_rules! from_tier {
    ($level:expr, $f:ident($ty:expr)) => {{
        #[cfg(target_arch = "x86_64")]
        let f = match $level {
            SimdLevel::Avx512Vnni => avx2::vnni::$f($ty),
            SimdLevel::Avx2 => avx2::avx2::$f($ty),
            SimdLevel::Scalar => None,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let f = {
            let _ = ($level, $ty);
            None
        };
        f
    }};
}

/// A dot product kernel: `n` elements, a weight row, a quantized activation row.
pub type DotFn = fn(usize, &[u8], &[u8]) -> f32;

/// The dot kernel for weights of type `ty` at the current [`simd_level`].
pub fn dot_fn(ty: GgmlType) -> DotFn {
    dot_fn_at(simd_level(), ty)
}

/// The dot kernel for `ty` at `level` (which must be one of [`available_levels`]); the reference code where the
/// tier has none.
pub fn dot_fn_at(level: SimdLevel, ty: GgmlType) -> DotFn {
    from_tier!(level, dot_fn(ty)).unwrap_or_else(|| reference::dot_fn(ty))
}

/// A kernel for four activation rows at once against one weight row.
pub type Dot4Fn = fn(usize, &[u8], [&[u8]; 4]) -> [f32; 4];

/// The four-row kernel for `ty` at `level`, where there is one.
pub fn dot4_fn_at(level: SimdLevel, ty: GgmlType) -> Option<Dot4Fn> {
    from_tier!(level, dot4_fn(ty))
}

/// `T` activation rows against a run of weight rows: `w` holds `out.len()` rows of `rb` bytes each, and `out[r][t]`
/// gets what [`DotFn`] gives for row `r` and activation `t` (the same bits). Prompt processing; callers fall back
/// to [`dot_fn`] row by row where there is none.
pub type RowsFn<const T: usize> = fn(usize, &[u8], usize, [&[u8]; T], &mut [[f32; T]]);

/// The block-of-rows kernel for one activation row (decode: one call for a run of weight rows instead of one per
/// row), where the current [`simd_level`] has one.
pub fn rows1_fn(ty: GgmlType) -> Option<RowsFn<1>> {
    from_tier!(simd_level(), rows1_fn(ty))
}

/// [`RowsFn`] for four activation rows.
pub type Rows4Fn = RowsFn<4>;

/// The block-of-rows kernel for `ty`, where the current [`simd_level`] has one.
pub fn rows4_fn(ty: GgmlType) -> Option<Rows4Fn> {
    from_tier!(simd_level(), rows4_fn(ty))
}

/// [`RowsFn`] for eight activation rows.
pub type Rows8Fn = RowsFn<8>;

/// The eight-row block kernel for `ty`, where the current [`simd_level`] has one (AVX-512: enough registers).
pub fn rows8_fn(ty: GgmlType) -> Option<Rows8Fn> {
    from_tier!(simd_level(), rows8_fn(ty))
}

/// The prompt path of the codebook types (IQ1/IQ2/IQ3): a block of weight rows is unpacked once into signed bytes
/// and multipliers ([`Expanded::row_bytes`] per row), then every group of activation rows runs over that, so the
/// codebook lookups are paid once per row block rather than once per group. The same bits as [`dot_fn`].
#[derive(Clone, Copy)]
pub struct Expanded {
    ty: GgmlType,
    expand: fn(GgmlType, usize, &[u8], &mut [u8]),
    /// Eight activation rows against expanded rows, where the tier has the registers for it.
    pub rows8: Option<Rows8Fn>,
    /// Four activation rows against expanded rows.
    pub rows4: Rows4Fn,
}

impl Expanded {
    /// Bytes of one expanded row of `n` weights.
    pub fn row_bytes(&self, n: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        return n / QK_K * avx2::EXPANDED_BLOCK;
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("no expanded form off x86-64 ({n})")
    }

    /// Expands the weight row `x` of `n` weights into `out` ([`Self::row_bytes`] long).
    pub fn expand(&self, n: usize, x: &[u8], out: &mut [u8]) {
        (self.expand)(self.ty, n, x, out)
    }
}

/// The prompt path for weights of type `ty`, where the current [`simd_level`] has one (the codebook types).
pub fn expanded(ty: GgmlType) -> Option<Expanded> {
    from_tier!(simd_level(), expanded_fns(ty))
}

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// The Q8_0 block `i` of an activation row: its scale and its 32 values (as bytes of i8).
#[inline]
pub(crate) fn q8_0_block(y: &[u8], i: usize) -> (f32, &[u8]) {
    let b = &y[34 * i..34 * (i + 1)];
    (f16_at(b, 0), &b[2..34])
}

#[inline]
pub(crate) fn f32_at(b: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (`q` = the 12 scale bytes).
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests;
