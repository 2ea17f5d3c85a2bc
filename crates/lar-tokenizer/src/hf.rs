//! Tokenizers from a Hugging Face `tokenizer.json`, run by the `tokenizers` library itself (the reference
//! implementation of that format), behind the same [`Tokenizer`](crate::Tokenizer) as GGUF vocabularies.
//!
//! The model directory loader puts the file's text under GGUF's `tokenizer.huggingface.json` key and the special
//! tokens from `tokenizer_config.json` under `tokenizer.hf.*`. Encoding goes through `tokenizers` (normalizer,
//! pre-tokenizer, model, added tokens); BOS/EOS are added by Lar from the flags, as for GGUF, so a chat template
//! that writes BOS itself is not doubled. Decoding stays per token, as bytes, for the streaming detokenizer: each
//! token's bytes are worked out once at load from the decoder's kind (byte-level, or `▁` + `<0xXX>` byte fallback).

use std::collections::HashMap;
use std::str::FromStr;

use lar_formats::Gguf;
use lar_formats::gguf::Value;

use crate::vocab::{Model, TokenType, Vocab, end_of_generation};
use crate::{Error, Result};

/// The two encoders: one that turns special-token texts into their ids (chat templates), one that treats them as
/// plain text (user input).
pub(crate) struct HfTokenizer {
    parse_special: tokenizers::Tokenizer,
    plain: tokenizers::Tokenizer,
}

impl HfTokenizer {
    pub(crate) fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        let t = if parse_special {
            &self.parse_special
        } else {
            &self.plain
        };
        match t.encode_fast(text, false) {
            Ok(enc) => out.extend_from_slice(enc.get_ids()),
            // Truncation and padding are off, so this is not reached for any string; say so if it is.
            Err(e) => tracing::error!("tokenizer.json encoding failed: {e}"),
        }
    }
}

fn invalid(msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("tokenizer.json: {msg}"))
}

/// Reads the vocabulary and builds the encoders of a `tokenizer.json` held in `g`'s metadata.
pub(crate) fn load(g: &Gguf, json: &str) -> Result<(Vocab, HfTokenizer)> {
    let mut tok = parse_guarded(json)?;
    tok.with_truncation(None).map_err(invalid)?;
    tok.with_padding(None);
    let byte_level = tok.get_decoder().is_some_and(is_byte_level);

    let n = tok.get_vocab_size(true);
    if n == 0 {
        return Err(Error::MissingTokenizer);
    }
    let added = tok.get_added_tokens_decoder();
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for id in 0..n as u32 {
        let text = tok.id_to_token(id).unwrap_or_default();
        let ty = match added.get(&id) {
            Some(a) if a.special => TokenType::Control,
            Some(_) => TokenType::UserDefined,
            None if !byte_level && is_byte_token(&text) => TokenType::Byte,
            None if text.is_empty() => TokenType::Unused,
            None => TokenType::Normal,
        };
        tokens.push(text);
        types.push(ty);
    }
    let mut token_to_id = HashMap::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        token_to_id.entry(t.clone()).or_insert(i as u32);
    }
    let special = |key: &str| -> Option<u32> {
        g.get(key)
            .and_then(Value::as_str)
            .and_then(|t| token_to_id.get(t).copied())
    };
    let (bos, eos, unk) = (
        special("tokenizer.hf.bos_token"),
        special("tokenizer.hf.eos_token"),
        special("tokenizer.hf.unk_token"),
    );
    // BOS: as tokenizer_config.json says, else as the post-processor does it.
    let post_adds_bos = bos.is_some_and(|b| {
        tok.encode_fast("a", true)
            .is_ok_and(|e| e.get_ids().first() == Some(&b))
    });
    let flag = |k: &str| g.get(k).and_then(Value::as_bool);
    let eos_ids = g
        .get("tokenizer.hf.eos_token_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .filter(|&i| (i as usize) < n)
        .map(|i| i as u32);
    let eog = end_of_generation(eos.into_iter().chain(eos_ids), &token_to_id, &types);
    let vocab = Vocab {
        model: Model::Hf { byte_level },
        tokens,
        types,
        scores: vec![0.0; n],
        token_to_id,
        merges: HashMap::new(),
        bos,
        eos,
        unk,
        add_bos: flag("tokenizer.ggml.add_bos_token").unwrap_or(post_adds_bos),
        add_eos: flag("tokenizer.ggml.add_eos_token").unwrap_or(false),
        add_space_prefix: false,
        eog,
    };
    let parse_special = tok.clone();
    let mut plain = tok;
    plain.set_encode_special_tokens(true);
    Ok((
        vocab,
        HfTokenizer {
            parse_special,
            plain,
        },
    ))
}

/// Parses a `tokenizer.json`. The `tokenizers` library panics on some malformed files instead of returning an
/// error (found by fuzzing: an `expect` in its decoder deserializer), and the file is untrusted input: the panic
/// is caught and reported as an invalid file, with the default panic message silenced for the duration.
fn parse_guarded(json: &str) -> Result<tokenizers::Tokenizer> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_str(json));
    std::panic::set_hook(hook);
    match r {
        Ok(t) => t.map_err(invalid),
        Err(_) => Err(invalid(
            "malformed (the tokenizers library could not read it)",
        )),
    }
}

/// Whether the decoder maps GPT-2 byte characters back to bytes (alone or inside a sequence).
fn is_byte_level(d: &tokenizers::DecoderWrapper) -> bool {
    use tokenizers::DecoderWrapper::*;
    match d {
        ByteLevel(_) => true,
        Sequence(s) => s.get_decoders().iter().any(is_byte_level),
        _ => false,
    }
}

/// `<0xXX>`: a byte-fallback token.
fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && u8::from_str_radix(&t[3..5], 16).is_ok()
}

/// An encoder-model tokenizer (BERT's WordPiece and the like) from a `tokenizer.json`, used as the file says:
/// normalizer, pre-tokenizer, model and post-processor (`[CLS] ... [SEP]`), no padding; truncation only on request.
pub struct TextEncoder {
    whole: tokenizers::Tokenizer,
    cut: tokenizers::Tokenizer,
}

impl TextEncoder {
    /// Opens `path`; [`TextEncoder::encode_truncated`] cuts to `max_tokens`.
    pub fn open(path: &std::path::Path, max_tokens: usize) -> Result<Self> {
        let json = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        let mut whole = parse_guarded(&json)?;
        whole.with_truncation(None).map_err(invalid)?;
        whole.with_padding(None);
        let mut cut = whole.clone();
        let params = tokenizers::TruncationParams {
            max_length: max_tokens.max(2),
            ..Default::default()
        };
        cut.with_truncation(Some(params)).map_err(invalid)?;
        Ok(Self { whole, cut })
    }

    /// Token ids of `text` with the model's special tokens around them.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.whole.encode(text, true).map_err(invalid)?;
        Ok(e.get_ids().to_vec())
    }

    /// Token ids of `text` cut to the maximum, the closing special token kept (the post-processor adds it after
    /// the cut, as sentence-transformers' truncation does).
    pub fn encode_truncated(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.cut.encode(text, true).map_err(invalid)?;
        Ok(e.get_ids().to_vec())
    }
}
