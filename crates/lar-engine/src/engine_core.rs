//! The engine loop, owned by one thread: [`EngineCore::step`] is `schedule()` -> `forward()` -> `update()`, as in
//! vLLM. Each step runs one forward pass over every scheduled sequence (prefill chunks and decodes together),
//! samples where a sequence reached its end, sends each token to its request's stream, and retires finished
//! requests, freeing their blocks.
//!
//! Contract of a step:
//! 1. Requests whose consumer dropped its stream are cancelled first (also in the middle of a long prefill).
//! 2. A failed forward pass fails only the requests it touched: when a batch of several sequences fails, each is
//!    run again alone, and only those that fail alone end with [`FinishReason::Error`]; their blocks are freed and
//!    the loop goes on. A panic in a backend counts as a failure.
//! 3. Tokens go out with `try_send`: a consumer that fell its buffer behind is cancelled, never waited for.
//!
//! The core runs no user code and sees no HTTP or JSON. [`crate::EngineHandle`] runs it on its own thread; tests
//! drive it directly for deterministic step counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lar_models::{LoraSlot, SeqBatch};
use lar_tokenizer::Tokenizer;
use lar_tokenizer::detok::{StopMatcher, Utf8Stream};
use lar_types::{FinishReason, GenerationStats, SamplingParams, TokenEvent, TokenLogprob};

use crate::backend::Backend;
use crate::events::{EventStream, Finished, Outbox, Undelivered, channel};
use crate::sampler::{LogitsProcessor, Sampler};
use crate::scheduler::{BlockManager, Scheduled, Scheduler};
use crate::scoring::{PromptLogprob, RowScorer, score};
use crate::{Error, Result};

/// A generation request: prompt tokens, sampling parameters, and any logits processors beyond those the
/// parameters imply (penalties, logit bias).
pub struct Request {
    pub prompt: Vec<u32>,
    pub params: SamplingParams,
    pub processors: Vec<Box<dyn LogitsProcessor>>,
    /// Score the prompt's own tokens, with this many alternatives each (the prompt is then computed whole, never
    /// taken from the prefix cache); they come back in [`Finished::prompt_logprobs`].
    pub prompt_logprobs: Option<usize>,
    /// With `prompt_logprobs`: only the prompt tokens at this position or later are scored (a perplexity scores the
    /// second half of each chunk, and the logits of the first half are never computed).
    pub score_from: usize,
    /// With `prompt_logprobs`: also hands every scored position's whole row of logits to this (a KL divergence
    /// needs the distribution, not one token's log-probability). Runs on the engine thread: it must be quick.
    pub rows: Option<Box<dyn RowScorer>>,
    /// The id of an earlier request with the same prompt (the first of `n` choices): this one starts once that one
    /// has computed the prompt, and shares its blocks instead of computing them again.
    pub follows: Option<u64>,
    /// The model's LoRA adapter this request runs with, by id ([`crate::ModelInfo::loras`]), and its strength.
    pub lora: Option<LoraSlot>,
}

impl Request {
    pub fn new(prompt: Vec<u32>, params: SamplingParams) -> Self {
        Self {
            prompt,
            params,
            processors: Vec::new(),
            prompt_logprobs: None,
            score_from: 0,
            rows: None,
            follows: None,
            lora: None,
        }
    }
}

/// The limits every request is checked against when it is submitted.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Context length per sequence.
    pub ctx: usize,
    /// Vocabulary size of the model (token ids must be below it).
    pub n_vocab: usize,
    /// LoRA adapters loaded with the model (adapter ids must be below it).
    pub n_loras: usize,
}

