//! Test models: where the fetched real ones live, and tiny random-weight models of each architecture written with
//! our own GGUF writer (the same bytes every time, so llama.cpp's logits for them can be committed as goldens), and
//! those models written out as Hugging Face directories.

use std::path::{Path, PathBuf};

use lar_formats::GgmlType;
use lar_formats::gguf::{Gguf, Value};
use lar_formats::gguf_write::GgufWriter;

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
/// Qwen2.5-Coder-0.5B-Instruct Q4_K_M (the default chat model; a tool-calling template).
pub const QWEN_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
/// Hugging Face directories made from the two GGUF files by scripts/make-hf-models.py (transformers' own
/// conversion of config and tokenizer; weights as BF16 in two shards, and F16), under `hf/` in the models dir.
pub const SMOLLM2_HF: &str = "hf/SmolLM2-135M-Instruct-bf16";
pub const GEMMA3_HF: &str = "hf/gemma-3-270m-f16";

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

/// A golden file of `tests/golden`, parsed.
pub fn golden(name: &str) -> serde_json::Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON array of token ids from a golden file.
pub fn golden_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of token ids")
        .iter()
        .map(|x| x.as_u64().expect("a token id") as u32)
        .collect()
}

/// Index of the largest value.
pub fn argmax(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |m, (i, &v)| if v > m.1 { (i, v) } else { m },
        )
        .0
}

/// A golden file's `top8` rows (llama.cpp's best (id, logit) pairs per position).
pub fn golden_top8(v: &serde_json::Value) -> Vec<Vec<(u32, f32)>> {
    v.as_array()
        .expect("golden top8")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("a row of top8")
                .iter()
                .map(|p| {
                    let id = p[0].as_u64().expect("an id") as u32;
                    (id, p[1].as_f64().expect("a logit") as f32)
                })
                .collect()
        })
        .collect()
}

