//! What a Hugging Face model directory says, in GGUF's words: `config.json` becomes `{arch}.*` metadata,
//! checkpoint tensor names become GGUF tensor names, and the tokenizer files become `tokenizer.*` metadata
//! (`tokenizer.huggingface.json` holds the whole `tokenizer.json`, as the GGUF spec defines that key).
//!
//! Two layout differences from llama.cpp's converted files are carried as data, not copied away: Llama checkpoints
//! keep Q and K rows in rotate-half order (llama.cpp permutes them to adjacent pairs), so `lar.hf_layout` tells the
//! model to rotate NeoX-style; Gemma stores norm weights as `w` for `x * (1 + w)`, so the loader adds the one.
//! Rope scaling other than Llama 3's is refused by name rather than run wrongly.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::safetensors::ExtraTensors;

/// Metadata key set on models read from a Hugging Face directory: Q/K rows are in checkpoint (rotate-half) order.
pub const HF_LAYOUT: &str = "lar.hf_layout";

fn bad(file: &str, msg: String) -> Error {
    Error::Invalid(format!("{file}: {msg}"))
}

/// The text model's part of `config.json` (multimodal Gemma 3 nests it under `text_config`).
fn text_config(config: &Json) -> &Json {
    match config.get("text_config") {
        Some(t) if t.is_object() => t,
        _ => config,
    }
}

/// Lar's architecture name for a `config.json`, from `architectures` or `model_type`.
pub fn architecture(config: &Json) -> Result<String> {
    let class = config["architectures"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let model_type = config["model_type"].as_str().unwrap_or("");
    let arch = match (class, model_type) {
        ("LlamaForCausalLM" | "MistralForCausalLM", _) | (_, "llama" | "mistral") => "llama",
        ("Qwen2ForCausalLM", _) | (_, "qwen2") => "qwen2",
        ("Qwen3ForCausalLM", _) | (_, "qwen3") => "qwen3",
        ("Gemma3ForCausalLM" | "Gemma3ForConditionalGeneration", _)
        | (_, "gemma3" | "gemma3_text") => "gemma3",
        ("Phi3ForCausalLM", _) | (_, "phi3") => "phi3",
        ("", "") => {
            return Err(bad(
                "config.json",
                "names no architecture or model_type".into(),
            ));
        }
        _ => {
            let name = if class.is_empty() { model_type } else { class };
            return Err(Error::UnsupportedArch(name.to_string()));
        }
    };
    Ok(arch.to_string())
}

/// Gemma stores RMS norm weights without the `+1` its forward pass adds.
pub fn adds_one_to_norms(arch: &str) -> bool {
    arch == "gemma3"
}

/// The GGUF name of a checkpoint tensor, or `None` for tensors the text model does not use (vision towers,
/// rotary buffers).
pub fn tensor_name(arch: &str, name: &str) -> Option<String> {
    let name = name
        .strip_prefix("model.language_model.")
        .map(|r| format!("model.{r}"))
        .or_else(|| name.strip_prefix("language_model.").map(str::to_string))
        .unwrap_or_else(|| name.to_string());
    match name.as_str() {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.qkv_proj" => "attn_qkv",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        // Gemma normalizes after attention and again before the feed-forward; the others only before it.
        "post_attention_layernorm" if arch == "gemma3" => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.gate_up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

fn uint(c: &Json, key: &str) -> Result<Option<u64>> {
    match c.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            bad(
                "config.json",
                format!("{key} = {v} is not a non-negative integer"),
            )
        }),
    }
}

fn float(c: &Json, key: &str) -> Result<Option<f64>> {
    match c.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad("config.json", format!("{key} = {v} is not a number"))),
    }
}

/// The rope base (of the global layers), from the rope section: transformers 4 writes `rope_theta` and
/// `rope_scaling`; transformers 5 writes `rope_parameters`, keyed by layer type for models with two kinds of
/// layers (Gemma 3).
fn rope(c: &Json, arch: &str, head_dim: usize, extra: &mut ExtraTensors) -> Result<Option<f64>> {
    let params = c.get("rope_parameters").filter(|p| p.is_object());
    let full = params.and_then(|p| p.get("full_attention")).or(params);
    let theta = match float(c, "rope_theta")? {
        Some(t) => Some(t),
        None => full.map(|p| float(p, "rope_theta")).transpose()?.flatten(),
    };
    let scaling = c
        .get("rope_scaling")
        .filter(|s| s.is_object())
        .or(full.filter(|p| p.get("rope_type").is_some()));
    if let Some(s) = scaling {
        let kind = s["rope_type"]
            .as_str()
            .or(s["type"].as_str())
            .unwrap_or("default");
        match kind {
            "default" => {}
            "llama3" => extra.push((
                "rope_freqs.weight".into(),
                vec![head_dim / 2],
                llama3_factors(s, head_dim, theta.unwrap_or(10_000.0))?,
            )),
            other => {
                return Err(Error::Unsupported(format!(
                    "{arch} with rope scaling '{other}' is not supported yet"
                )));
            }
        }
    }
    Ok(theta)
}