impl Limits {
    /// Refuses, with a typed error, what the engine could not run: an empty prompt, one that does not fit the
    /// context, token ids outside the vocabulary, sampling parameters out of range.
    pub fn check(&self, req: &Request) -> Result<()> {
        if req.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if req.prompt.len() >= self.ctx {
            return Err(Error::PromptTooLong {
                tokens: req.prompt.len(),
                ctx: self.ctx,
            });
        }
        let outside = |t: u32| t as usize >= self.n_vocab;
        if let Some(&bad) = req.prompt.iter().find(|&&t| outside(t)) {
            return Err(Error::TokenOutOfVocab {
                token: bad,
                n_vocab: self.n_vocab,
            });
        }
        if let Some(&(bad, _)) = req.params.logit_bias.iter().find(|(t, _)| outside(*t)) {
            return Err(Error::TokenOutOfVocab {
                token: bad,
                n_vocab: self.n_vocab,
            });
        }
        req.params.validate()?;
        if let Some(slot) = req.lora {
            if slot.id as usize >= self.n_loras {
                return Err(Error::Invalid(format!(
                    "LoRA adapter {} is not loaded (this model has {})",
                    slot.id, self.n_loras
                )));
            }
            if !(slot.scale.is_finite() && (-100.0..=100.0).contains(&slot.scale)) {
                return Err(Error::Param(lar_types::ParamError {
                    param: "lora scale",
                    expected: "a number from -100 to 100".into(),
                    got: slot.scale.to_string(),
                }));
            }
        }
        if let Some(k) = req.prompt_logprobs
            && k > lar_types::MAX_TOP_LOGPROBS
        {
            return Err(Error::Param(lar_types::ParamError {
                param: "prompt_logprobs",
                expected: format!("at most {}", lar_types::MAX_TOP_LOGPROBS),
                got: k.to_string(),
            }));
        }
        Ok(())
    }
}

/// How the core schedules.
#[derive(Clone, Copy, Debug)]
pub struct CoreConfig {
    pub limits: Limits,
    /// Tokens per KV block, and blocks in the cache.
    pub block_size: usize,
    pub n_blocks: usize,
    /// Most tokens in one forward pass; most sequences running at once.
    pub max_batch_tokens: usize,
    pub max_seqs: usize,
    /// Free blocks kept per running sequence when a new one is admitted, for the running ones to grow into.
    pub reserve_per_seq: usize,
    /// Tokens a consumer may fall behind before it is cancelled.
    pub event_buffer: usize,
    /// Reuse the cached K/V of prompt prefixes seen before.
    pub prefix_caching: bool,
}

/// Counters of the engine, as [`crate::EngineHandle::stats`] reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineStats {
    pub running: usize,
    pub waiting: usize,
    pub kv_blocks_total: usize,
    /// Free blocks, cached ones included (they are reused when nothing else is free).
    pub kv_blocks_free: usize,
    /// Free blocks that still hold a prompt prefix.
    pub kv_blocks_cached: usize,
    pub block_size: usize,
    /// Prompt tokens looked up in the prefix cache at admission, and how many were found.
    pub prefix_query_tokens: u64,
    pub prefix_hit_tokens: u64,
    /// Forward passes run.
    pub steps: u64,
    pub preemptions: u64,
    pub requests_finished: u64,
    pub requests_failed: u64,
    pub requests_cancelled: u64,
    /// Prompt tokens computed (recomputation after preemption included) and tokens generated.
    pub prompt_tokens: u64,
    pub generated_tokens: u64,
}

struct Active {
    sampler: Sampler,
    utf8: Utf8Stream,
    stop: StopMatcher,
    out: Outbox,
    prompt_len: usize,
    arrived: Instant,
    started: Option<Instant>,
    first_token: Option<Instant>,
    /// The prompt's scores as they are computed (requests that asked).
    scored: Option<Scoring>,
    lora: Option<LoraSlot>,
    /// The end-of-turn token that ended the request, with its logprobs (see [`Finished::end_token`]).
    end_token: Option<TokenEvent>,
}

/// A request's prompt scores: how many alternatives each, from which position, and those computed so far.
struct Scoring {
    k: usize,
    from: usize,
    scores: Vec<Option<PromptLogprob>>,
    rows: Option<Box<dyn RowScorer>>,
}

pub struct EngineCore {
    backend: Box<dyn Backend>,
    tokenizer: Arc<Tokenizer>,
    cfg: CoreConfig,
    sched: Scheduler,
    reqs: HashMap<u64, Active>,
    next_id: Arc<AtomicU64>,
    stats: EngineStats,
    /// Names of the model's LoRA adapters, by id.
    loras: Vec<String>,
}

