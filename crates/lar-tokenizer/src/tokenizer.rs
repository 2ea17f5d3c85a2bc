//! Text to token ids and back, as llama.cpp does it for GGUF vocabularies.
//!
//! Encoding: special and user-defined tokens are cut out of the text first (longest first; control tokens only when
//! `parse_special`), then each remaining fragment goes through the model's algorithm:
//! - BPE: the pre-tokenizer's regexes split the text into words (each regex applied to the pieces the previous one
//!   left), each word's bytes are mapped to GPT-2's printable characters, and merges apply by rank;
//! - SPM: spaces become `▁`, characters merge by token score, and characters with no token fall back to `<0xXX>`.
//!
//! Decoding is per token ([`Tokenizer::token_bytes`]), as bytes, so a character split over tokens is rebuilt by
//! the incremental detokenizer in `detok.rs`.

use std::collections::HashMap;

use fancy_regex::Regex;

use crate::hf::HfTokenizer;
use crate::merge::merge;
use crate::vocab::{Model, TokenType, Vocab};
use crate::{Error, Result};

pub struct Tokenizer {
    pub vocab: Vocab,
    regexes: Vec<Regex>,
    /// Special/user-defined token ids, longest text first.
    specials: Vec<u32>,
    byte_enc: [char; 256],
    byte_dec: HashMap<char, u8>,
    /// SPM byte-fallback tokens `<0xXX>`.
    byte_tokens: [Option<u32>; 256],
    /// The `tokenizers` library's encoders, for a vocabulary read from `tokenizer.json`.
    hf: Option<Box<HfTokenizer>>,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The regexes of a BPE pre-tokenizer, by its GGUF name (`tokenizer.ggml.pre`), as llama.cpp lists them.
fn pre_regexes(pre: &str) -> Result<Vec<&'static str>> {
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" | "mpt" | "olmo" => vec![GPT2],
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            vec![r"\p{N}", GPT2]
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "dbrx" | "smaug-bpe" => {
            vec![LLAMA3]
        }
        "qwen2" | "deepseek-r1-qwen" | "qwen35" | "stablelm2" | "hunyuan" => vec![QWEN2],
        other => return Err(Error::Unsupported(format!("BPE pre-tokenizer '{other}'"))),
    })
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        map[b as usize] = if printable {
            char::from_u32(b).unwrap_or('?')
        } else {
            n += 1;
            char::from_u32(255 + n).unwrap_or('?')
        };
    }
    map
}

impl Tokenizer {
    pub fn new(vocab: Vocab) -> Result<Self> {
        let regexes = match &vocab.model {
            Model::Bpe { pre } => pre_regexes(pre)?
                .into_iter()
                .map(|r| {
                    Regex::new(r).map_err(|e| Error::Invalid(format!("pre-tokenizer regex: {e}")))
                })
                .collect::<Result<_>>()?,
            Model::Spm | Model::Hf { .. } => Vec::new(),
        };
        // Special texts are cut out by Lar for GGUF vocabularies; `tokenizers` does it for tokenizer.json.
        let native = !matches!(vocab.model, Model::Hf { .. });
        let mut specials: Vec<u32> = (0..vocab.len() as u32)
            .filter(|_| native)
            .filter(|&i| {
                matches!(
                    vocab.types[i as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
            })
            .filter(|&i| !vocab.tokens[i as usize].is_empty())
            .collect();
        specials.sort_by(|&a, &b| {
            vocab.tokens[b as usize]
                .len()
                .cmp(&vocab.tokens[a as usize].len())
                .then(a.cmp(&b))
        });
        let byte_enc = bytes_to_unicode();
        let byte_dec = byte_enc
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<0x{b:02X}>"));
        }
        Ok(Self {
            vocab,
            regexes,
            specials,
            byte_enc,
            byte_dec,
            byte_tokens,
            hf: None,
        })
    }

    /// A tokenizer whose encoding is done by `tokenizer.json`'s own pipeline.
    pub(crate) fn with_hf(vocab: Vocab, hf: HfTokenizer) -> Result<Self> {
        let mut t = Self::new(vocab)?;
        t.hf = Some(Box::new(hf));
        Ok(t)
    }

    /// Token ids of `text`. `add_special`: add BOS/EOS as the model asks; `parse_special`: turn control-token
    /// texts such as `<|im_start|>` into their ids (for chat templates; never for untrusted user text).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let v = &self.vocab;
        if add_special
            && v.add_bos
            && let Some(b) = v.bos
        {
            out.push(b);
        }
        if let Some(hf) = &self.hf {
            hf.encode(text, parse_special, &mut out);
        } else {
            self.encode_native(text, parse_special, &mut out);
        }
        if add_special
            && v.add_eos
            && let Some(e) = v.eos
        {
            out.push(e);
        }
        out
    }

