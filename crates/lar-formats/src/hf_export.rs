//! A Hugging Face model directory written as llama.cpp's converter (`convert_hf_to_gguf.py`) writes it, so that
//! llama.cpp loads the GGUF files Lar makes from one: the metadata as llama.cpp types it (32-bit integers and
//! floats), the tokenizer as `tokenizer.ggml.*` arrays (tokens, their types, merges, special ids, the
//! pre-tokenizer's llama.cpp name), Llama's Q and K rows permuted from rotate-half order to adjacent pairs, and
//! Lar's own keys (`lar.hf_layout`, `tokenizer.hf.*`, the whole `tokenizer.json`) left out.
//!
//! Byte-level BPE tokenizers (GPT-2's scheme: SmolLM, Qwen 2/2.5, Llama 3) are converted; their pre-tokenizer is
//! named by what `tokenizer.json` declares (the split patterns llama.cpp knows by name), and any other is refused
//! by name, as llama.cpp's converter refuses one it does not know. SentencePiece-style tokenizers (Llama 2, Gemma)
//! are written as llama.cpp's SentencePiece vocabulary by [`crate::hf_spm`]; Gemma's norms already hold `1 + w`
//! as read ([`crate::safetensors::open_dir`]), which is what llama.cpp's converter writes.

use std::path::Path;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};
use crate::hf::HF_LAYOUT;

fn bad(what: &str, msg: String) -> Error {
    Error::Unsupported(format!("{what}: {msg}"))
}

fn read_json(dir: &Path, name: &str) -> Result<Json> {
    Ok(crate::hf::read_json(dir, name)?.unwrap_or(Json::Null))
}

/// Whether `g` was read from a Hugging Face directory (and so needs [`llama_cpp_metadata`] to be written out).
pub fn is_hf(g: &Gguf) -> bool {
    matches!(g.get(HF_LAYOUT), Some(Value::Bool(true)))
}

/// Whether llama.cpp's converter permutes this tensor's rows (Llama's Q and K, weights and biases).
pub fn permutes(arch: &str, name: &str) -> bool {
    arch == "llama"
        && (name.ends_with("attn_q.weight")
            || name.ends_with("attn_k.weight")
            || name.ends_with("attn_q.bias")
            || name.ends_with("attn_k.bias"))
}

/// llama.cpp's `LlamaModel.permute`: within each of `heads` heads, row `j * half + i` (the two rotate-half
/// halves) moves to `2 * i + j` (adjacent pairs). `x` holds rows of `ncols`.
pub fn permute_rows(x: &mut [f32], ncols: usize, heads: usize) -> Result<()> {
    move_rows(x, ncols, heads, true)
}

/// The inverse of [`permute_rows`]: adjacent pairs back to rotate-half order (what a Hugging Face checkpoint, and
/// so a PEFT adapter, holds).
pub fn unpermute_rows(x: &mut [f32], ncols: usize, heads: usize) -> Result<()> {
    move_rows(x, ncols, heads, false)
}

/// Row `j * half + i` of each head to `2 * i + j` (`to_pairs`), or back.
fn move_rows(x: &mut [f32], ncols: usize, heads: usize, to_pairs: bool) -> Result<()> {
    let rows = x.len() / ncols.max(1);
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(bad(
            "permute",
            format!("{rows} rows do not split into {heads} heads of pairs"),
        ));
    }
    let hd = rows / heads;
    let half = hd / 2;
    let src = x.to_vec();
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let (halves, pairs) = (h * hd + j * half + i, h * hd + 2 * i + j);
                let (from, to) = if to_pairs {
                    (halves, pairs)
                } else {
                    (pairs, halves)
                };
                x[to * ncols..(to + 1) * ncols]
                    .copy_from_slice(&src[from * ncols..(from + 1) * ncols]);
            }
        }
    }
    Ok(())
}