impl EngineCore {
    pub fn new(backend: Box<dyn Backend>, tokenizer: Arc<Tokenizer>, cfg: CoreConfig) -> Self {
        let sched = Scheduler::new(
            BlockManager::new(cfg.n_blocks, cfg.block_size.max(1)),
            cfg.max_batch_tokens,
            cfg.max_seqs,
        )
        .with_reserve(cfg.reserve_per_seq)
        .with_prefix_caching(cfg.prefix_caching);
        Self {
            backend,
            tokenizer,
            cfg,
            sched,
            reqs: HashMap::new(),
            next_id: Arc::new(AtomicU64::new(1)),
            stats: EngineStats::default(),
            loras: Vec::new(),
        }
    }

    /// Names the backend's LoRA adapters, by id (the backend's model holds them).
    pub fn with_loras(mut self, names: Vec<String>) -> Self {
        self.cfg.limits.n_loras = names.len();
        self.loras = names;
        self
    }

    pub fn loras(&self) -> &[String] {
        &self.loras
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn device(&self) -> String {
        self.backend.device()
    }

    /// The id counter, shared with a handle so that ids given out by either never collide.
    pub(crate) fn ids(&self) -> Arc<AtomicU64> {
        self.next_id.clone()
    }

    /// Checks and queues a request; its events come on the returned stream.
    pub fn submit(&mut self, req: Request) -> Result<EventStream> {
        self.cfg.limits.check(&req)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (out, stream) = channel(id, self.cfg.event_buffer);
        self.add(id, req, out, Instant::now());
        Ok(stream)
    }

    /// Queues a request that was already checked against [`Limits`].
    pub(crate) fn add(&mut self, id: u64, req: Request, out: Outbox, arrived: Instant) {
        let stop = StopMatcher::new(&req.params.stop);
        let prompt_len = req.prompt.len();
        let rows = req.rows;
        let scored = req.prompt_logprobs.map(|k| Scoring {
            k,
            from: req.score_from,
            scores: vec![None; prompt_len],
            rows,
        });
        self.reqs.insert(
            id,
            Active {
                sampler: Sampler::with_processors(req.params, req.processors),
                utf8: Utf8Stream::default(),
                stop,
                out,
                prompt_len,
                arrived,
                started: None,
                first_token: None,
                scored,
                lora: req.lora,
                end_token: None,
            },
        );
        self.sched
            .add_with(id, req.prompt, req.prompt_logprobs.is_none());
        if let Some(slot) = req.lora {
            self.sched.set_root(id, lora_root(slot));
        }
        if let Some(leader) = req.follows {
            self.sched.follow(id, leader);
        }
    }

    pub fn has_work(&self) -> bool {
        self.sched.has_work()
    }

    /// Cancels a request (unknown or finished ids are ignored); its stream ends with `Cancelled`.
    pub fn abort(&mut self, id: u64) {
        self.finish(id, FinishReason::Cancelled, String::new(), None);
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            running: self.sched.n_running(),
            waiting: self.sched.n_waiting(),
            kv_blocks_total: self.sched.blocks.total,
            kv_blocks_free: self.sched.blocks.n_free(),
            kv_blocks_cached: self.sched.blocks.n_cached(),
            block_size: self.sched.blocks.block_size,
            prefix_query_tokens: self.sched.blocks.stats.query_tokens,
            prefix_hit_tokens: self.sched.blocks.stats.hit_tokens,
            ..self.stats.clone()
        }
    }

