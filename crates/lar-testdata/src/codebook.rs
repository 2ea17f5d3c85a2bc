//! Random blocks of the types Lar runs but llama-quantize does not write for its tests: the codebook types
//! (IQ1/IQ2/IQ3), the FP4 types (MXFP4, NVFP4) and Q1_0/Q2_0, for models whose every matrix is of one such type:
//! llama.cpp runs them (scripts/make-codebook-goldens.sh) and Lar must give the same logits, and bench/codebook.sh
//! times them. Any bytes are valid blocks of these types (indices into codebooks or tables, signs, bits, sub-block
//! scales), so only the block's scales are chosen, per type, for weights of about 0.15 RMS, like
//! [`crate::random_model`]'s.

use lar_formats::GgmlType;

use crate::Rng;

/// The codebook types, then the FP4 and plain low-bit ones.
pub const TYPES: [GgmlType; 11] = [
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
    GgmlType::MXFP4,
    GgmlType::NVFP4,
    GgmlType::Q1_0,
    GgmlType::Q2_0,
];

/// `n` random blocks of `ty` (one of [`TYPES`]) from `seed`. Deterministic.
pub fn random_blocks(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let ts = ty.type_size();
    let mut out: Vec<u8> = (0..n * ts).map(|_| rng.next_u64() as u8).collect();
    // Weight RMS ≈ d · (factor of the block float) · RMS of the odd multipliers · RMS of the levels.
    let d = match ty {
        GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ2_S => 0.0026,
        GgmlType::IQ3_XXS => 0.0011,
        GgmlType::IQ3_S => 0.0009,
        GgmlType::Q1_0 => 0.15,
        GgmlType::Q2_0 => 0.12,
        _ => 0.02,
    };
    for b in out.chunks_exact_mut(ts) {
        // The FP4 scales are powers of two (MXFP4: 2^-5 or 2^-6 halved, for E2M1 values of RMS ~5.9 doubled) or
        // UE4M3 (NVFP4: 1.0..1.875 · 2^-5, halved).
        if ty == GgmlType::MXFP4 {
            b[0] = 122 + rng.below(2) as u8;
            continue;
        }
        if ty == GgmlType::NVFP4 {
            for s in &mut b[..4] {
                *s = 0x10 | rng.below(8) as u8;
            }
            continue;
        }
        // ±20% per block, so the scales differ.
        let v = d * (0.8 + 0.4 * (rng.below(1000) as f32 / 1000.0));
        let bits = half::f16::from_f32(v).to_bits();
        if ty == GgmlType::IQ1_M {
            // The f16 in the top nibbles of the four 16-bit scale words.
            for k in 0..4 {
                let w = 48 + 2 * k;
                let old = u16::from_le_bytes([b[w], b[w + 1]]);
                let new = (old & 0x0fff) | (((bits >> (4 * k)) & 15) << 12);
                b[w..w + 2].copy_from_slice(&new.to_le_bytes());
            }
        } else {
            b[0..2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    out
}
