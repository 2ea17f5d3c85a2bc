//! The codebook ("i-quant") types IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M: their codebooks and
//! reference dequantization, line for line ggml's `dequantize_row_iq*` (ggml-quants.c).
//!
//! Each block holds 256 weights as groups of 8 (or 4) looked up in a fixed codebook of non-negative levels
//! ([`super::codebook_grids`]), with signs (IQ2/IQ3: 8 per byte, or 7 bits whose parity gives the eighth), small
//! odd sub-block multipliers `2s + 1`, and one f16 scale. IQ1's levels are -1, 0, 1 shifted by ±1/8. The fast
//! kernels (`avx2/codebook.rs`) compute the same dot products in integers: every weight of these types is an
//! integer times a per-16 odd multiplier times one float per block.

use super::codebook_grids::*;
use super::f16_at;

/// Widens 2-bit codes (8 per entry) to bytes: ggml's `uint64_t` grids.
const fn widen8<const N: usize>(codes: &[u16; N], levels: [u8; 3]) -> [u64; N] {
    let mut out = [0u64; N];
    let mut i = 0;
    while i < N {
        let mut k = 0;
        while k < 8 {
            let c = ((codes[i] >> (2 * k)) & 3) as usize;
            out[i] |= (levels[c] as u64) << (8 * k);
            k += 1;
        }
        i += 1;
    }
    out
}

/// Widens 3-bit codes (4 per entry) to bytes: ggml's `uint32_t` grids.
const fn widen4<const N: usize>(codes: &[u16; N], levels: [u8; 8]) -> [u32; N] {
    let mut out = [0u32; N];
    let mut i = 0;
    while i < N {
        let mut k = 0;
        while k < 4 {
            let c = ((codes[i] >> (3 * k)) & 7) as usize;
            out[i] |= (levels[c] as u32) << (8 * k);
            k += 1;
        }
        i += 1;
    }
    out
}

const L2: [u8; 3] = [8, 25, 43];
pub static IQ2XXS_GRID: [u64; 256] = widen8(&IQ2XXS_CODES, L2);
pub static IQ2XS_GRID: [u64; 512] = widen8(&IQ2XS_CODES, L2);
pub static IQ2S_GRID: [u64; 1024] = widen8(&IQ2S_CODES, L2);
pub static IQ3XXS_GRID: [u32; 256] = widen4(&IQ3XXS_CODES, [4, 12, 20, 28, 36, 44, 52, 62]);
pub static IQ3S_GRID: [u32; 512] = widen4(&IQ3S_CODES, [1, 3, 5, 7, 9, 11, 13, 15]);
/// Bytes -1 (0xFF), 0, 1.
pub static IQ1S_GRID: [u64; 2048] = widen8(&IQ1S_CODES, [0xFF, 0, 1]);

/// ggml's `ksigns_iq2xs`: seven sign bits and, as the eighth, their parity (an even number of minus signs).
pub static KSIGNS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8 | (((i as u8).count_ones() as u8 & 1) << 7);
        i += 1;
    }
    t
};

/// IQ1's shift of every level (`IQ1S_DELTA`).
const IQ1_DELTA: f32 = 0.125;

fn u16_at(x: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([x[i], x[i + 1]])
}

fn u32_at(x: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([x[i], x[i + 1], x[i + 2], x[i + 3]])
}

/// Byte `j` of a grid entry.
fn byte(v: u64, j: usize) -> u8 {
    (v >> (8 * j)) as u8
}

/// `±1` for bit `j` of a sign byte.
fn sign(signs: u8, j: usize) -> f32 {
    if signs & (1 << j) != 0 { -1.0 } else { 1.0 }
}

/// IQ1_M's f16 scale: the top nibbles of its four 16-bit scale words.
fn iq1m_scale(x: &[u8]) -> f32 {
    let sc = |k: usize| u16_at(x, 48 + 2 * k);
    let bits = (sc(0) >> 12) | ((sc(1) >> 8) & 0x00f0) | ((sc(2) >> 4) & 0x0f00) | (sc(3) & 0xf000);
    half::f16::from_bits(bits).to_f32()
}

pub(crate) fn dq_iq2_xxs(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for ib in 0..8 {
        let (a0, a1) = (u32_at(x, 2 + 8 * ib), u32_at(x, 6 + 8 * ib));
        let db = d * (0.5 + (a1 >> 28) as f32) * 0.25;
        for l in 0..4 {
            let grid = IQ2XXS_GRID[(a0 >> (8 * l)) as u8 as usize];
            let signs = KSIGNS[((a1 >> (7 * l)) & 127) as usize];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = db * byte(grid, j) as f32 * sign(signs, j);
            }
        }
    }
}

pub(crate) fn dq_iq2_xs(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for ib in 0..8 {
        let sc = x[66 + ib];
        let db = [
            d * (0.5 + (sc & 0xf) as f32) * 0.25,
            d * (0.5 + (sc >> 4) as f32) * 0.25,
        ];
        for l in 0..4 {
            let q = u16_at(x, 2 + 2 * (4 * ib + l));
            let grid = IQ2XS_GRID[(q & 511) as usize];
            let signs = KSIGNS[(q >> 9) as usize];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = db[l / 2] * byte(grid, j) as f32 * sign(signs, j);
            }
        }
    }
}