    /// One iteration: drop vanished consumers, schedule, forward, update. Returns how many sequences ran.
    pub fn step(&mut self) -> usize {
        let gone: Vec<u64> = self
            .reqs
            .iter()
            .filter(|(_, r)| r.out.is_gone())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.abort(id);
        }
        let items = self.sched.schedule();
        self.stats.preemptions += self.sched.preempted.len() as u64;
        self.sched.preempted.clear();
        if items.is_empty() {
            return 0;
        }
        let now = Instant::now();
        for it in &items {
            if let Some(r) = self.reqs.get_mut(&it.id) {
                r.started.get_or_insert(now);
            }
        }
        let results = self.forward(&items);
        self.stats.steps += 1;
        let mut finished = Vec::new();
        for (it, result) in items.iter().zip(results) {
            match result {
                Ok(mut row) => {
                    row = self.score_prompt(it, row);
                    self.sched.advance(it);
                    let prompt_len = self.reqs.get(&it.id).map_or(0, |r| r.prompt_len);
                    self.stats.prompt_tokens +=
                        (it.start + it.len).min(prompt_len).saturating_sub(it.start) as u64;
                    if it.samples
                        && let Some(end) = self.update(it, &mut row)
                    {
                        finished.push((it.id, end));
                    }
                }
                Err(e) => finished.push((it.id, (FinishReason::Error, String::new(), Some(e)))),
            }
        }
        for (id, (reason, text, error)) in finished {
            self.finish(id, reason, text, error);
        }
        items.len()
    }

    /// Logits per scheduled item, or the error of its forward pass. A failed batch of several sequences is run
    /// again one sequence at a time, so that one bad sequence fails alone.
    fn forward(&mut self, items: &[Scheduled]) -> Vec<std::result::Result<Vec<f32>, String>> {
        match self.run(items) {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(e) if items.len() == 1 => vec![Err(e)],
            Err(_) => items
                .iter()
                .map(|it| {
                    self.run(std::slice::from_ref(it))
                        .map(|mut rows| rows.pop().unwrap_or_default())
                })
                .collect(),
        }
    }

    fn run(&mut self, items: &[Scheduled]) -> std::result::Result<Vec<Vec<f32>>, String> {
        let mut batch = Vec::with_capacity(items.len());
        for it in items {
            let Some(s) = self.sched.get(it.id) else {
                return Err(format!("sequence {} is not scheduled", it.id));
            };
            // A chunk of a scored prompt asks for the rows of the tokens before those it scores.
            let logits_from = self
                .reqs
                .get(&it.id)
                .and_then(|r| r.scored.as_ref().map(|s| (s, r.prompt_len)))
                .filter(|(_, len)| it.start < *len)
                .map(|(s, _)| s.from.saturating_sub(1));
            batch.push(SeqBatch {
                tokens: &s.tokens[it.start..it.start + it.len],
                pos: it.start,
                block_table: &s.blocks,
                logits_from,
                lora: self.reqs.get(&it.id).and_then(|r| r.lora),
            });
        }
        let backend = &mut self.backend;
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.forward(&batch)));
        match result {
            Ok(Ok(rows)) if rows.len() == items.len() => Ok(rows),
            Ok(Ok(rows)) => Err(format!(
                "the backend returned {} rows of logits for {} sequences",
                rows.len(),
                items.len()
            )),
            Ok(Err(e)) => Err(format!("the forward pass failed: {e}")),
            Err(panic) => Err(format!(
                "the forward pass panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)")
            )),
        }
    }

    /// For a request that scores its prompt, records the scores of the chunk's rows (row `j` scores the token after
    /// it) and returns the last row, which samples; any other row is returned as it is.
    fn score_prompt(&mut self, it: &Scheduled, row: Vec<f32>) -> Vec<f32> {
        let n_vocab = self.cfg.limits.n_vocab;
        let (Some(seq), Some(r)) = (self.sched.get(it.id), self.reqs.get_mut(&it.id)) else {
            return row;
        };
        // The same test `run` used to ask for rows (a one-token chunk gives one row, and it scores too).
        let Some(s) = r.scored.as_mut().filter(|_| it.start < r.prompt_len) else {
            return row;
        };
        let first = lar_models::SeqBatch {
            tokens: &seq.tokens[it.start..it.start + it.len],
            pos: it.start,
            block_table: &[],
            logits_from: Some(s.from.saturating_sub(1)),
            lora: None,
        }
        .logit_range()
        .start;
        if row.len() != (it.len - first) * n_vocab {
            return row;
        }
        for (j, logits) in row.chunks_exact(n_vocab).enumerate() {
            let next = it.start + first + j + 1;
            if next < r.prompt_len && next >= s.from && s.scores[next].is_none() {
                s.scores[next] = Some(score(logits, seq.tokens[next], s.k));
                if let Some(rs) = s.rows.as_mut() {
                    rs.row(next, logits);
                }
            }
        }
        let last = row.len() / n_vocab - 1;
        row[last * n_vocab..(last + 1) * n_vocab].to_vec()
    }

    /// Samples the next token of a sequence and sends its text; `Some` when the request is done.
    fn update(
        &mut self,
        it: &Scheduled,
        logits: &mut [f32],
    ) -> Option<(FinishReason, String, Option<String>)> {
        let seq = self.sched.get(it.id)?;
        let n_tokens = seq.tokens.len();
        let n_generated = seq.n_generated;
        let r = self.reqs.get_mut(&it.id)?;
        let sample = lar_models::profile::span(lar_models::profile::Op::Sample);
        let s = r.sampler.sample(logits, &seq.tokens);
        drop(sample);
        r.first_token.get_or_insert_with(Instant::now);
        if let Some(e) = r.sampler.failure() {
            return Some((FinishReason::Error, String::new(), Some(e)));
        }
        let params = &r.sampler.params;
        let top_logprobs: Vec<TokenLogprob> = s
            .top
            .iter()
            .map(|&(t, lp)| TokenLogprob {
                token: t,
                text: self.tokenizer.decode(&[t], false),
                logprob: lp,
            })
            .collect();
        if self.tokenizer.is_eog(s.token) && !params.ignore_eos {
            r.end_token = Some(TokenEvent {
                token: s.token,
                text: String::new(),
                logprob: s.logprob,
                top_logprobs,
            });
            let tail = r.utf8.finish() + &r.stop.finish();
            return Some((FinishReason::Stop, tail, None));
        }
        let max_tokens = params.max_tokens;
        let piece = r.utf8.push(&self.tokenizer.token_bytes(s.token, false));
        let (text, stopped) = r.stop.push(&piece);
        let sent = r.out.send(TokenEvent {
            token: s.token,
            text,
            logprob: s.logprob,
            top_logprobs,
        });
        self.sched.append_token(it.id, s.token);
        self.stats.generated_tokens += 1;
        match sent {
            Ok(()) => {}
            Err(Undelivered::Gone) => return Some((FinishReason::Cancelled, String::new(), None)),
            Err(Undelivered::Full) => {
                return Some((
                    FinishReason::Cancelled,
                    String::new(),
                    Some(format!(
                        "cancelled: the client fell {} tokens behind",
                        self.cfg.event_buffer.max(1)
                    )),
                ));
            }
        }
        if stopped {
            return Some((FinishReason::Stop, String::new(), None));
        }
        if n_generated + 1 >= max_tokens || n_tokens + 1 >= self.cfg.limits.ctx {
            let r = self.reqs.get_mut(&it.id)?;
            let tail = r.utf8.finish() + &r.stop.finish();
            return Some((FinishReason::Length, tail, None));
        }
        None
    }

    fn finish(&mut self, id: u64, reason: FinishReason, text: String, error: Option<String>) {
        let seq = self.sched.finish(id);
        let Some(r) = self.reqs.remove(&id) else {
            return;
        };
        match reason {
            FinishReason::Error => self.stats.requests_failed += 1,
            FinishReason::Cancelled => self.stats.requests_cancelled += 1,
            _ => self.stats.requests_finished += 1,
        }
        let end = Instant::now();
        let first = r.first_token.unwrap_or(end);
        let secs = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64();
        let stats = GenerationStats {
            prompt_tokens: r.prompt_len,
            cached_tokens: seq.as_ref().map_or(0, |s| s.n_cached),
            queue_secs: secs(r.arrived, r.started.unwrap_or(end)),
            completion_tokens: seq.as_ref().map_or(0, |s| s.n_generated),
            prompt_secs: r.started.map_or(0.0, |s| secs(s, first)),
            gen_secs: secs(first, end),
        };
        r.out.finish(Finished {
            reason,
            stats,
            text,
            error,
            stop_string: r.stop.matched().map(str::to_string),
            prompt_logprobs: r.scored.map(|s| s.scores),
            end_token: r.end_token,
        });
    }
}

/// The start of the block-hash chain of sequences run with `slot`'s adapter at its strength (never 0, the bare
/// model's).
fn lora_root(slot: LoraSlot) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("lora", slot.id, slot.scale.to_bits()).hash(&mut h);
    h.finish() | 1
}
