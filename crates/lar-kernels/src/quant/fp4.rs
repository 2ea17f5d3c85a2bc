//! The FP4 types: MXFP4 (the OCP microscaling format gpt-oss ships in: 32 E2M1 values with one power-of-two
//! E8M0 scale, 17 bytes) and NVFP4 (NVIDIA's: 64 E2M1 values with an unsigned E4M3 scale per 16, 36 bytes).
//!
//! An E2M1 code is one of 0, ±0.5, ±1, ±1.5, ±2, ±3, ±4, ±6; ggml stores them doubled as integers
//! ([`KVALUES`]) and halves the scale, so a block's dot product with a Q8_0 activation is an integer sum times one
//! float. Both layouts put a block's (or a 16-sub-block's) first half in the low nibbles and its second half in the
//! high ones, as IQ4_NL does. Dequantization and the dot products follow ggml's `dequantize_row_mxfp4`,
//! `dequantize_row_nvfp4` and `ggml_vec_dot_{mxfp4,nvfp4}_q8_0_generic` line for line, float operations in the same
//! order. MXFP4's AVX2 kernels are IQ4_NL's (the 32-element family in `avx2.rs`: nibbles looked up in
//! [`KVALUES`] by `vpshufb`, the E8M0 scale as the block's float); NVFP4 runs this scalar code (it is rare in GGUF
//! files; MXFP4 mostly ships in gpt-oss's mixture-of-experts tensors).

use super::q8_0_block as q8_0;

/// E2M1 values, doubled (ggml's `kvalues_mxfp4`).
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of an E8M0 scale `2^(e - 127)` (ggml's `ggml_e8m0_to_fp32_half`: `e` 0 and 1 are subnormal floats).
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        (e as u32 - 1) << 23
    };
    f32::from_bits(bits)
}

/// An unsigned E4M3 scale, halved (ggml's `ggml_ue4m3_to_fp32`; 0 and 0x7F are zero, the top bit is ignored).
pub fn ue4m3_half(x: u8) -> f32 {
    if x == 0 || x == 0x7f {
        return 0.0;
    }
    let (exp, man) = (((x >> 3) & 0xf) as i32, (x & 7) as i32);
    let raw = if exp == 0 {
        man as f32 * 2f32.powi(-9)
    } else {
        (1.0 + man as f32 / 8.0) * 2f32.powi(exp - 7)
    };
    raw * 0.5
}

/// One MXFP4 block (17 bytes) to 32 floats.
pub fn dq_mxfp4(x: &[u8], y: &mut [f32]) {
    let d = e8m0_half(x[0]);
    for j in 0..16 {
        let q = x[1 + j];
        y[j] = KVALUES[(q & 0xf) as usize] as f32 * d;
        y[j + 16] = KVALUES[(q >> 4) as usize] as f32 * d;
    }
}

/// One NVFP4 block (36 bytes: four scales, then 32 bytes of codes) to 64 floats.
pub fn dq_nvfp4(x: &[u8], y: &mut [f32]) {
    for s in 0..4 {
        let d = ue4m3_half(x[s]);
        for j in 0..8 {
            let q = x[4 + 8 * s + j];
            y[16 * s + j] = KVALUES[(q & 0xf) as usize] as f32 * d;
            y[16 * s + j + 8] = KVALUES[(q >> 4) as usize] as f32 * d;
        }
    }
}

/// A row of `n` MXFP4 weights with a Q8_0 activation row.
pub fn dot_mxfp4(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (ib, xb) in x.chunks_exact(17).take(n / 32).enumerate() {
        let (dy, qy) = q8_0(y, ib);
        let d = dy * e8m0_half(xb[0]);
        let (mut s1, mut s2) = (0i32, 0i32);
        for j in 0..16 {
            let q = xb[1 + j];
            s1 += qy[j] as i8 as i32 * KVALUES[(q & 0xf) as usize] as i32;
            s2 += qy[j + 16] as i8 as i32 * KVALUES[(q >> 4) as usize] as i32;
        }
        sumf += d * (s1 + s2) as f32;
    }
    sumf
}

/// A row of `n` NVFP4 weights with a Q8_0 activation row (two Q8_0 blocks per NVFP4 block).
pub fn dot_nvfp4(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (ib, xb) in x.chunks_exact(36).take(n / 64).enumerate() {
        for s in 0..4 {
            let d = ue4m3_half(xb[s]);
            let (dy, qy) = q8_0(y, 2 * ib + s / 2);
            let off = (s % 2) * 16;
            let (mut lo, mut hi) = (0i32, 0i32);
            for j in 0..8 {
                let q = xb[4 + 8 * s + j];
                lo += qy[off + j] as i8 as i32 * KVALUES[(q & 0xf) as usize] as i32;
                hi += qy[off + j + 8] as i8 as i32 * KVALUES[(q >> 4) as usize] as i32;
            }
            sumf += dy * d * (lo + hi) as f32;
        }
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_decode_as_ggml_does() {
        assert_eq!(e8m0_half(127), 0.5);
        assert_eq!(e8m0_half(128), 1.0);
        assert_eq!(e8m0_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_half(254), 2f32.powi(126));
        // UE4M3: 0x38 is exponent 7, mantissa 0 (1.0); 0x7E the largest (448); the subnormals man·2^-9.
        assert_eq!(ue4m3_half(0x38), 0.5);
        assert_eq!(ue4m3_half(0x7e), 224.0);
        assert_eq!(ue4m3_half(0x01), 2f32.powi(-10));
        assert_eq!(ue4m3_half(0x7f), 0.0);
        assert_eq!(ue4m3_half(0xb8), 0.5, "the top bit is ignored");
    }

    #[test]
    fn blocks_dequantize_by_hand() {
        // MXFP4, scale 2^(128-127) = 2 (halved: 1): codes 1 (0.5 doubled = 1) low, 0xF (-6 doubled) high.
        let mut x = [0u8; 17];
        x[0] = 128;
        x[1] = 0xF1;
        let mut y = [0f32; 32];
        dq_mxfp4(&x, &mut y);
        assert_eq!((y[0], y[16], y[1]), (1.0, -12.0, 0.0));
        // NVFP4: sub-block 2's scale 1.0 (halved 0.5); its byte 3 holds weights 35 (low) and 43 (high).
        let mut x = [0u8; 36];
        x[2] = 0x38;
        x[4 + 16 + 3] = 0x7A;
        let mut y = [0f32; 64];
        dq_nvfp4(&x, &mut y);
        assert_eq!((y[35], y[43]), (-1.0, 6.0));
        assert_eq!(y.iter().filter(|v| **v != 0.0).count(), 2);
    }
}
