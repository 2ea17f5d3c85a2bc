//! The vocabulary of a model as GGUF stores it: token texts, types, scores, merges and special ids.

use std::collections::HashMap;

use lar_formats::Gguf;
use lar_formats::gguf::Value;

use crate::{Error, Result};

/// GGUF token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> Self {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

/// Which algorithm splits text into tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Model {
    /// Byte-level BPE (GPT-2 style: Llama 3, Qwen, SmolLM), with the pre-tokenizer's regexes.
    Bpe { pre: String },
    /// SentencePiece-style: merge by score, `▁` for spaces, `<0xXX>` byte fallback (Llama 2, Gemma).
    Spm,
    /// A `tokenizer.json` run by the `tokenizers` library; `byte_level`: its tokens are GPT-2 byte characters
    /// (otherwise `▁` + `<0xXX>` byte fallback).
    Hf { byte_level: bool },
}

#[derive(Clone, Debug)]
pub struct Vocab {
    pub model: Model,
    pub tokens: Vec<String>,
    pub types: Vec<TokenType>,
    pub scores: Vec<f32>,
    pub token_to_id: HashMap<String, u32>,
    /// BPE merge ranks: `(left, right) -> rank`.
    pub merges: HashMap<(String, String), u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// Tokens that end generation (EOS, end-of-turn, ...).
    pub eog: Vec<u32>,
}

/// Texts of end-of-turn tokens that mark the end of a generation in common chat formats.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "</s>",
    "<eos>",
];

/// End-of-generation ids: `first` (the model's EOS and end-of-turn ids), then every control or user-defined token
/// named like an end of turn in the common chat formats; each once.
pub(crate) fn end_of_generation(
    first: impl IntoIterator<Item = u32>,
    token_to_id: &HashMap<String, u32>,
    types: &[TokenType],
) -> Vec<u32> {
    let named = EOG_TEXTS
        .iter()
        .filter_map(|t| token_to_id.get(*t).copied())
        .filter(|&i| {
            matches!(
                types[i as usize],
                TokenType::Control | TokenType::UserDefined
            )
        });
    let mut eog = Vec::new();
    for i in first.into_iter().chain(named) {
        if !eog.contains(&i) {
            eog.push(i);
        }
    }
    eog
}

impl Vocab {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model_name = g
            .get_str("tokenizer.ggml.model")
            .map_err(|_| Error::MissingTokenizer)?;
        let model = match model_name {
            "gpt2" => Model::Bpe {
                pre: g
                    .get_str("tokenizer.ggml.pre")
                    .unwrap_or("default")
                    .to_string(),
            },
            "llama" => Model::Spm,
            other => {
                return Err(Error::Unsupported(format!(
                    "tokenizer model '{other}' (Lar reads gpt2 and llama)"
                )));
            }
        };
        let tokens: Vec<String> =
            string_array(g, "tokenizer.ggml.tokens")?.ok_or(Error::MissingTokenizer)?;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::MissingTokenizer);
        }
        let types = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) if a.len() == n => a
                .iter()
                .map(|v| TokenType::from_i64(v.as_i64().unwrap_or(1)))
                .collect(),
            Some(a) => {
                return Err(Error::Invalid(format!(
                    "{} token types for {n} tokens",
                    a.len()
                )));
            }
            None => vec![TokenType::Normal; n],
        };
        let scores = match g.get("tokenizer.ggml.scores").and_then(Value::as_array) {
            Some(a) if a.len() == n => a.iter().map(|v| v.as_f64().unwrap_or(0.0) as f32).collect(),
            Some(a) => {
                return Err(Error::Invalid(format!(
                    "{} token scores for {n} tokens",
                    a.len()
                )));
            }
            None => vec![0.0; n],
        };
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }
        let mut merges = HashMap::new();
        if let Some(list) = string_array(g, "tokenizer.ggml.merges")? {
            for (rank, m) in list.into_iter().enumerate() {
                let (a, b) = m
                    .split_once(' ')
                    .ok_or_else(|| Error::Invalid(format!("merge #{rank} '{m}' has no space")))?;
                merges
                    .entry((a.to_string(), b.to_string()))
                    .or_insert(rank as u32);
            }
        }
        let id = |k: &str| -> Option<u32> {
            g.get(k)
                .and_then(Value::as_u64)
                .filter(|&v| (v as usize) < n)
                .map(|v| v as u32)
        };
        let flag = |k: &str, default: bool| g.get(k).and_then(Value::as_bool).unwrap_or(default);
        let is_spm = model == Model::Spm;
        let (bos, eos, unk) = (
            id("tokenizer.ggml.bos_token_id"),
            id("tokenizer.ggml.eos_token_id"),
            id("tokenizer.ggml.unknown_token_id"),
        );
        let eot = id("tokenizer.ggml.eot_token_id");
        let eog = end_of_generation(eos.into_iter().chain(eot), &token_to_id, &types);
        Ok(Self {
            model,
            tokens,
            types,
            scores,
            token_to_id,
            merges,
            bos,
            eos,
            unk,
            add_bos: flag("tokenizer.ggml.add_bos_token", is_spm),
            add_eos: flag("tokenizer.ggml.add_eos_token", false),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", is_spm),
            eog,
        })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
}

fn string_array(g: &Gguf, key: &str) -> Result<Option<Vec<String>>> {
    let Some(v) = g.get(key) else { return Ok(None) };
    let a = v
        .as_array()
        .ok_or_else(|| Error::Invalid(format!("{key} is not an array")))?;
    a.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Invalid(format!("{key} holds a non-string")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}