/// Logits per position against a golden file's `logits` (llama.cpp's): panics where the argmax differs or the
/// counts do, and returns the largest |difference|.
pub fn max_diff_vs_golden(rows: &[Vec<f32>], golden: &serde_json::Value, what: &str) -> f32 {
    let theirs = golden["logits"].as_array().expect("golden logits");
    assert_eq!(rows.len(), theirs.len(), "{what}: positions");
    let mut worst = 0f32;
    for (pos, (ours, theirs)) in rows.iter().zip(theirs).enumerate() {
        let theirs: Vec<f32> = theirs
            .as_array()
            .expect("a row of logits")
            .iter()
            .map(|v| v.as_f64().expect("a logit") as f32)
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{what}: vocabulary");
        assert_eq!(
            argmax(ours),
            argmax(&theirs),
            "{what}: argmax differs at position {pos}"
        );
        for (a, b) in ours.iter().zip(&theirs) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// Architectures with a tiny synthetic model.
pub const TINY_ARCHS: [&str; 4] = ["llama", "qwen2", "qwen3", "phi3"];

/// The shape of a synthetic model.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub layers: usize,
    pub embd: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ff: usize,
    /// The context length the model declares.
    pub ctx: usize,
}

/// The tiny models: 2 layers, 64 wide, 4 heads of 16 (2 KV heads), FFN 96.
pub const TINY: Shape = Shape {
    layers: 2,
    embd: 64,
    heads: 4,
    kv_heads: 2,
    head_dim: 16,
    ff: 96,
    ctx: 256,
};

/// Wide enough for the k-quants' superblocks of 256 and deep enough for llama-quantize's per-layer mixtures: 8
/// layers, 256 wide, 4 heads of 64 sharing one KV head (grouped 4 to 1), FFN 256.
pub const WIDE: Shape = Shape {
    layers: 8,
    embd: 256,
    heads: 4,
    kv_heads: 1,
    head_dim: 64,
    ff: 256,
    ctx: 256,
};

/// The byte-level vocabulary: the 256 GPT-2 byte characters, one merge, three control tokens.
const N_VOCAB: usize = 260;

/// A tiny random-weight model of `arch` (one of [`TINY_ARCHS`]), all F32, as GGUF bytes. Deterministic.
pub fn tiny_model(arch: &str) -> Vec<u8> {
    random_model(arch, &TINY)
}

/// A random-weight model of `arch` in the [`WIDE`] shape, all F32, as GGUF bytes (about 12 MB). Deterministic.
pub fn wide_model(arch: &str) -> Vec<u8> {
    random_model(arch, &WIDE)
}

/// [`WIDE`] with 2 layers, every matrix of the codebook type `ty` ([`codebook_model`]): the models
/// tests/golden/codebook-logits.json holds llama.cpp's logits for. Deterministic.
pub fn wide_codebook_model(ty: GgmlType) -> Vec<u8> {
    codebook_model("llama", &Shape { layers: 2, ..WIDE }, ty)
}

/// A synthetic importance matrix for [`wide_model`] in llama.cpp's GGUF imatrix format: every block matrix's input
/// columns with mean squared activations spread over four orders of magnitude (as real ones are), 512 tokens.
/// Deterministic; llama-quantize reads it (scripts/make-quantize-goldens.sh feeds it to llama-quantize).
pub fn wide_imatrix() -> Vec<u8> {
    let sh = WIDE;
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut w = GgufWriter::new();
    w.add("general.type", Value::String("imatrix".into()))
        .add(
            "imatrix.datasets",
            Value::Array(vec![Value::String("synthetic".into())]),
        )
        .add("imatrix.chunk_count", Value::U32(1))
        .add("imatrix.chunk_size", Value::U32(512));
    let mut names = Vec::new();
    for i in 0..sh.layers {
        for (t, cols) in [
            ("attn_k", sh.embd),
            ("attn_output", sh.heads * sh.head_dim),
            ("attn_q", sh.embd),
            ("attn_v", sh.embd),
            ("ffn_down", sh.ff),
            ("ffn_gate", sh.embd),
            ("ffn_up", sh.embd),
        ] {
            names.push((format!("blk.{i}.{t}.weight"), cols));
        }
    }
    names.sort();
    for (name, cols) in names {
        let sums: Vec<f32> = (0..cols)
            .map(|_| 512.0 * 10f32.powf(4.0 * rand() - 2.0))
            .collect();
        w.add_f32(&format!("{name}.in_sum2"), &[cols, 1], &sums);
        w.add_f32(&format!("{name}.counts"), &[1, 1], &[512.0]);
    }
    w.to_bytes()
}

/// A random-weight model of `arch` in shape `sh`, all F32, as GGUF bytes. Deterministic.
pub fn random_model(arch: &str, sh: &Shape) -> Vec<u8> {
    build_model(arch, sh, None)
}

/// [`random_model`] with every matrix (the embeddings and the output too) of type `ty` (one of
/// [`crate::codebook::TYPES`]) as random blocks ([`crate::codebook::random_blocks`]); norms and biases stay F32.
/// Every row length of `sh` must be a multiple of 256. Deterministic.
pub fn codebook_model(arch: &str, sh: &Shape, ty: GgmlType) -> Vec<u8> {
    build_model(arch, sh, Some(ty))
}

fn build_model(arch: &str, sh: &Shape, blocks: Option<GgmlType>) -> Vec<u8> {
    let Shape {
        layers: n_layer,
        embd: n_embd,
        heads: n_head,
        kv_heads: n_kv,
        head_dim,
        ff: n_ff,
        ctx,
    } = *sh;
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
    let mut w = Writer {
        w: GgufWriter::new(),
        blocks,
        seed: 0,
    };
    let s = |v: &str| Value::String(v.to_string());
    let u = |v: usize| Value::U32(v as u32);
    let k = |name: &str| format!("{arch}.{name}");
    // A neutral name: llama.cpp special-cases vocabularies of models whose name contains "phi3".
    w.add("general.architecture", s(arch))
        .add("general.name", s("tiny"));
    w.add(&k("block_count"), u(n_layer))
        .add(&k("context_length"), u(ctx))
        .add(&k("embedding_length"), u(n_embd))
        .add(&k("feed_forward_length"), u(n_ff))
        .add(&k("attention.head_count"), u(n_head))
        .add(&k("attention.head_count_kv"), u(n_kv))
        .add(&k("attention.key_length"), u(head_dim))
        .add(&k("attention.value_length"), u(head_dim))
        .add(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-5))
        .add(&k("rope.freq_base"), Value::F32(10_000.0))
        .add(&k("rope.dimension_count"), u(head_dim));
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
    let kvd = n_kv * head_dim;
    let qd = n_head * head_dim;
    let norm = |rand: &mut dyn FnMut() -> f32, n: usize| -> Vec<f32> {
        (0..n).map(|_| 1.0 + 0.1 * rand()).collect()
    };
    let mut r2 = move || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    w.add_matrix(
        "token_embd.weight",
        &[n_embd, N_VOCAB],
        &mat(N_VOCAB, n_embd, 0.5),
    );
    w.add_f32("output_norm.weight", &[n_embd], &norm(&mut r2, n_embd));
    w.add_matrix(
        "output.weight",
        &[n_embd, N_VOCAB],
        &mat(N_VOCAB, n_embd, 0.3),
    );
    for i in 0..n_layer {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        w.add_f32(&n("attn_norm"), &[n_embd], &norm(&mut r2, n_embd));
        if arch == "phi3" {
            w.add_matrix(
                &n("attn_qkv"),
                &[n_embd, qd + 2 * kvd],
                &mat(qd + 2 * kvd, n_embd, 0.3),
            );
        } else {
            w.add_matrix(&n("attn_q"), &[n_embd, qd], &mat(qd, n_embd, 0.3));
            w.add_matrix(&n("attn_k"), &[n_embd, kvd], &mat(kvd, n_embd, 0.3));
            w.add_matrix(&n("attn_v"), &[n_embd, kvd], &mat(kvd, n_embd, 0.3));
        }
        if arch == "qwen2" {
            w.add_f32(&format!("blk.{i}.attn_q.bias"), &[qd], &mat(1, qd, 0.2));
            w.add_f32(&format!("blk.{i}.attn_k.bias"), &[kvd], &mat(1, kvd, 0.2));
            w.add_f32(&format!("blk.{i}.attn_v.bias"), &[kvd], &mat(1, kvd, 0.2));
        }
        if arch == "qwen3" {
            w.add_f32(&n("attn_q_norm"), &[head_dim], &norm(&mut r2, head_dim));
            w.add_f32(&n("attn_k_norm"), &[head_dim], &norm(&mut r2, head_dim));
        }
        w.add_matrix(&n("attn_output"), &[qd, n_embd], &mat(n_embd, qd, 0.3));
        w.add_f32(&n("ffn_norm"), &[n_embd], &norm(&mut r2, n_embd));
        if arch == "phi3" {
            w.add_matrix(
                &n("ffn_up"),
                &[n_embd, 2 * n_ff],
                &mat(2 * n_ff, n_embd, 0.3),
            );
        } else {
            w.add_matrix(&n("ffn_gate"), &[n_embd, n_ff], &mat(n_ff, n_embd, 0.3));
            w.add_matrix(&n("ffn_up"), &[n_embd, n_ff], &mat(n_ff, n_embd, 0.3));
        }
        w.add_matrix(&n("ffn_down"), &[n_ff, n_embd], &mat(n_embd, n_ff, 0.3));
    }
    w.w.to_bytes()
}

