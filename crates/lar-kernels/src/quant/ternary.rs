//! TQ1_0 and TQ2_0, ggml's ternary types (weights -1, 0 or 1 times one f16 scale per block of 256): dequantization
//! and the quantizers, written as llama-quantize writes them (ggml's `quantize_row_tq*_0_ref`: the block's largest
//! magnitude is the scale, each weight rounded half away from zero to the nearest of -1, 0, 1). Neither has an
//! importance-matrix variant: llama.cpp ignores the matrix for them, and so does Lar.
//!
//! Layouts (bytes):
//! - TQ2_0 (66): `qs[64]` of four 2-bit codes `c` (value `c - 1`); byte `m` of 32-byte half `h` holds elements
//!   `128·h + 32·l + m` for `l` = 0..4 at bits `2l`; then `d`.
//! - TQ1_0 (54): `qs[48]`, `qh[4]`, `d`. A byte holds five trits (four for `qh`) as a base-3 number scaled to
//!   0..=255 (`⌈n·256/243⌉`), so trit `k` is the top of `byte·3^k mod 256` times three: `((byte·3^k mod 256)·3) >> 8`.
//!   Bytes 0..32 hold elements `32·k + m` (k = 0..5), bytes 32..48 elements `160 + 16·k + m`, `qh[j]` elements
//!   `240 + 4·k + j` (k = 0..4).

use super::{QK_K, f16_at};

/// Bytes per TQ1_0 block.
pub const TQ1_BLOCK: usize = 54;
/// Bytes per TQ2_0 block.
pub const TQ2_BLOCK: usize = 66;

/// Trit `k` (0, 1 or 2) of a TQ1_0 byte.
#[inline]
fn trit(byte: u8, k: u32) -> i32 {
    let q = byte.wrapping_mul(3u8.pow(k));
    ((q as u16 * 3) >> 8) as i32
}

/// One TQ1_0 block into 256 values.
pub fn dq_tq1_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 52);
    for k in 0..5 {
        for m in 0..32 {
            y[32 * k + m] = (trit(x[m], k as u32) - 1) as f32 * d;
        }
        for m in 0..16 {
            y[160 + 16 * k + m] = (trit(x[32 + m], k as u32) - 1) as f32 * d;
        }
    }
    for k in 0..4 {
        for j in 0..4 {
            y[240 + 4 * k + j] = (trit(x[48 + j], k as u32) - 1) as f32 * d;
        }
    }
}

/// One TQ2_0 block into 256 values.
pub fn dq_tq2_0(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 64);
    for h in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                let c = (x[32 * h + m] >> (2 * l)) & 3;
                y[128 * h + 32 * l + m] = (c as i32 - 1) as f32 * d;
            }
        }
    }
}

/// The block's scale (its largest magnitude, as f16 bytes) and the inverse each weight is multiplied by.
fn scale(b: &[f32]) -> ([u8; 2], f32) {
    let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if amax != 0.0 { 1.0 / amax } else { 0.0 };
    (half::f16::from_f32(amax).to_le_bytes(), id)
}

/// A weight as a trit 0, 1 or 2 (`lroundf(x·id) + 1`; |x·id| ≤ 1 up to rounding).
#[inline]
fn to_trit(x: f32, id: f32) -> u8 {
    (super::weights::roundf(x * id) as i32 + 1).clamp(0, 2) as u8
}

/// Trits `t` (first one most significant) as one TQ1_0 byte: the base-3 number scaled up to 0..=255, rounding up.
fn pack(t: impl Iterator<Item = u8>, digits: u32) -> u8 {
    let mut q = 0u16;
    for v in t {
        q = q * 3 + v as u16;
    }
    // Four-trit bytes (qh) put their first trit in the top place too.
    q *= 3u16.pow(5 - digits);
    (q * 256).div_ceil(243) as u8
}

/// TQ1_0 blocks of 256 from `x`, appended to `out`.
pub fn quantize_tq1_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK_K) {
        let (d, id) = scale(b);
        for m in 0..32 {
            out.push(pack((0..5).map(|k| to_trit(b[32 * k + m], id)), 5));
        }
        for m in 0..16 {
            out.push(pack((0..5).map(|k| to_trit(b[160 + 16 * k + m], id)), 5));
        }
        for j in 0..4 {
            out.push(pack((0..4).map(|k| to_trit(b[240 + 4 * k + j], id)), 4));
        }
        out.extend(d);
    }
}

/// TQ2_0 blocks of 256 from `x`, appended to `out`.
pub fn quantize_tq2_0(x: &[f32], out: &mut Vec<u8>) {
    for b in x.chunks_exact(QK_K) {
        let (d, id) = scale(b);
        for h in 0..2 {
            for m in 0..32 {
                let q = (0..4).fold(0u8, |q, l| {
                    q | to_trit(b[128 * h + 32 * l + m], id) << (2 * l)
                });
                out.push(q);
            }
        }
        out.extend(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_holds_the_trits_it_was_given() {
        // All 243 five-trit numbers survive the scaling to a byte and back, and all 81 four-trit ones.
        for n in 0..243u16 {
            let t: Vec<u8> = (0..5).map(|k| (n / 3u16.pow(4 - k) % 3) as u8).collect();
            let b = pack(t.iter().copied(), 5);
            let back: Vec<u8> = (0..5).map(|k| trit(b, k) as u8).collect();
            assert_eq!(back, t, "{n}");
        }
        for n in 0..81u16 {
            let t: Vec<u8> = (0..4).map(|k| (n / 3u16.pow(3 - k) % 3) as u8).collect();
            let b = pack(t.iter().copied(), 4);
            let back: Vec<u8> = (0..4).map(|k| trit(b, k) as u8).collect();
            assert_eq!(back, t, "{n}");
        }
    }

    #[test]
    fn ternary_weights_come_back_exactly() {
        // Weights already ternary times a power of two: both types give them back bit for bit, in place.
        let x: Vec<f32> = (0..512)
            .map(|i| [-0.5f32, 0.0, 0.5][(i * 7 + i / 5) % 3])
            .collect();
        for (quantize, dq, size) in [
            (
                quantize_tq1_0 as fn(&[f32], &mut Vec<u8>),
                dq_tq1_0 as fn(&[u8], &mut [f32]),
                TQ1_BLOCK,
            ),
            (quantize_tq2_0, dq_tq2_0, TQ2_BLOCK),
        ] {
            let mut q = Vec::new();
            quantize(&x, &mut q);
            assert_eq!(q.len(), 2 * size);
            let mut y = vec![0f32; 512];
            for (qb, yb) in q.chunks_exact(size).zip(y.chunks_exact_mut(QK_K)) {
                dq(qb, yb);
            }
            assert_eq!(y, x);
        }
    }

    #[test]
    fn a_zero_block_is_zero() {
        let mut q = Vec::new();
        quantize_tq1_0(&[0.0; 256], &mut q);
        let mut y = [1f32; 256];
        dq_tq1_0(&q, &mut y);
        assert_eq!(y, [0.0; 256]);
    }
}