pub(crate) fn dq_iq2_s(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let (qs, signs, qh) = (&x[2..34], &x[34..66], &x[66..74]);
    for ib in 0..8 {
        let sc = x[74 + ib];
        let db = [
            d * (0.5 + (sc & 0xf) as f32) * 0.25,
            d * (0.5 + (sc >> 4) as f32) * 0.25,
        ];
        for l in 0..4 {
            let idx = qs[4 * ib + l] as usize | (((qh[ib] as usize) << (8 - 2 * l)) & 0x300);
            let grid = IQ2S_GRID[idx];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] =
                    db[l / 2] * byte(grid, j) as f32 * sign(signs[4 * ib + l], j);
            }
        }
    }
}

pub(crate) fn dq_iq3_xxs(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let qs = &x[2..66];
    for ib in 0..8 {
        let aux = u32_at(x, 66 + 4 * ib);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for l in 0..4 {
            let signs = KSIGNS[((aux >> (7 * l)) & 127) as usize];
            let g1 = IQ3XXS_GRID[qs[8 * ib + 2 * l] as usize] as u64;
            let g2 = IQ3XXS_GRID[qs[8 * ib + 2 * l + 1] as usize] as u64;
            for j in 0..4 {
                let o = 32 * ib + 8 * l + j;
                y[o] = db * byte(g1, j) as f32 * sign(signs, j);
                y[o + 4] = db * byte(g2, j) as f32 * sign(signs, j + 4);
            }
        }
    }
}

pub(crate) fn dq_iq3_s(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    let (qs, qh, signs, scales) = (&x[2..66], &x[66..74], &x[74..106], &x[106..110]);
    for ib in 0..8 {
        let s = (scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
        let db = d * (1 + 2 * s as i32) as f32;
        let h = qh[ib] as usize;
        for l in 0..4 {
            let g1 = IQ3S_GRID[qs[8 * ib + 2 * l] as usize | ((h << (8 - 2 * l)) & 256)] as u64;
            let g2 = IQ3S_GRID[qs[8 * ib + 2 * l + 1] as usize | ((h << (7 - 2 * l)) & 256)] as u64;
            let sg = signs[4 * ib + l];
            for j in 0..4 {
                let o = 32 * ib + 8 * l + j;
                y[o] = db * byte(g1, j) as f32 * sign(sg, j);
                y[o + 4] = db * byte(g2, j) as f32 * sign(sg, j + 4);
            }
        }
    }
}

pub(crate) fn dq_iq1_s(x: &[u8], y: &mut [f32]) {
    let d = f16_at(x, 0);
    for ib in 0..8 {
        let qh = u16_at(x, 34 + 2 * ib);
        let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
        let delta = if qh & 0x8000 != 0 {
            -IQ1_DELTA
        } else {
            IQ1_DELTA
        };
        for l in 0..4 {
            let idx = x[2 + 4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
            let grid = IQ1S_GRID[idx];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl * (byte(grid, j) as i8 as f32 + delta);
            }
        }
    }
}

pub(crate) fn dq_iq1_m(x: &[u8], y: &mut [f32]) {
    let d = iq1m_scale(x);
    let (qs, qh) = (&x[0..32], &x[32..48]);
    for ib in 0..8 {
        let sc = u16_at(x, 48 + 2 * (ib / 2));
        let shift = 6 * (ib % 2);
        let dl = [
            d * (2 * ((sc >> shift) & 7) + 1) as f32,
            d * (2 * ((sc >> (shift + 3)) & 7) + 1) as f32,
        ];
        let (h0, h1) = (qh[2 * ib] as usize, qh[2 * ib + 1] as usize);
        let q = |l: usize| qs[4 * ib + l] as usize;
        let idx = [
            q(0) | ((h0 << 8) & 0x700),
            q(1) | ((h0 << 4) & 0x700),
            q(2) | ((h1 << 8) & 0x700),
            q(3) | ((h1 << 4) & 0x700),
        ];
        let delta = [h0 & 0x08, h0 & 0x80, h1 & 0x08, h1 & 0x80]
            .map(|b| if b != 0 { -IQ1_DELTA } else { IQ1_DELTA });
        for l in 0..4 {
            let grid = IQ1S_GRID[idx[l]];
            for j in 0..8 {
                y[32 * ib + 8 * l + j] = dl[l / 2] * (byte(grid, j) as i8 as f32 + delta[l]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codebooks_widen_to_ggmls_entries() {
        // Spot checks against ggml-common.h (first, second and last entries of each table).
        assert_eq!(IQ2XXS_GRID[0], 0x0808080808080808);
        assert_eq!(IQ2XXS_GRID[1], 0x080808080808082b);
        assert_eq!(IQ2XXS_GRID[255], 0x2b2b2b1908081908);
        assert_eq!(IQ2XS_GRID[511], 0x2b2b2b2b2b2b2b2b);
        assert_eq!(IQ2S_GRID[1023], 0x2b2b2b2b2b2b2b2b);
        assert_eq!(IQ3XXS_GRID[0], 0x04040404);
        assert_eq!(IQ3XXS_GRID[1], 0x04040414);
        assert_eq!(IQ3XXS_GRID[255], 0x3e341c04);
        assert_eq!(IQ3S_GRID[0], 0x01010101);
        assert_eq!(IQ3S_GRID[1], 0x01010103);
        assert_eq!(IQ3S_GRID[511], 0x0f0f0101);
        assert_eq!(IQ1S_GRID[0], 0xffffffffffffffff);
        assert_eq!(IQ1S_GRID[1], 0xffffffffffffff01);
        assert_eq!(IQ1S_GRID[2047], 0x0101010101010101);
        assert_eq!(KSIGNS[1], 129);
        assert_eq!(KSIGNS[3], 3);
        assert_eq!(KSIGNS[127], 255);
    }
}