/// A GGUF writer that puts matrices either as given (F32) or, for a codebook model, as random blocks.
struct Writer {
    w: GgufWriter,
    blocks: Option<GgmlType>,
    seed: u64,
}

impl Writer {
    fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.w.add(key, value);
        self
    }

    fn add_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> &mut Self {
        self.w.add_f32(name, dims, values);
        self
    }

    fn add_matrix(&mut self, name: &str, dims: &[usize], values: &[f32]) -> &mut Self {
        match self.blocks {
            None => self.w.add_f32(name, dims, values),
            Some(ty) => {
                self.seed += 1;
                let data =
                    crate::codebook::random_blocks(ty, values.len() / ty.block_size(), self.seed);
                self.w.add_tensor(name, dims, ty, data)
            }
        };
        self
    }
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

/// The checkpoint name of a GGUF tensor (the inverse of [`lar_formats::hf::tensor_name`]), for writing test directories.
fn hf_name(arch: &str, name: &str) -> String {
    match name {
        "token_embd.weight" => return "model.embed_tokens.weight".into(),
        "output_norm.weight" => return "model.norm.weight".into(),
        "output.weight" => return "lm_head.weight".into(),
        _ => {}
    }
    let mut it = name.splitn(4, '.');
    let (_, layer, module, suffix) = (it.next(), it.next(), it.next(), it.next());
    let (layer, module, suffix) = (
        layer.unwrap_or_default(),
        module.unwrap_or_default(),
        suffix.unwrap_or_default(),
    );
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_qkv" => "self_attn.qkv_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" if arch == "gemma3" => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" if arch == "phi3" => "mlp.gate_up_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{layer}.{hf}.{suffix}")
}