/// The heads a permuted tensor is split into: the query heads for Q, the KV heads for K.
pub fn permute_heads(g: &Gguf, name: &str) -> usize {
    let arch = g.get_str("general.architecture").unwrap_or("");
    let num = |k: &str| {
        g.get(&format!("{arch}.{k}"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize
    };
    let heads = num("attention.head_count");
    if name.contains("attn_k.") {
        match num("attention.head_count_kv") {
            0 => heads,
            kv => kv,
        }
    } else {
        heads
    }
}

/// The patterns llama.cpp names, as tokenizers write them in `tokenizer.json`.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's name for a byte-level BPE pre-tokenizer as `tokenizer.json` declares it.
fn pre_name(pre: &Json) -> Option<&'static str> {
    let byte_level = |p: &Json, regex: bool| {
        p["type"] == "ByteLevel" && p["use_regex"].as_bool().unwrap_or(true) == regex
    };
    if byte_level(pre, true) && !pre["add_prefix_space"].as_bool().unwrap_or(false) {
        return Some("gpt-2");
    }
    let steps = pre["pretokenizers"].as_array()?;
    if pre["type"] != "Sequence" || steps.len() != 2 {
        return None;
    }
    let (a, b) = (&steps[0], &steps[1]);
    if a["type"] == "Digits" && a["individual_digits"] == true && byte_level(b, true) {
        return Some("smollm");
    }
    if a["type"] == "Split" && byte_level(b, false) {
        return match a["pattern"]["Regex"].as_str()? {
            QWEN2_SPLIT => Some("qwen2"),
            LLAMA3_SPLIT => Some("llama-bpe"),
            _ => None,
        };
    }
    None
}

/// `<|...|>` and the like: llama.cpp's converter makes such added tokens control tokens even when not flagged
/// special (`does_token_look_special`).
pub(crate) fn looks_special(t: &str) -> bool {
    (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
        || matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
}

/// The most pieces a vocabulary written here may have (the largest real ones have about 260 thousand): a larger id
/// or `vocab_size` is refused rather than allocated.
const MAX_VOCAB: u64 = 1 << 24;

/// llama.cpp's token types.
pub(crate) const NORMAL: i32 = 1;
pub(crate) const CONTROL: i32 = 3;
pub(crate) const USER_DEFINED: i32 = 4;
pub(crate) const UNUSED: i32 = 5;
pub(crate) const BYTE: i32 = 6;

/// The number of pieces llama.cpp's file holds: `config.json`'s `vocab_size` (the embedding's rows), or more if
/// `tokenizer.json` has higher ids.
fn vocab_len(tj: &Json, config: &Json) -> Result<usize> {
    let ids = tj["model"]["vocab"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, id)| id.as_u64())
        .chain(
            tj["added_tokens"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["id"].as_u64()),
        );
    let from_tokenizer = ids.max().map_or(0, |m| m.saturating_add(1));
    let from_config = config["vocab_size"]
        .as_u64()
        .or(config["text_config"]["vocab_size"].as_u64())
        .unwrap_or(0);
    let n = from_tokenizer.max(from_config);
    if n > MAX_VOCAB {
        return Err(bad(
            "tokenizer.json",
            format!(
                "a vocabulary of {n} pieces (a token id or vocab_size that large) is not one Lar writes"
            ),
        ));
    }
    Ok(n as usize)
}

/// The `tokenizer.ggml.*` vocabulary of a byte-level BPE `tokenizer.json`, padded to `n` pieces, as llama.cpp's
/// converter writes it (`get_vocab_base`): tokens, their types, merges and the pre-tokenizer's name.
fn byte_level_vocabulary(tj: &Json, n: usize) -> Result<Vec<(String, Value)>> {
    let model = &tj["model"];
    let byte_level_decoder = tj["decoder"]["type"] == "ByteLevel";
    if model["type"] != "BPE" || !byte_level_decoder || !tj["normalizer"].is_null() {
        return Err(bad(
            "tokenizer.json",
            "only byte-level BPE (GPT-2's scheme: SmolLM, Qwen, Llama 3) and SentencePiece-style BPE (Llama 2, \
             Gemma) tokenizers are written for llama.cpp; this one is neither"
                .into(),
        ));
    }
    let pre = pre_name(&tj["pre_tokenizer"]).ok_or_else(|| {
        bad(
            "tokenizer.json",
            format!(
                "its pre-tokenizer ({}) is not one llama.cpp knows by name",
                tj["pre_tokenizer"]
            ),
        )
    })?;
    let mut vocab: Vec<Option<String>> = Vec::new();
    let mut put = |id: usize, t: &str| {
        if vocab.len() <= id {
            vocab.resize(id + 1, None);
        }
        vocab[id] = Some(t.to_string());
    };
    for (t, id) in model["vocab"].as_object().into_iter().flatten() {
        let id = id
            .as_u64()
            .ok_or_else(|| bad("tokenizer.json", format!("token '{t}' has no id")))?;
        put(id as usize, t);
    }
    let mut added = std::collections::HashMap::new();
    for a in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(t)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        put(id as usize, t);
        added.insert(id as usize, a["special"].as_bool().unwrap_or(false));
    }
    let (mut tokens, mut types) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        match vocab.get(i).cloned().flatten() {
            None => {
                tokens.push(Value::String(format!("[PAD{i}]")));
                types.push(Value::I32(UNUSED));
            }
            Some(t) => {
                let ty = match added.get(&i) {
                    Some(&special) if special || looks_special(&t) => CONTROL,
                    Some(_) => USER_DEFINED,
                    None => NORMAL,
                };
                tokens.push(Value::String(t));
                types.push(Value::I32(ty));
            }
        }
    }
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .map(Value::String)
        .collect();
    Ok(vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

/// The `tokenizer.ggml.*` metadata of a directory's tokenizer, as llama.cpp's converter writes it: the
/// vocabulary (byte-level BPE, or SentencePiece-style by [`crate::hf_spm`]) and the special ids (`SpecialVocab`).
fn tokenizer_metadata(dir: &Path, config: &Json) -> Result<Vec<(String, Value)>> {
    let tj = read_json(dir, "tokenizer.json")?;
    if tj.is_null() {
        return Err(bad(
            &dir.display().to_string(),
            "has no tokenizer.json, which llama.cpp's files need".into(),
        ));
    }
    let n = vocab_len(&tj, config)?;
    let mut kv = match crate::hf_spm::space_prefix(&tj)? {
        Some(prefix) => crate::hf_spm::vocabulary(&tj, n, prefix)?,
        None => byte_level_vocabulary(&tj, n)?,
    };
    // Special ids: tokenizer_config.json's tokens found among the added ones, else config.json's ids.
    let tc = read_json(dir, "tokenizer_config.json")?;
    // gguf-py's key for each (`unknown`, `seperator` and `padding` as it spells them).
    for (typ, key) in [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
        ("cls", "cls_token_id"),
        ("mask", "mask_token_id"),
    ] {
        let text = &tc[format!("{typ}_token")];
        let text = text.as_str().or_else(|| text["content"].as_str());
        let from_added = text.and_then(|t| {
            tj["added_tokens"]
                .as_array()?
                .iter()
                .find(|a| a["content"] == t)
                .and_then(|a| a["id"].as_u64())
        });
        let id = from_added.or_else(|| config[format!("{typ}_token_id")].as_u64());
        if let Some(id) = id.filter(|&id| (id as usize) < n) {
            kv.push((format!("tokenizer.ggml.{key}"), Value::U32(id as u32)));
        }
    }
    for key in ["add_bos_token", "add_eos_token"] {
        if let Some(b) = tc[key].as_bool() {
            kv.push((format!("tokenizer.ggml.{key}"), Value::Bool(b)));
        }
    }
    Ok(kv)
}

/// The metadata llama.cpp expects of the model `g` read from the directory `dir`: its hyperparameters as 32-bit
/// values, the tokenizer as arrays, the chat template; Lar's own keys left out. `general.architecture` first.
pub fn llama_cpp_metadata(g: &Gguf, dir: &Path) -> Result<Vec<(String, Value)>> {
    let arch = g.get_str("general.architecture")?.to_string();
    let config = read_json(dir, "config.json")?;
    let narrow = |v: &Value| match v {
        Value::U64(x) => u32::try_from(*x).map_or(Value::U64(*x), Value::U32),
        Value::I64(x) => i32::try_from(*x).map_or(Value::I64(*x), Value::I32),
        Value::F64(x) => Value::F32(*x as f32),
        v => v.clone(),
    };
    let mut kv: Vec<(String, Value)> = g
        .metadata
        .iter()
        .filter(|(k, _)| {
            !(k.starts_with("lar.")
                || k.starts_with("tokenizer.hf.")
                || k.starts_with("tokenizer.ggml.")
                || k.as_str() == "tokenizer.huggingface.json")
        })
        .map(|(k, v)| (k.clone(), narrow(v)))
        .collect();
    let has = |kv: &[(String, Value)], k: &str| kv.iter().any(|(x, _)| x == k);
    let key_length = g.get(&format!("{arch}.attention.key_length")).cloned();
    if let Some(kl) = key_length {
        for k in ["attention.value_length", "rope.dimension_count"] {
            let k = format!("{arch}.{k}");
            if !has(&kv, &k) {
                kv.push((k, narrow(&kl)));
            }
        }
    }
    let name = dir
        .file_name()
        .map_or("model".to_string(), |n| n.to_string_lossy().into_owned());
    if !has(&kv, "general.name") {
        kv.push(("general.name".into(), Value::String(name)));
    }
    let tok = tokenizer_metadata(dir, &config)?;
    if let Some(Value::Array(t)) = tok
        .iter()
        .find(|(k, _)| k == "tokenizer.ggml.tokens")
        .map(|(_, v)| v)
    {
        kv.push((format!("{arch}.vocab_size"), Value::U32(t.len() as u32)));
    }
    kv.extend(tok);
    Ok(kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutes_rotate_half_rows_into_pairs() {
        // One head of 4 rows (halves [0, 1] and [2, 3]) of 1 column: llama.cpp's order is 0, 2, 1, 3.
        let mut x = vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0];
        permute_rows(&mut x, 1, 2).unwrap();
        assert_eq!(x, [0.0, 2.0, 1.0, 3.0, 10.0, 12.0, 11.0, 13.0]);
        assert!(permute_rows(&mut [0.0; 6], 1, 2).is_err());
        assert!(permutes("llama", "blk.0.attn_k.weight"));
        assert!(!permutes("qwen2", "blk.0.attn_k.weight"));
        assert!(!permutes("llama", "blk.0.attn_v.weight"));
        // Two columns, three heads of 6 rows: unpermute undoes permute.
        let orig: Vec<f32> = (0..36).map(|v| v as f32).collect();
        let mut y = orig.clone();
        permute_rows(&mut y, 2, 3).unwrap();
        assert_ne!(y, orig);
        unpermute_rows(&mut y, 2, 3).unwrap();
        assert_eq!(y, orig);
    }

    #[test]
    fn vocabulary_sizes_past_any_real_one_are_refused() {
        let tj = serde_json::json!({"model": {"vocab": {"a": 0, "b": u64::MAX}}});
        assert!(vocab_len(&tj, &Json::Null).is_err());
        let tj = serde_json::json!({"model": {"vocab": {"a": 0, "b": 1}}});
        assert_eq!(
            vocab_len(&tj, &serde_json::json!({"vocab_size": 5})).unwrap(),
            5
        );
        assert!(vocab_len(&tj, &serde_json::json!({"vocab_size": 1u64 << 40})).is_err());
    }

    #[test]
    fn pre_tokenizers_by_llama_cpp_name() {
        let j = |s: &str| serde_json::from_str::<Json>(s).unwrap();
        assert_eq!(
            pre_name(&j(
                r#"{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#
            )),
            Some("gpt-2")
        );
        let smol = r#"{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]}"#;
        assert_eq!(pre_name(&j(smol)), Some("smollm"));
        let qwen = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated"},
            {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]});
        assert_eq!(pre_name(&qwen), Some("qwen2"));
        let other = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s+"}}, {"type": "ByteLevel", "use_regex": false}]});
        assert_eq!(pre_name(&other), None);
        assert!(looks_special("<|im_start|>") && !looks_special("hello"));
    }
}
