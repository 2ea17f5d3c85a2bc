//! Each fast dot kernel against its reference twin, on random blocks; and the dequantizers against hand-built blocks.

use super::*;

/// A tiny deterministic generator (xorshift), so failures reproduce.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Random bytes for `blocks` blocks of `ty`, with every f16/f32 scale field set to a sane value.
pub(crate) fn random_row(ty: GgmlType, blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let ts = ty.type_size();
    let mut out: Vec<u8> = (0..blocks * ts).map(|_| rng.next_u64() as u8).collect();
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for b in out.chunks_exact_mut(ts) {
        let (s1, s2) = (f16(0.01 + rng.f32().abs() * 0.05), f16(rng.f32() * 0.05));
        match ty {
            GgmlType::F32 => b.copy_from_slice(&rng.f32().to_le_bytes()),
            GgmlType::F16 => b.copy_from_slice(&f16(rng.f32())),
            GgmlType::BF16 => b.copy_from_slice(&half::bf16::from_f32(rng.f32()).to_le_bytes()),
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => b[0..2].copy_from_slice(&s1),
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
                b[0..2].copy_from_slice(&s1);
                b[2..4].copy_from_slice(&s2);
            }
            GgmlType::Q8_1 => unreachable!(),
            GgmlType::Q2_K => {
                b[80..82].copy_from_slice(&s1);
                b[82..84].copy_from_slice(&s2);
            }
            GgmlType::Q3_K => b[108..110].copy_from_slice(&s1),
            GgmlType::Q6_K => b[208..210].copy_from_slice(&s1),
            GgmlType::IQ4_NL | GgmlType::IQ4_XS => b[0..2].copy_from_slice(&s1),
            GgmlType::IQ2_XXS
            | GgmlType::IQ2_XS
            | GgmlType::IQ2_S
            | GgmlType::IQ3_XXS
            | GgmlType::IQ3_S
            | GgmlType::IQ1_S => b[0..2].copy_from_slice(&s1),
            // The f16 scale in the top nibbles of the four 16-bit scale words.
            GgmlType::IQ1_M => {
                let bits = u16::from_le_bytes(s1);
                for k in 0..4 {
                    let w = 48 + 2 * k;
                    let v = u16::from_le_bytes([b[w], b[w + 1]]) & 0x0fff
                        | ((bits >> (4 * k)) & 15) << 12;
                    b[w..w + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            GgmlType::TQ1_0 => b[52..54].copy_from_slice(&s1),
            GgmlType::TQ2_0 => b[64..66].copy_from_slice(&s1),
            GgmlType::Q1_0 | GgmlType::Q2_0 => b[0..2].copy_from_slice(&s1),
            // Scales of about 2^-7 .. 1 (E8M0), 1/8 .. 1 (UE4M3).
            GgmlType::MXFP4 => b[0] = 120 + (rng.next_u64() % 8) as u8,
            GgmlType::NVFP4 => b[..4]
                .iter_mut()
                .for_each(|s| *s = 0x20 + (rng.next_u64() % 32) as u8),
            GgmlType::Q8_K => unreachable!(),
        }
    }
    out
}

/// A random activation row of `n` values in `[-scale, scale]`, quantized for weights of type `ty`.
fn random_act(ty: GgmlType, n: usize, scale: f32, rng: &mut Rng) -> Vec<u8> {
    let x: Vec<f32> = (0..n).map(|_| rng.f32() * scale).collect();
    let mut act = Vec::new();
    quantize_act(ty.vec_dot_type(), &x, &mut act);
    act
}

const WEIGHT_TYPES: [GgmlType; 28] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::TQ1_0,
    GgmlType::TQ2_0,
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

#[test]
fn fast_dot_matches_reference_for_every_type() {
    for level in available_levels() {
        fast_dot_matches_reference_at(level);
    }
}

fn fast_dot_matches_reference_at(level: SimdLevel) {
    let mut rng = Rng::new(7);
    let n = 1024;
    for ty in WEIGHT_TYPES {
        for trial in 0..8 {
            let w = random_row(ty, n / ty.block_size(), &mut rng);
            let act = random_act(ty, n, 3.0, &mut rng);
            let fast = dot_fn_at(level, ty)(n, &w, &act);
            let slow = reference::dot_fn(ty)(n, &w, &act);
            // Both compute the same sum; only the order of float additions differs.
            let tol = 1e-4 * (1.0 + slow.abs()) + 1e-3;
            assert!(
                (fast - slow).abs() <= tol,
                "{} {level:?} trial {trial}: fast {fast} vs reference {slow}",
                ty.name()
            );
        }
    }
}

#[test]
fn quantized_dot_is_close_to_the_exact_f32_dot() {
    // Activation quantization loses a little; the result must still be near the exact product.
    let mut rng = Rng::new(11);
    let n = 512;
    for ty in WEIGHT_TYPES {
        let w = random_row(ty, n / ty.block_size(), &mut rng);
        let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
        let mut wf = vec![0f32; n];
        dequantize(ty, &w, &mut wf);
        let exact: f32 = wf.iter().zip(&x).map(|(a, b)| a * b).sum();
        let norm: f32 = wf.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
        let mut act = Vec::new();
        quantize_act(ty.vec_dot_type(), &x, &mut act);
        let got = dot_fn(ty)(n, &w, &act);
        assert!(
            (got - exact).abs() <= 0.02 * norm + 1e-4,
            "{}: {got} vs exact {exact} (norm {norm})",
            ty.name()
        );
    }
}

#[test]
fn q4_0_dequantizes_a_hand_built_block() {
    let mut b = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let mut y = [0f32; 32];
    dequantize(GgmlType::Q4_0, &b, &mut y);
    assert_eq!(y[0], -4.0); // (0 - 8) * 0.5
    assert_eq!(y[15], 3.5); // (15 - 8) * 0.5
    assert_eq!(y[16], 3.5); // high nibble of byte 0 is 15
    assert_eq!(y[31], -4.0);
}

#[test]
fn iq4_xs_dequantizes_a_hand_built_block() {
    // d = 0.5; sub-block 0 has scale 33 (low nibble 1, high bits 2 -> 1 + 32), sub-block 7 has 63 (15 | 3 << 4).
    let mut b = half::f16::from_f32(0.5).to_le_bytes().to_vec();
    b.extend((2u16 | 3 << 14).to_le_bytes());
    b.extend([0x01, 0x00, 0x00, 0xF0]);
    b.extend((0..128u8).map(|j| (j % 16) | 0xF0));
    let mut y = [0f32; 256];
    dequantize(GgmlType::IQ4_XS, &b, &mut y);
    assert_eq!(y[0], 0.5 * 1.0 * -127.0); // (33 - 32) · KVALUES[0]
    assert_eq!(y[15], 0.5 * 1.0 * 113.0); // KVALUES[15]
    assert_eq!(y[16], 0.5 * 1.0 * 113.0); // high nibble of byte 0 is 15
    assert_eq!(y[32], 0.5 * -32.0 * -127.0); // sub-block 1: scale 0 -> -32
    assert_eq!(y[7 * 32 + 1], 0.5 * 31.0 * -104.0); // sub-block 7: 63 - 32, KVALUES[1]
}

#[test]
fn q8_k_quantizer_keeps_sums_and_scale() {
    let x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) / 64.0).collect();
    let mut q = Vec::new();
    quantize_act(GgmlType::Q8_K, &x, &mut q);
    assert_eq!(q.len(), GgmlType::Q8_K.type_size());
    let mut back = vec![0f32; 256];
    dequantize(GgmlType::Q8_K, &q, &mut back);
    for (a, b) in x.iter().zip(&back) {
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
    }
    let bsum0 = i16::from_le_bytes([q[260], q[261]]) as i32;
    let direct: i32 = q[4..20].iter().map(|&v| v as i8 as i32).sum();
    assert_eq!(bsum0, direct);
}

