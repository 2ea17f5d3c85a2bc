//! A deterministic backend for testing the engine loop and its callers without a model (the server's tests use it
//! too). It keeps a real paged cache of its own: every new token is written at its position through the block table
//! it is handed, and the next token is a hash of the sequence read back *from that cache*, so a block table that
//! points at the wrong blocks, or a cache that was not recomputed after preemption, gives other tokens or an error
//! ("position N was never computed"). The same prompt therefore continues the same way alone, batched, preempted,
//! or in any order of submission: [`continuation`] computes what it must be.
//!
//! Faults on demand: a forward pass that contains a `fail_on` token returns an error, one with a `panic_on` token
//! panics, and `delay` slows every pass (for aborting in the middle of a prefill).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lar_models::SeqBatch;
use lar_tokenizer::vocab::{Model, TokenType};
use lar_tokenizer::{Tokenizer, Vocab};

use crate::backend::Backend;
use crate::engine_core::{CoreConfig, EngineCore};
use crate::handle::EngineHandle;
use crate::{Error, Result};

/// End-of-sequence id of [`tokenizer`]; ids below [`FIRST_WORD`] are special.
pub const EOS: u32 = 2;
pub const FIRST_WORD: u32 = 3;

/// The token that follows `history`: FNV-1a over the ids, mapped onto the words of a vocabulary of `n_vocab`.
pub fn next_token(history: &[u32], n_vocab: usize) -> u32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &t in history {
        h = (h ^ t as u64).wrapping_mul(0x100000001b3);
    }
    FIRST_WORD + (h % (n_vocab as u64 - FIRST_WORD as u64)) as u32
}

/// The `n` tokens greedy decoding must produce after `prompt`.
pub fn continuation(prompt: &[u32], n: usize, n_vocab: usize) -> Vec<u32> {
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        seq.push(next_token(&seq, n_vocab));
    }
    seq.split_off(prompt.len())
}

/// A vocabulary of `n_vocab` tokens: `<unk>`, `<s>`, `</s>`, then words ` w3`, ` w4`, ... (SentencePiece style).
pub fn tokenizer(n_vocab: usize) -> Result<Tokenizer> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![TokenType::Unknown, TokenType::Control, TokenType::Control];
    for i in FIRST_WORD as usize..n_vocab {
        tokens.push(format!("\u{2581}w{i}"));
        types.push(TokenType::Normal);
    }
    spm_tokenizer(tokens, types)
}

/// A SentencePiece-style tokenizer of `tokens` (`<unk>`, `<s>`, `</s>` first), no merges, nothing added.
pub(crate) fn spm_tokenizer(tokens: Vec<String>, types: Vec<TokenType>) -> Result<Tokenizer> {
    let token_to_id: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    Ok(Tokenizer::new(Vocab {
        model: Model::Spm,
        scores: vec![0.0; tokens.len()],
        tokens,
        types,
        token_to_id,
        merges: HashMap::new(),
        bos: Some(1),
        eos: Some(EOS),
        unk: Some(0),
        add_bos: false,
        add_eos: false,
        add_space_prefix: false,
        eog: vec![EOS],
    })?)
}

/// What the backend has been asked to do, for tests to inspect.
#[derive(Debug, Default)]
pub struct Log {
    /// Forward passes run (failed ones included).
    pub passes: u64,
    /// New tokens per pass, summed over its sequences.
    pub tokens: u64,
    /// Rows of logits returned.
    pub rows: u64,
}

pub struct ScriptedBackend {
    pub n_vocab: usize,
    block_size: usize,
    /// Token at each (block, slot); `None`: never written.
    cache: Vec<Vec<Option<u32>>>,
    pub fail_on: Option<u32>,
    pub panic_on: Option<u32>,
    pub delay: Duration,
    pub log: Arc<Mutex<Log>>,
    /// Passes so far, readable without the lock.
    pub passes: Arc<AtomicU64>,
    /// The token that follows a history ([`next_token`]; [`crate::say`]'s model says what it is told).
    pub next: fn(&[u32], usize) -> u32,
    /// The logit of that token (the others' are 0).
    pub peak: f32,
}