/// Llama 3.1's frequency-dependent rope scaling, as per-frequency divisors (what llama.cpp stores as
/// `rope_freqs.weight`): low frequencies are stretched by `factor`, high ones kept, the band between blended.
fn llama3_factors(s: &Json, head_dim: usize, theta: f64) -> Result<Vec<f32>> {
    let get = |k: &str| {
        float(s, k)?.ok_or_else(|| bad("config.json", format!("llama3 rope scaling lacks {k}")))
    };
    let (factor, low, high, orig) = (
        get("factor")?,
        get("low_freq_factor")?,
        get("high_freq_factor")?,
        get("original_max_position_embeddings")?,
    );
    let (low_wavelen, high_wavelen) = (orig / low, orig / high);
    Ok((0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let div = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            div as f32
        })
        .collect())
}

/// GGUF metadata for a model directory: hyperparameters from `config.json`, tokenizer and chat template from
/// the tokenizer files. Tensors it computes (rope factors) are appended to `extra`.
pub(crate) fn metadata(
    arch: &str,
    config: &Json,
    dir: &Path,
    extra: &mut ExtraTensors,
) -> Result<HashMap<String, Value>> {
    let c = text_config(config);
    let mut m = HashMap::new();
    let put_u = |m: &mut HashMap<String, Value>, k: &str, v: u64| {
        m.insert(format!("{arch}.{k}"), Value::U64(v));
    };
    m.insert("general.architecture".into(), Value::String(arch.into()));
    m.insert(HF_LAYOUT.into(), Value::Bool(true));
    let need = |k: &str| uint(c, k)?.ok_or_else(|| bad("config.json", format!("lacks {k}")));
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    put_u(&mut m, "block_count", need("num_hidden_layers")?);
    put_u(&mut m, "embedding_length", hidden);
    put_u(&mut m, "attention.head_count", heads);
    put_u(&mut m, "feed_forward_length", need("intermediate_size")?);
    if let Some(v) = uint(c, "num_key_value_heads")? {
        put_u(&mut m, "attention.head_count_kv", v);
    }
    let head_dim = match uint(c, "head_dim")? {
        Some(v) => v,
        None => hidden / heads.max(1),
    };
    put_u(&mut m, "attention.key_length", head_dim);
    if let Some(f) = float(c, "partial_rotary_factor")? {
        put_u(&mut m, "rope.dimension_count", (head_dim as f64 * f) as u64);
    }
    if let Some(v) = uint(c, "max_position_embeddings")? {
        put_u(&mut m, "context_length", v);
    }
    if let Some(v) = uint(c, "sliding_window")? {
        put_u(&mut m, "attention.sliding_window", v);
    }
    if let Some(v) = float(c, "rms_norm_eps")? {
        m.insert(
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F64(v),
        );
    }
    if let Some(theta) = rope(c, arch, head_dim as usize, extra)? {
        m.insert(format!("{arch}.rope.freq_base"), Value::F64(theta));
    }
    tokenizer_metadata(config, dir, &mut m)?;
    Ok(m)
}

/// A special token as `tokenizer_config.json` writes it: a string, or an object with `content`.
fn token_text(v: &Json) -> Option<String> {
    v.as_str()
        .or_else(|| v["content"].as_str())
        .map(str::to_string)
}

/// `name` in `dir` as JSON; `None` when the file is not there.
pub(crate) fn read_json(dir: &Path, name: &str) -> Result<Option<Json>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| bad(name, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(cause) => Err(Error::Io { path, cause }),
    }
}