#[test]
fn four_row_kernels_match_one_row_kernels() {
    for level in available_levels() {
        four_row_kernels_match_one_row_kernels_at(level);
    }
}

/// Every SIMD tier gives the same bits as the AVX2 one (VNNI instructions compute the same integers).
#[test]
fn simd_tiers_agree_bit_for_bit() {
    let levels = available_levels();
    let mut rng = Rng::new(9);
    let n = 768;
    for ty in WEIGHT_TYPES {
        let w = random_row(ty, n / ty.block_size(), &mut rng);
        let act = random_act(ty, n, 4.0, &mut rng);
        let simd: Vec<u32> = levels
            .iter()
            .filter(|l| l.avx2())
            .map(|&l| dot_fn_at(l, ty)(n, &w, &act).to_bits())
            .collect();
        assert!(
            simd.windows(2).all(|p| p[0] == p[1]),
            "{}: {simd:?}",
            ty.name()
        );
    }
}

/// The block-of-rows entry point gives, row by row, the four-row kernel's bits.
#[test]
fn row_block_kernels_match_four_row_kernels() {
    let mut rng = Rng::new(13);
    let n = 512;
    for ty in WEIGHT_TYPES {
        let (Some(rows4), Some(dot4)) = (rows4_fn(ty), dot4_fn_at(simd_level(), ty)) else {
            continue;
        };
        let rows: Vec<Vec<u8>> = (0..5)
            .map(|_| random_row(ty, n / ty.block_size(), &mut rng))
            .collect();
        let w: Vec<u8> = rows.concat();
        let acts: Vec<Vec<u8>> = (0..4).map(|_| random_act(ty, n, 2.0, &mut rng)).collect();
        let ys = [&acts[0][..], &acts[1], &acts[2], &acts[3]];
        let mut out = [[0f32; 4]; 5];
        rows4(n, &w, rows[0].len(), ys, &mut out);
        for (r, row) in rows.iter().enumerate() {
            let want = dot4(n, row, ys).map(f32::to_bits);
            assert_eq!(out[r].map(f32::to_bits), want, "{} row {r}", ty.name());
        }
        // Eight activation rows at once (where the tier has it): each the one-row kernel's bits.
        if let Some(rows8) = rows8_fn(ty) {
            let ys8 = [ys[0], ys[1], ys[2], ys[3], ys[3], ys[2], ys[1], ys[0]];
            let mut out8 = [[0f32; 8]; 5];
            rows8(n, &w, rows[0].len(), ys8, &mut out8);
            for (r, row) in rows.iter().enumerate() {
                for (t, y) in ys8.iter().enumerate() {
                    let one = dot_fn(ty)(n, row, y);
                    assert_eq!(
                        out8[r][t].to_bits(),
                        one.to_bits(),
                        "{} row {r} act {t}",
                        ty.name()
                    );
                }
            }
        }
    }
}