    /// GGUF vocabularies: special tokens cut out, then BPE or SPM on the rest.
    fn encode_native(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) {
        let v = &self.vocab;
        let mut prev_special = true;
        for frag in self.partition(text, parse_special) {
            match frag {
                Frag::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Frag::Text(t) => {
                    match v.model {
                        Model::Bpe { .. } => self.encode_bpe(t, out),
                        // Not reached: `tokenizer.json` vocabularies encode through `self.hf`.
                        Model::Hf { .. } => {}
                        Model::Spm => {
                            let mut s = String::with_capacity(t.len() + 3);
                            if v.add_space_prefix && prev_special {
                                s.push(' ');
                            }
                            s.push_str(t);
                            self.encode_spm(&s.replace(' ', "\u{2581}"), out);
                        }
                    }
                    prev_special = false;
                }
            }
        }
    }

    fn partition<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Frag<'a>> {
        let mut frags = vec![Frag::Text(text)];
        if text.is_empty() {
            return Vec::new();
        }
        for &id in &self.specials {
            let ty = self.vocab.types[id as usize];
            if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
                continue;
            }
            let pat = self.vocab.tokens[id as usize].as_str();
            if !frags
                .iter()
                .any(|f| matches!(f, Frag::Text(t) if t.contains(pat)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Frag::Text(t) if t.contains(pat) => {
                        let mut rest = t;
                        while let Some(i) = rest.find(pat) {
                            if i > 0 {
                                next.push(Frag::Text(&rest[..i]));
                            }
                            next.push(Frag::Token(id));
                            rest = &rest[i + pat.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Frag::Text(rest));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }

    fn encode_bpe(&self, text: &str, out: &mut Vec<u32>) {
        let mut pieces: Vec<&str> = vec![text];
        for re in &self.regexes {
            let mut next = Vec::new();
            for p in pieces {
                let mut last = 0;
                for m in re.find_iter(p).flatten() {
                    if m.start() > last {
                        next.push(&p[last..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    last = m.end();
                }
                if last < p.len() {
                    next.push(&p[last..]);
                }
            }
            pieces = next;
        }
        let v = &self.vocab;
        for word in pieces {
            let enc: String = word.bytes().map(|b| self.byte_enc[b as usize]).collect();
            let parts = merge(&enc, |a, b| {
                v.merges
                    .get(&(a.to_string(), b.to_string()))
                    .map(|&r| -(r as f64))
            });
            for r in parts {
                let s = &enc[r];
                match v.id(s) {
                    Some(id) => out.push(id),
                    None => {
                        // No token for this piece: one token per encoded byte, where they exist.
                        for c in s.chars() {
                            if let Some(id) = v.id(c.encode_utf8(&mut [0; 4])) {
                                out.push(id);
                            } else if let Some(u) = v.unk {
                                out.push(u);
                            }
                        }
                    }
                }
            }
        }
    }

    fn encode_spm(&self, text: &str, out: &mut Vec<u32>) {
        let v = &self.vocab;
        let parts = merge(text, |a, b| {
            let mut s = String::with_capacity(a.len() + b.len());
            s.push_str(a);
            s.push_str(b);
            v.id(&s).map(|id| v.scores[id as usize] as f64)
        });
        for r in parts {
            let s = &text[r];
            match v.id(s) {
                Some(id) => out.push(id),
                None => {
                    for b in s.bytes() {
                        if let Some(id) = self.byte_tokens[b as usize].or(v.unk) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }

    /// The bytes token `id` stands for. Control tokens give their text only when `special` is set.
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let Some(text) = v.tokens.get(id as usize) else {
            return Vec::new();
        };
        match v.types[id as usize] {
            TokenType::Control | TokenType::Unknown | TokenType::Unused => {
                if special {
                    text.as_bytes().to_vec()
                } else {
                    Vec::new()
                }
            }
            // Byte tokens are named `<0xXX>`.
            TokenType::Byte => text
                .strip_prefix("<0x")
                .and_then(|h| h.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map_or_else(Vec::new, |b| vec![b]),
            TokenType::UserDefined => match v.model {
                Model::Spm | Model::Hf { byte_level: false } => {
                    text.replace('\u{2581}', " ").into_bytes()
                }
                Model::Bpe { .. } | Model::Hf { byte_level: true } => text.as_bytes().to_vec(),
            },
            TokenType::Normal => match v.model {
                Model::Spm | Model::Hf { byte_level: false } => {
                    text.replace('\u{2581}', " ").into_bytes()
                }
                Model::Bpe { .. } | Model::Hf { byte_level: true } => text
                    .chars()
                    .flat_map(|c| match self.byte_dec.get(&c) {
                        Some(&b) => vec![b],
                        None => c.to_string().into_bytes(),
                    })
                    .collect(),
            },
        }
    }

    /// The text of a sequence of tokens (invalid UTF-8 replaced), without control tokens unless `special`.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&id| self.token_bytes(id, special))
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.contains(&id)
    }
}

enum Frag<'a> {
    Text(&'a str),
    Token(u32),
}