/// `tokenizer.json` (whole), special tokens, BOS/EOS flags and the chat template.
fn tokenizer_metadata(config: &Json, dir: &Path, m: &mut HashMap<String, Value>) -> Result<()> {
    let tok_path = dir.join("tokenizer.json");
    match std::fs::read_to_string(&tok_path) {
        Ok(text) => {
            m.insert("tokenizer.huggingface.json".into(), Value::String(text));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(bad("tokenizer.json", "is not valid UTF-8".into()));
        }
        Err(cause) => {
            return Err(Error::Io {
                path: tok_path,
                cause,
            });
        }
    }
    let tc = read_json(dir, "tokenizer_config.json")?.unwrap_or(Json::Null);
    for (key, name) in [
        ("bos_token", "bos"),
        ("eos_token", "eos"),
        ("unk_token", "unk"),
    ] {
        if let Some(t) = token_text(&tc[key]) {
            m.insert(format!("tokenizer.hf.{name}_token"), Value::String(t));
        }
    }
    for key in ["add_bos_token", "add_eos_token"] {
        if let Some(b) = tc[key].as_bool() {
            m.insert(format!("tokenizer.ggml.{key}"), Value::Bool(b));
        }
    }
    // End-of-generation ids: generation_config.json, then config.json (an id or a list of ids).
    let gen_cfg = read_json(dir, "generation_config.json")?.unwrap_or(Json::Null);
    let mut eog = Vec::new();
    for src in [
        &gen_cfg["eos_token_id"],
        &config["eos_token_id"],
        &text_config(config)["eos_token_id"],
    ] {
        match src {
            Json::Number(n) => eog.extend(n.as_u64()),
            Json::Array(a) => eog.extend(a.iter().filter_map(|v| v.as_u64())),
            _ => {}
        }
    }
    eog.sort_unstable();
    eog.dedup();
    if !eog.is_empty() {
        let ids = eog
            .into_iter()
            .filter_map(|v| u32::try_from(v).ok())
            .map(Value::U32)
            .collect();
        m.insert("tokenizer.hf.eos_token_ids".into(), Value::Array(ids));
    }
    // The chat template: chat_template.jinja (transformers >= 4.43), else tokenizer_config.json's, which may be
    // a list of named templates.
    let jinja = dir.join("chat_template.jinja");
    let template = match std::fs::read_to_string(&jinja) {
        Ok(t) => Some(t),
        Err(_) => match &tc["chat_template"] {
            Json::String(s) => Some(s.clone()),
            Json::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .or(list.first())
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        },
    };
    if let Some(t) = template {
        m.insert("tokenizer.chat_template".into(), Value::String(t));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_gguf() {
        let cases = [
            (
                "llama",
                "model.layers.3.self_attn.q_proj.weight",
                Some("blk.3.attn_q.weight"),
            ),
            (
                "qwen2",
                "model.layers.0.self_attn.k_proj.bias",
                Some("blk.0.attn_k.bias"),
            ),
            (
                "llama",
                "model.layers.1.post_attention_layernorm.weight",
                Some("blk.1.ffn_norm.weight"),
            ),
            (
                "gemma3",
                "model.layers.1.post_attention_layernorm.weight",
                Some("blk.1.post_attention_norm.weight"),
            ),
            (
                "gemma3",
                "model.language_model.layers.2.mlp.down_proj.weight",
                Some("blk.2.ffn_down.weight"),
            ),
            (
                "phi3",
                "model.layers.4.mlp.gate_up_proj.weight",
                Some("blk.4.ffn_up.weight"),
            ),
            ("llama", "lm_head.weight", Some("output.weight")),
            (
                "llama",
                "model.layers.0.self_attn.rotary_emb.inv_freq",
                None,
            ),
            ("llama", "vision_tower.blocks.0.weight", None),
            ("llama", "model.layers.x.mlp.up_proj.weight", None),
        ];
        for (arch, name, want) in cases {
            assert_eq!(tensor_name(arch, name).as_deref(), want, "{arch} {name}");
        }
    }

    #[test]
    fn architectures_by_class_or_type() {
        let a = |j: &str| architecture(&serde_json::from_str(j).unwrap());
        assert_eq!(
            a(r#"{"architectures":["MistralForCausalLM"]}"#).unwrap(),
            "llama"
        );
        assert_eq!(a(r#"{"model_type":"gemma3_text"}"#).unwrap(), "gemma3");
        let e = a(r#"{"architectures":["MambaForCausalLM"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MambaForCausalLM"), "{e}");
        assert!(a("{}").is_err());
    }

    #[test]
    fn llama3_rope_factors_match_the_reference() {
        let s: Json = serde_json::from_str(
            r#"{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        )
        .unwrap();
        let f = llama3_factors(&s, 128, 500_000.0).unwrap();
        assert_eq!(f.len(), 64);
        // Highest frequencies untouched, lowest divided by the full factor, monotone in between.
        assert_eq!(f[0], 1.0);
        assert_eq!(f[63], 8.0);
        assert!(f.windows(2).all(|w| w[0] <= w[1]));
        // A blended one, from transformers' `_compute_llama3_parameters` (inv_freq / scaled inv_freq) in Python.
        assert!((f[30] - 1.553_414_6).abs() < 1e-6, "{}", f[30]);
    }
}