/// The activation quantizers' eight-lane absolute maximum is the plain left fold's value, NaN and zeros included.
#[test]
fn abs_max_equals_the_left_fold() {
    let mut rng = Rng::new(23);
    for case in 0..200 {
        let mut b: Vec<f32> = (0..32).map(|_| rng.f32() * 8.0 - 4.0).collect();
        match case % 4 {
            1 => b[case % 32] = f32::NAN,
            2 => b.iter_mut().for_each(|v| *v = 0.0),
            3 => b.iter_mut().for_each(|v| *v = f32::NAN),
            _ => {}
        }
        let fold = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(reference::abs_max(&b).to_bits(), fold.to_bits(), "{b:?}");
    }
}

/// The decode entry point (one activation row against a run of weight rows, four at a time where it has a kernel
/// for that) gives each row the one-row kernel's bits, the rows after the last four included.
#[test]
fn decode_row_block_kernels_match_one_row_kernels() {
    let mut rng = Rng::new(17);
    let n = 512;
    for ty in WEIGHT_TYPES {
        let Some(rows1) = rows1_fn(ty) else {
            continue;
        };
        let rows: Vec<Vec<u8>> = (0..7)
            .map(|_| random_row(ty, n / ty.block_size(), &mut rng))
            .collect();
        let w: Vec<u8> = rows.concat();
        let act = random_act(ty, n, 2.0, &mut rng);
        let mut out = [[0f32; 1]; 7];
        rows1(n, &w, rows[0].len(), [&act], &mut out);
        for (r, row) in rows.iter().enumerate() {
            let one = dot_fn(ty)(n, row, &act);
            assert_eq!(out[r][0].to_bits(), one.to_bits(), "{} row {r}", ty.name());
            let want = reference::dot_fn(ty)(n, row, &act);
            assert!(
                (one - want).abs() <= 1e-4 * (1.0 + want.abs()) + 1e-3,
                "{} row {r}: {one} vs {want}",
                ty.name()
            );
        }
    }
}