impl ScriptedBackend {
    pub fn new(n_vocab: usize, block_size: usize, n_blocks: usize) -> Self {
        Self {
            n_vocab,
            block_size,
            cache: vec![vec![None; block_size]; n_blocks],
            fail_on: None,
            panic_on: None,
            delay: Duration::ZERO,
            log: Arc::default(),
            passes: Arc::default(),
            next: next_token,
            peak: 10.0,
        }
    }

    fn slot(&mut self, table: &[u32], pos: usize) -> Result<&mut Option<u32>> {
        let block = *table
            .get(pos / self.block_size)
            .ok_or_else(|| Error::Invalid(format!("position {pos} is beyond the block table")))?;
        let bs = self.block_size;
        self.cache
            .get_mut(block as usize)
            .map(|b| &mut b[pos % bs])
            .ok_or_else(|| Error::Invalid(format!("block {block} is beyond the cache")))
    }
}

impl Backend for ScriptedBackend {
    fn forward(&mut self, batch: &[SeqBatch]) -> Result<Vec<Vec<f32>>> {
        self.passes.fetch_add(1, Ordering::Relaxed);
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            log.passes += 1;
            log.tokens += batch.iter().map(|s| s.tokens.len() as u64).sum::<u64>();
        }
        std::thread::sleep(self.delay);
        let has = |t: Option<u32>| t.is_some_and(|t| batch.iter().any(|s| s.tokens.contains(&t)));
        if has(self.panic_on) {
            panic!("scripted panic");
        }
        if has(self.fail_on) {
            return Err(Error::Invalid("scripted failure".into()));
        }
        let mut out = Vec::with_capacity(batch.len());
        for s in batch {
            for (i, &t) in s.tokens.iter().enumerate() {
                *self.slot(s.block_table, s.pos + i)? = Some(t);
            }
            let end = s.pos + s.tokens.len();
            let mut history = Vec::with_capacity(end);
            for p in 0..end {
                let t = self
                    .slot(s.block_table, p)?
                    .ok_or_else(|| Error::Invalid(format!("position {p} was never computed")))?;
                history.push(t);
            }
            // One row per new token when asked, each predicting from the history up to it.
            let rows = s.logit_range();
            let mut logits = Vec::with_capacity(rows.len() * self.n_vocab);
            for upto in rows.map(|i| s.pos + i + 1) {
                let mut row = vec![0.0; self.n_vocab];
                row[(self.next)(&history[..upto], self.n_vocab) as usize] = self.peak;
                logits.extend_from_slice(&row);
            }
            self.log.lock().unwrap_or_else(|p| p.into_inner()).rows +=
                rows_len(&logits, self.n_vocab);
            out.push(logits);
        }
        Ok(out)
    }

    fn device(&self) -> String {
        "scripted".into()
    }
}

fn rows_len(logits: &[f32], n_vocab: usize) -> u64 {
    (logits.len() / n_vocab.max(1)) as u64
}

/// An engine on `backend` with `cfg`, running on its own thread (chat template: ChatML).
pub fn start(backend: ScriptedBackend, cfg: CoreConfig) -> Result<EngineHandle> {
    start_with_template(backend, cfg, "chatml")
}

/// [`start`] with another chat template (a built-in name or Jinja source).
pub fn start_with_template(
    backend: ScriptedBackend,
    cfg: CoreConfig,
    template: &str,
) -> Result<EngineHandle> {
    let tokenizer = tokenizer(backend.n_vocab)?;
    start_with(backend, tokenizer, cfg, template)
}

/// [`start_with_template`] with another vocabulary.
pub fn start_with(
    backend: ScriptedBackend,
    tokenizer: Tokenizer,
    cfg: CoreConfig,
    template: &str,
) -> Result<EngineHandle> {
    EngineHandle::start(
        EngineCore::new(Box::new(backend), Arc::new(tokenizer), cfg),
        Some(template.into()),
    )
}
