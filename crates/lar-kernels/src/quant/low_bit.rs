//! Q1_0 and Q2_0: ggml's plain low-bit types. Q1_0 stores a sign bit per weight (`±d`) in blocks of 128, Q2_0 a
//! 2-bit code per weight (`(q - 1)·d`: -1, 0, 1, 2) in blocks of 64, four to a byte from the low bits up; both
//! with one f16 scale (18 bytes a block) and dot products against Q8_0 activations, a block spanning four (Q1_0)
//! or two (Q2_0) of them. Dequantization and the dot products follow ggml's `dequantize_row_q{1,2}_0` and
//! `ggml_vec_dot_q{1,2}_0_q8_0_generic` line for line, float operations in the same order (each Q8_0 block's
//! integer sum times its scale, summed in a float, times the weight scale); they are both the reference and the
//! kernel (no SIMD kernel yet).

use super::{f16_at, q8_0_block as q8_0};

/// One Q1_0 block (18 bytes) to 128 floats: bit `j` of the codes set means `d`, clear `-d`.
pub fn dq_q1_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for (j, v) in y.iter_mut().take(128).enumerate() {
        *v = if (x[2 + j / 8] >> (j % 8)) & 1 != 0 {
            d
        } else {
            -d
        };
    }
}

/// One Q2_0 block (18 bytes) to 64 floats.
pub fn dq_q2_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for (j, v) in y.iter_mut().take(64).enumerate() {
        let q = (x[2 + j / 4] >> (2 * (j % 4))) & 3;
        *v = (q as i32 - 1) as f32 * d;
    }
}

/// A row of `n` Q1_0 weights with a Q8_0 activation row.
pub fn dot_q1_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (i, xb) in x.chunks_exact(18).take(n / 128).enumerate() {
        let d0 = f16_at(xb, 0);
        let mut sumi = 0f32;
        for k in 0..4 {
            let (d1, qy) = q8_0(y, 4 * i + k);
            let mut block = 0i32;
            for (j, &q) in qy.iter().enumerate() {
                let v = q as i8 as i32;
                block += if (xb[2 + 4 * k + j / 8] >> (j % 8)) & 1 != 0 {
                    v
                } else {
                    -v
                };
            }
            sumi += d1 * block as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

/// A row of `n` Q2_0 weights with a Q8_0 activation row.
pub fn dot_q2_0(n: usize, x: &[u8], y: &[u8]) -> f32 {
    let mut sumf = 0f32;
    for (i, xb) in x.chunks_exact(18).take(n / 64).enumerate() {
        let d0 = f16_at(xb, 0);
        let mut sumi = 0f32;
        for k in 0..2 {
            let (d1, qy) = q8_0(y, 2 * i + k);
            let mut block = 0i32;
            for (j, &q) in qy.iter().enumerate() {
                let code = (xb[2 + 8 * k + j / 4] >> (2 * (j % 4))) & 3;
                block += (code as i32 - 1) * q as i8 as i32;
            }
            sumi += d1 * block as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_dequantize_by_hand() {
        let d = half::f16::from_f32(0.25).to_le_bytes();
        // Q1_0: bits 0 and 9 set.
        let mut x = [0u8; 18];
        x[..2].copy_from_slice(&d);
        x[2] = 0x01;
        x[3] = 0x02;
        let mut y = [0f32; 128];
        dq_q1_0(&x, &mut y);
        assert_eq!((y[0], y[1], y[9], y[127]), (0.25, -0.25, 0.25, -0.25));
        assert_eq!(y.iter().filter(|v| **v > 0.0).count(), 2);
        // Q2_0: byte 0 = codes 3, 2, 1, 0 from the low bits: 2d, d, 0, -d.
        let mut x = [0u8; 18];
        x[..2].copy_from_slice(&d);
        x[2] = 0b00_01_10_11;
        let mut y = [0f32; 64];
        dq_q2_0(&x, &mut y);
        assert_eq!(&y[..5], &[0.5, 0.25, 0.0, -0.25, -0.25]);
    }
}