fn four_row_kernels_match_one_row_kernels_at(level: SimdLevel) {
    let mut rng = Rng::new(5);
    let n = 512;
    for ty in WEIGHT_TYPES {
        let Some(dot4) = dot4_fn_at(level, ty) else {
            continue;
        };
        let w = random_row(ty, n / ty.block_size(), &mut rng);
        let acts: Vec<Vec<u8>> = (0..4).map(|_| random_act(ty, n, 2.0, &mut rng)).collect();
        let four = dot4(n, &w, [&acts[0], &acts[1], &acts[2], &acts[3]]);
        for t in 0..4 {
            // Bit-identical to the one-row kernel: a token's result must not depend on how it was batched.
            assert_eq!(
                four[t].to_bits(),
                dot_fn_at(level, ty)(n, &w, &acts[t]).to_bits(),
                "{} {level:?} row {t}",
                ty.name()
            );
            let one = reference::dot_fn(ty)(n, &w, &acts[t]);
            assert!(
                (four[t] - one).abs() <= 1e-4 * (1.0 + one.abs()) + 1e-3,
                "{} row {t}: {} vs {one}",
                ty.name(),
                four[t]
            );
        }
    }
}

/// The float types' own loops in `dequantize` give the reference's bits.
#[test]
fn float_dequantize_equals_the_reference() {
    let mut rng = Rng::new(21);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let data = random_row(ty, 96, &mut rng);
        let (mut fast, mut plain) = (vec![0f32; 96], vec![1f32; 96]);
        dequantize(ty, &data, &mut fast);
        reference::dequantize(ty, &data, &mut plain);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&plain), "{ty:?}");
    }
}

/// The codebook types' prompt path (rows unpacked once, then four or eight activation rows over them) gives each
/// product the one-row kernel's bits.
#[test]
fn expanded_codebook_rows_match_one_row_kernels() {
    let mut rng = Rng::new(29);
    let n = 768;
    let mut seen = 0;
    for ty in WEIGHT_TYPES {
        let Some(e) = expanded(ty) else {
            continue;
        };
        seen += 1;
        let rows: Vec<Vec<u8>> = (0..3).map(|_| random_row(ty, n / 256, &mut rng)).collect();
        let erb = e.row_bytes(n);
        let mut xw = vec![0u8; 3 * erb];
        for (row, dst) in rows.iter().zip(xw.chunks_exact_mut(erb)) {
            e.expand(n, row, dst);
        }
        let acts: Vec<Vec<u8>> = (0..8).map(|_| random_act(ty, n, 2.0, &mut rng)).collect();
        let ys8: [&[u8]; 8] = std::array::from_fn(|t| &acts[t][..]);
        let mut out4 = [[0f32; 4]; 3];
        (e.rows4)(n, &xw, erb, std::array::from_fn(|t| ys8[t]), &mut out4);
        let mut out8 = [[0f32; 8]; 3];
        if let Some(rows8) = e.rows8 {
            rows8(n, &xw, erb, ys8, &mut out8);
        }
        for (r, row) in rows.iter().enumerate() {
            for (t, y) in ys8.iter().enumerate() {
                let one = dot_fn(ty)(n, row, y).to_bits();
                if t < 4 {
                    assert_eq!(
                        out4[r][t].to_bits(),
                        one,
                        "{} rows4 row {r} act {t}",
                        ty.name()
                    );
                }
                if e.rows8.is_some() {
                    assert_eq!(
                        out8[r][t].to_bits(),
                        one,
                        "{} rows8 row {r} act {t}",
                        ty.name()
                    );
                }
            }
        }
    }
    // Every codebook type has the path wherever the CPU has AVX2.
    assert_eq!(seen, if simd_level().avx2() { 7 } else { 0 });
}
