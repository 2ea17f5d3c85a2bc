//! GGML's tensor types as GGUF numbers them: ids, names, block sizes and bytes per block, and the type activations
//! are quantized to before a dot product with each (ggml's `type_traits`). The kernels that read these blocks are in
//! `lar-models`; this is only the table a file reader and a memory planner need.

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
    /// 32 weights as 4-bit indices into a fixed non-linear table of 16 values, one f16 scale.
    IQ4_NL,
    /// IQ4_NL's table in blocks of 256: eight 6-bit sub-block scales under one f16 scale.
    IQ4_XS,
    /// 2.06 bits per weight: groups of 8 from a codebook of 256 (values 8, 25, 43), 7-bit signs, 4-bit scales per 32.
    IQ2_XXS,
    /// 2.31 bits: a codebook of 512 and a 4-bit scale per 16.
    IQ2_XS,
    /// 2.56 bits: a codebook of 1024, explicit sign bytes, a 4-bit scale per 16.
    IQ2_S,
    /// 3.06 bits: groups of 4 from a codebook of 256, 7-bit signs, a 4-bit scale per 32.
    IQ3_XXS,
    /// 3.44 bits: a codebook of 512 (values 1..15, odd), explicit sign bytes, a 4-bit scale per 32.
    IQ3_S,
    /// 1.56 bits: groups of 8 from a codebook of 2048 ternary points, a ±1/8 shift and a 3-bit scale per 32.
    IQ1_S,
    /// 1.75 bits: IQ1_S's codebook, a shift per 8 and a 3-bit scale per 16; the f16 scale spread over the scales.
    IQ1_M,
    /// Ternary weights (-1, 0, 1) in blocks of 256: five trits per byte (base 3, scaled to a byte), one f16 scale.
    TQ1_0,
    /// Ternary weights in blocks of 256 as 2-bit codes (value `q - 1`), one f16 scale.
    TQ2_0,
    /// OCP microscaling FP4: 32 E2M1 values (0, ±0.5 .. ±6) as 4-bit codes, one power-of-two (E8M0) scale.
    MXFP4,
    /// NVIDIA's FP4: 64 E2M1 values, an unsigned E4M3 scale per 16.
    NVFP4,
    /// 1 bit per weight: `±d` in blocks of 128, one f16 scale.
    Q1_0,
    /// 2 bits per weight: `(q - 1)·d` (-1, 0, 1, 2) in blocks of 64, one f16 scale.
    Q2_0,
}

/// The name ggml gives a type id Lar does not run (for the error that refuses it).
pub fn unsupported_name(id: u32) -> &'static str {
    match id {
        4 | 5 => "Q4_2/Q4_3 (removed from ggml)",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        _ => "unknown",
    }
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
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            42 => Q2_0,
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
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            NVFP4 => 40,
            Q1_0 => 41,
            Q2_0 => 42,
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
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ2_S => "IQ2_S",
            IQ3_XXS => "IQ3_XXS",
            IQ3_S => "IQ3_S",
            IQ1_S => "IQ1_S",
            IQ1_M => "IQ1_M",
            IQ4_NL => "IQ4_NL",
            IQ4_XS => "IQ4_XS",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Q2_0 => "Q2_0",
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => QK,
            NVFP4 | Q2_0 => 64,
            Q1_0 => 128,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ4_XS | TQ1_0 | TQ2_0 => QK_K,
            IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M => QK_K,
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
            IQ2_XXS => 66,
            IQ2_XS => 74,
            IQ2_S => 82,
            IQ3_XXS => 98,
            IQ3_S => 110,
            IQ1_S => 50,
            IQ1_M => 56,
            IQ4_NL => 18,
            IQ4_XS => 136,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
            NVFP4 => 36,
            Q1_0 | Q2_0 => 18,
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
            Q4_0 | Q5_0 | Q8_0 | IQ4_NL | MXFP4 | NVFP4 | Q1_0 | Q2_0 => Q8_0,
            Q4_1 | Q5_1 | Q8_1 => Q8_1,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ4_XS | TQ1_0 | TQ2_0 => Q8_K,
            IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S | IQ1_S | IQ1_M => Q8_K,
        }
    }
}