/// Writes a GGUF model of F32 tensors as a Hugging Face directory in `dir`: `config.json` and the weights as
/// `dtype` ("F32", "F16" or "BF16"; norms and biases stay F32) in `shards` safetensors files with an index when
/// there is more than one. Llama's Q and K rows go back to checkpoint order, as llama.cpp's converter permuted
/// them. The test twin of scripts/make-hf-models.py, for the tiny models.
pub fn write_hf_dir(g: &Gguf, dir: &Path, dtype: &str, shards: usize) -> std::io::Result<()> {
    use lar_formats::safetensors::floats_to_f32 as dequantize;
    std::fs::create_dir_all(dir)?;
    let arch = g.architecture().unwrap_or("llama").to_string();
    let get = |k: &str| g.get_u64(&format!("{arch}.{k}")).unwrap_or(0);
    let (n_head, n_kv, hd) = (
        get("attention.head_count") as usize,
        get("attention.head_count_kv") as usize,
        get("attention.key_length") as usize,
    );
    let class = match arch.as_str() {
        "llama" => "LlamaForCausalLM",
        "qwen2" => "Qwen2ForCausalLM",
        "qwen3" => "Qwen3ForCausalLM",
        "phi3" => "Phi3ForCausalLM",
        _ => "Gemma3ForCausalLM",
    };
    let config = serde_json::json!({
        "architectures": [class],
        "model_type": arch,
        "hidden_size": get("embedding_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "head_dim": hd,
        "intermediate_size": get("feed_forward_length"),
        "max_position_embeddings": get("context_length"),
        "rms_norm_eps": g.get_f64(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
        "rope_theta": g.get_f64(&format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
        "tie_word_embeddings": g.tensor("output.weight").is_none(),
    });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let mut tensors: Vec<(String, &str, Vec<usize>, Vec<u8>)> = Vec::new();
    for t in &g.tensors {
        let mut v = vec![0f32; t.n_elements()];
        dequantize(t.ty, g.tensor_data(t), &mut v);
        let shape: Vec<usize> = t.dims.iter().rev().copied().collect();
        if arch == "llama"
            && (t.name.ends_with("attn_q.weight") || t.name.ends_with("attn_k.weight"))
        {
            // GGUF row (head, i, half) holds checkpoint row (head, half, i).
            let heads = if t.name.ends_with("attn_q.weight") {
                n_head
            } else {
                n_kv
            };
            let (rows, cols) = (shape[0], shape[1]);
            let per = rows / heads / 2;
            let mut out = vec![0f32; v.len()];
            for r in 0..rows {
                let (h, rest) = (r / (2 * per), r % (2 * per));
                let (i, half) = (rest / 2, rest % 2);
                let dst = h * 2 * per + half * per + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&v[r * cols..(r + 1) * cols]);
            }
            v = out;
        }
        let (dt, bytes): (&str, Vec<u8>) = match dtype {
            _ if shape.len() == 1 => ("F32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            "F16" => (
                "F16",
                v.iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            "BF16" => (
                "BF16",
                v.iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            _ => ("F32", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        };
        tensors.push((hf_name(&arch, &t.name), dt, shape, bytes));
    }
    let per = tensors.len().div_ceil(shards.max(1));
    let mut weight_map = serde_json::Map::new();
    for (i, part) in tensors.chunks(per).enumerate() {
        let file = if shards > 1 {
            format!("model-{:05}-of-{shards:05}.safetensors", i + 1)
        } else {
            "model.safetensors".to_string()
        };
        let mut header = serde_json::Map::new();
        let mut at = 0;
        for (name, dt, shape, bytes) in part {
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": dt, "shape": shape, "data_offsets": [at, at + bytes.len()]}),
            );
            weight_map.insert(name.clone(), file.clone().into());
            at += bytes.len();
        }
        let h = serde_json::Value::Object(header).to_string();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend(h.as_bytes());
        for (.., bytes) in part {
            out.extend(bytes);
        }
        std::fs::write(dir.join(file), out)?;
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())?;
    }
    Ok(())
}
