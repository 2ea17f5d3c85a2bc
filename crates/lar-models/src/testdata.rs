//! Test models: where the fetched real ones live, and tiny random-weight models of each architecture written with
//! our own GGUF writer (the same bytes every time, so llama.cpp's logits for them can be committed as goldens).

use std::path::PathBuf;

use crate::gguf::Value;
use crate::gguf_write::GgufWriter;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// `$LAR_MODELS`, else `~/.cache/lar/models` (filled by `scripts/fetch-models.sh`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("LAR_MODELS") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lar/models")
        }
    }
}

/// The path of a test model; panics with instructions when it has not been fetched (tests must not silently skip).
pub fn model(file: &str) -> PathBuf {
    let p = models_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

/// The repository's `tests/golden` directory.
pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// Architectures with a tiny synthetic model.
pub const TINY_ARCHS: [&str; 4] = ["llama", "qwen2", "qwen3", "phi3"];

/// Shape of the tiny models: 2 layers, 64 wide, 4 heads of 16 (2 KV heads), FFN 96, a 260-token byte-level vocabulary.
const N_LAYER: usize = 2;
const N_EMBD: usize = 64;
const N_HEAD: usize = 4;
const N_KV: usize = 2;
const HEAD_DIM: usize = 16;
const N_FF: usize = 96;
const N_VOCAB: usize = 260;

/// A tiny random-weight model of `arch` (one of [`TINY_ARCHS`]), all F32, as GGUF bytes. Deterministic.
pub fn tiny_model(arch: &str) -> Vec<u8> {
    let mut rng = 0x9E3779B97F4A7C15u64
        ^ arch
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut mat = |rows: usize, cols: usize, scale: f32| -> Vec<f32> {
        (0..rows * cols).map(|_| rand() * scale).collect()
    };
    let mut w = GgufWriter::new();
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let k = |name: &str| format!("{arch}.{name}");
    // A neutral name: llama.cpp special-cases vocabularies of models whose name contains "phi3".
    w.add("general.architecture", s(arch))
        .add("general.name", s("tiny"));
    w.add(&k("block_count"), u(N_LAYER))
        .add(&k("context_length"), u(256))
        .add(&k("embedding_length"), u(N_EMBD))
        .add(&k("feed_forward_length"), u(N_FF))
        .add(&k("attention.head_count"), u(N_HEAD))
        .add(&k("attention.head_count_kv"), u(N_KV))
        .add(&k("attention.key_length"), u(HEAD_DIM))
        .add(&k("attention.value_length"), u(HEAD_DIM))
        .add(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .add(&k("rope.freq_base"), Value::F32(10_000.0))
        .add(&k("rope.dimension_count"), u(HEAD_DIM));
    // Byte-level BPE vocabulary: the 256 GPT-2 byte characters, one merge, three control tokens.
    let mut tokens: Vec<Value> = gpt2_byte_chars()
        .into_iter()
        .map(|c| s(&c.to_string()))
        .collect();
    tokens.push(s("\u{120}\u{120}"));
    for t in ["<|bos|>", "<|eos|>", "<|pad|>"] {
        tokens.push(s(t));
    }
    let mut types = vec![Value::I32(1); 257];
    types.extend([Value::I32(3), Value::I32(3), Value::I32(3)]);
    w.add("tokenizer.ggml.model", s("gpt2"))
        .add("tokenizer.ggml.pre", s("default"))
        .add("tokenizer.ggml.tokens", Value::Array(tokens))
        .add("tokenizer.ggml.token_type", Value::Array(types))
        .add(
            "tokenizer.ggml.merges",
            Value::Array(vec![s("\u{120} \u{120}")]),
        )
        .add("tokenizer.ggml.bos_token_id", u(257))
        .add("tokenizer.ggml.eos_token_id", u(258))
        .add("tokenizer.ggml.add_bos_token", Value::Bool(false));
    let kvd = N_KV * HEAD_DIM;
    let qd = N_HEAD * HEAD_DIM;
    let norm = |rand: &mut dyn FnMut() -> f32, n: usize| -> Vec<f32> {
        (0..n).map(|_| 1.0 + 0.1 * rand()).collect()
    };
    let mut r2 = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    w.add_f32(
        "token_embd.weight",
        &[N_EMBD, N_VOCAB],
        &mat(N_VOCAB, N_EMBD, 0.5),
    );
    w.add_f32("output_norm.weight", &[N_EMBD], &norm(&mut r2, N_EMBD));
    w.add_f32(
        "output.weight",
        &[N_EMBD, N_VOCAB],
        &mat(N_VOCAB, N_EMBD, 0.3),
    );
    for i in 0..N_LAYER {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        w.add_f32(&n("attn_norm"), &[N_EMBD], &norm(&mut r2, N_EMBD));
        if arch == "phi3" {
            w.add_f32(
                &n("attn_qkv"),
                &[N_EMBD, qd + 2 * kvd],
                &mat(qd + 2 * kvd, N_EMBD, 0.3),
            );
        } else {
            w.add_f32(&n("attn_q"), &[N_EMBD, qd], &mat(qd, N_EMBD, 0.3));
            w.add_f32(&n("attn_k"), &[N_EMBD, kvd], &mat(kvd, N_EMBD, 0.3));
            w.add_f32(&n("attn_v"), &[N_EMBD, kvd], &mat(kvd, N_EMBD, 0.3));
        }
        if arch == "qwen2" {
            w.add_f32(&format!("blk.{i}.attn_q.bias"), &[qd], &mat(1, qd, 0.2));
            w.add_f32(&format!("blk.{i}.attn_k.bias"), &[kvd], &mat(1, kvd, 0.2));
            w.add_f32(&format!("blk.{i}.attn_v.bias"), &[kvd], &mat(1, kvd, 0.2));
        }
        if arch == "qwen3" {
            w.add_f32(&n("attn_q_norm"), &[HEAD_DIM], &norm(&mut r2, HEAD_DIM));
            w.add_f32(&n("attn_k_norm"), &[HEAD_DIM], &norm(&mut r2, HEAD_DIM));
        }
        w.add_f32(&n("attn_output"), &[qd, N_EMBD], &mat(N_EMBD, qd, 0.3));
        w.add_f32(&n("ffn_norm"), &[N_EMBD], &norm(&mut r2, N_EMBD));
        if arch == "phi3" {
            w.add_f32(
                &n("ffn_up"),
                &[N_EMBD, 2 * N_FF],
                &mat(2 * N_FF, N_EMBD, 0.3),
            );
        } else {
            w.add_f32(&n("ffn_gate"), &[N_EMBD, N_FF], &mat(N_FF, N_EMBD, 0.3));
            w.add_f32(&n("ffn_up"), &[N_EMBD, N_FF], &mat(N_FF, N_EMBD, 0.3));
        }
        w.add_f32(&n("ffn_down"), &[N_FF, N_EMBD], &mat(N_EMBD, N_FF, 0.3));
    }
    w.to_bytes()
}

/// GPT-2's printable stand-ins for the 256 byte values, in byte order.
fn gpt2_byte_chars() -> Vec<char> {
    let mut n = 0u32;
    (0..256u32)
        .map(|b| {
            let printable = (0x21..=0x7E).contains(&b)
                || (0xA1..=0xAC).contains(&b)
                || (0xAE..=0xFF).contains(&b);
            if printable {
                char::from_u32(b).unwrap_or('?')
            } else {
                n += 1;
                char::from_u32(255 + n).unwrap_or('?')
            }
        })
        .collect()
}
