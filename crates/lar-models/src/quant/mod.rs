//! GGML tensor types: block layouts, dequantization, and dot products against quantized activations.
//!
//! A weight row of type T is multiplied with an activation row that has first been quantized to T's
//! [`GgmlType::vec_dot_type`] (Q8_0, Q8_1 or Q8_K, as llama.cpp does), so the inner loop is an integer dot product.
//! Kernels are chosen once at run time from the CPU's features ([`simd_level`]): AVX2+FMA where the CPU has them,
//! else the portable reference code in [`reference`], which is also every fast kernel's twin in the tests.
//! `LAR_SIMD=scalar` forces the reference path.

#[cfg(target_arch = "x86_64")]
mod avx2;
pub mod packed_q4k;
pub mod packed_q5_0;
pub mod packed_q6k;
mod panels;
pub mod reference;

use std::sync::OnceLock;

/// A GGML tensor type (the ids are GGUF's).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

pub const QK: usize = 32;
pub const QK_K: usize = 256;

impl GgmlType {
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            30 => BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 => QK,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 => 4,
            F16 | BF16 => 2,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
        }
    }

    /// Bytes of a row of `n` elements (`n` a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_size() * self.type_size()
    }

    /// The type activations are quantized to before a dot product with a row of this type.
    pub fn vec_dot_type(self) -> GgmlType {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => F32,
            Q4_0 | Q5_0 | Q8_0 => Q8_0,
            Q4_1 | Q5_1 | Q8_1 => Q8_1,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => Q8_K,
        }
    }
}

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
    if ty == GgmlType::F32 {
        // A copy (embedding rows of F32 checkpoints): the reference's per-element dispatch costs 10x more.
        for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        return;
    }
    reference::dequantize(ty, data, out)
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
            return unsafe { avx2(ty, x, out) };
        }
    }
    quantize_act_generic(ty, x, out)
}

#[inline(always)]
fn quantize_act_generic(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => out.extend(x.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::Q8_0 => reference::quantize_q8_0(x, out),
        GgmlType::Q8_1 => reference::quantize_q8_1(x, out),
        GgmlType::Q8_K => reference::quantize_q8_k(x, out),
        other => unreachable!("{} is not an activation type", other.name()),
    }
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

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
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
