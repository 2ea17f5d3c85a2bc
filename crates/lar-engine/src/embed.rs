//! Sentence embeddings with a BERT-family encoder, as sentence-transformers computes them: the directory's
//! `tokenizer.json`, the encoder ([`lar_models::bert`]), the pooling of `1_Pooling/config.json` (mean over tokens,
//! the CLS token, or max) and L2 normalization when `modules.json` lists a `Normalize` module. Texts are batched by
//! length so each batch's projections run once over all its tokens on every core.

use std::path::Path;
use std::sync::Mutex;

use lar_models::ThreadPool;
use lar_models::bert::Bert;
use lar_tokenizer::TextEncoder;

use crate::{Error, Result};

/// How token vectors become one sentence vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
    Max,
}

/// Texts per forward pass at most, and tokens per pass at most.
const BATCH_TEXTS: usize = 32;
const BATCH_TOKENS: usize = 8192;

pub struct SentenceEmbedder {
    bert: Bert,
    tokenizer: TextEncoder,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Most tokens per text (sentence-transformers' `max_seq_length`).
    pub max_tokens: usize,
    /// Cut longer texts to `max_tokens` (as sentence-transformers and Ollama do) instead of refusing them.
    pub truncate: bool,
    pool: Mutex<ThreadPool>,
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::Invalid(format!("{}: not valid JSON: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Invalid(format!("{}: {e}", path.display()))),
    }
}

impl SentenceEmbedder {
    /// Opens a sentence-transformers directory (or a plain BERT one: then mean pooling, normalized), its
    /// projections requantized to Q8_0 for speed.
    pub fn open(dir: &Path, threads: usize) -> Result<Self> {
        Self::open_with(dir, threads, true)
    }

    /// [`SentenceEmbedder::open`], choosing Q8_0 projections (`q8`) or the checkpoint's own F32/F16/BF16.
    pub fn open_with(dir: &Path, threads: usize, q8: bool) -> Result<Self> {
        let bert = Bert::open_dir(dir, q8)?;
        let modules = read_json(&dir.join("modules.json"))?;
        let module_path = |kind: &str| {
            modules.as_ref().and_then(|m| m.as_array()).and_then(|a| {
                a.iter().find_map(|m| {
                    let t = m["type"].as_str()?;
                    t.ends_with(kind)
                        .then(|| m["path"].as_str().unwrap_or("").to_string())
                })
            })
        };
        let normalize = modules.is_none() || module_path("Normalize").is_some();
        let pooling_cfg = match module_path("Pooling") {
            Some(p) => read_json(&dir.join(p).join("config.json"))?,
            None => None,
        };
        let flag = |k: &str| {
            pooling_cfg
                .as_ref()
                .is_some_and(|c| c[k].as_bool() == Some(true))
        };
        let pooling = if flag("pooling_mode_cls_token") {
            Pooling::Cls
        } else if flag("pooling_mode_max_tokens") {
            Pooling::Max
        } else if pooling_cfg.is_none() || flag("pooling_mode_mean_tokens") {
            Pooling::Mean
        } else {
            return Err(Error::Invalid(
                "1_Pooling/config.json asks for a pooling Lar does not implement (mean, cls or max)".into(),
            ));
        };
        let st = read_json(&dir.join("sentence_bert_config.json"))?;
        let max_tokens = st
            .as_ref()
            .and_then(|c| c["max_seq_length"].as_u64())
            .map_or(bert.cfg.max_positions, |m| m as usize)
            .min(bert.cfg.max_positions);
        let tokenizer = TextEncoder::open(&dir.join("tokenizer.json"), max_tokens)?;
        let threads = if threads == 0 {
            crate::physical_cores()
        } else {
            threads
        };
        Ok(Self {
            bert,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            truncate: true,
            pool: Mutex::new(ThreadPool::new(threads)),
        })
    }

    fn tokens(&self, text: &str) -> Result<Vec<u32>> {
        if self.truncate {
            return Ok(self.tokenizer.encode_truncated(text)?);
        }
        let ids = self.tokenizer.encode(text)?;
        if ids.len() > self.max_tokens {
            return Err(Error::Invalid(format!(
                "a text of {} tokens is longer than the embedder's {} (split it, or allow truncation)",
                ids.len(),
                self.max_tokens
            )));
        }
        Ok(ids)
    }

    /// One vector per text.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokens(t))
            .collect::<Result<_>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        let pool = self
            .pool
            .lock()
            .map_err(|_| Error::Invalid("embedder poisoned".into()))?;
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            let mut tokens = 0;
            while j < order.len()
                && j - i < BATCH_TEXTS
                && (j == i || tokens + ids[order[j]].len() <= BATCH_TOKENS)
            {
                tokens += ids[order[j]].len();
                j += 1;
            }
            let batch: Vec<&[u32]> = order[i..j].iter().map(|&k| ids[k].as_slice()).collect();
            let hidden = self.bert.forward(&batch, &pool)?;
            for (&k, h) in order[i..j].iter().zip(hidden) {
                out[k] = self.pool_one(&h);
            }
            i = j;
        }
        Ok(out)
    }

    fn pool_one(&self, h: &[f32]) -> Vec<f32> {
        let d = self.bert.cfg.hidden;
        let n = h.len() / d;
        let mut v = match self.pooling {
            Pooling::Cls => h[..d].to_vec(),
            Pooling::Mean => {
                let mut v = vec![0f32; d];
                for row in h.chunks_exact(d) {
                    v.iter_mut().zip(row).for_each(|(a, b)| *a += b);
                }
                v.iter_mut().for_each(|a| *a /= n.max(1) as f32);
                v
            }
            Pooling::Max => {
                let mut v = vec![f32::NEG_INFINITY; d];
                for row in h.chunks_exact(d) {
                    v.iter_mut().zip(row).for_each(|(a, b)| *a = a.max(*b));
                }
                v
            }
        };
        if self.normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

impl lar_types::Embedder for SentenceEmbedder {
    fn dim(&self) -> usize {
        self.bert.cfg.hidden
    }

    fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn count_tokens(&self, text: &str) -> usize {
        self.tokenizer.encode(text).map_or(0, |t| t.len())
    }

    fn embed(
        &self,
        texts: &[&str],
    ) -> std::result::Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.embed_texts(texts)?)
    }
}
