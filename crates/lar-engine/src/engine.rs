//! The engine: a model, its tokenizer, the KV store and the scheduler, driven by [`Engine::step`]:
//! `schedule()` -> `forward()` -> `update()`, as in vLLM. Each step runs one forward pass over every scheduled
//! sequence (prefill chunks and decodes together), samples where a sequence reached its end, streams text through
//! each request's sink, and retires finished requests. [`Engine::generate`] is a batch of one through the same loop.
//! No HTTP, no JSON: the server and the CLI are thin callers of this API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use lar_models::{Model, SeqBatch};
use lar_tokenizer::detok::{StopMatcher, Utf8Stream};
use lar_tokenizer::{ChatTemplate, Tokenizer};
use lar_types::{
    ChatMessage, FinishReason, GenerationStats, SamplingParams, TokenEvent, TokenLogprob,
};

use crate::runner::Runner;
use crate::sampler::Sampler;
use crate::scheduler::{BlockManager, Scheduled, Scheduler};
use crate::{Error, Result};

/// How the engine is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Context length per sequence; `None`: the model's own.
    pub ctx: Option<usize>,
    /// Threads for the forward pass; 0: the number of physical cores.
    pub threads: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Most tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences decoded together.
    pub max_seqs: usize,
    /// Tokens the KV store holds over all sequences; `None`: `ctx` (enough for one full sequence).
    pub kv_tokens: Option<usize>,
    /// Where the forward pass runs: `None`, our CPU kernels; else a candle device (`cuda`, `cuda:N`, `cpu`), as
    /// [`crate::runner::parse_device`] gives it.
    pub device: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ctx: None,
            threads: 0,
            block_size: 16,
            max_batch_tokens: 512,
            max_seqs: 8,
            kv_tokens: None,
            device: None,
        }
    }
}

/// What a request's sink receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token(TokenEvent),
    /// The last event of a request; `text` is any text held back until the end.
    Done {
        reason: FinishReason,
        stats: GenerationStats,
        text: String,
    },
}

/// A request's sink: return `false` to cancel the request.
pub type Sink = Box<dyn FnMut(&Event) -> bool + Send>;

struct Request {
    sampler: Sampler,
    utf8: Utf8Stream,
    stop: StopMatcher,
    sink: Sink,
    prompt_len: usize,
    started: Option<Instant>,
    first_token: Option<Instant>,
}

/// The result of [`Engine::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<u32>,
    pub reason: FinishReason,
    pub stats: GenerationStats,
}

pub struct Engine {
    pub tokenizer: Tokenizer,
    /// Context length per sequence.
    pub ctx: usize,
    runner: Runner,
    sched: Scheduler,
    reqs: HashMap<u64, Request>,
    next_id: u64,
}

/// Physical cores (the default thread count), falling back to logical ones.
pub use lar_plan::hw::physical_cores;

impl Engine {
    /// Loads a GGUF model file or a Hugging Face model directory.
    pub fn load(path: &Path, cfg: &EngineConfig) -> Result<Self> {
        Self::from_file(Arc::new(lar_models::open_model(path)?), cfg)
    }

    /// Loads the model of an opened file (which the caller may have planned first).
    pub fn from_file(file: Arc<lar_models::Gguf>, cfg: &EngineConfig) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(&file)?;
        // Repacked for our CPU kernels only when they are the ones that run.
        let model = Model::from_gguf_with(file, cfg.device.is_none())?;
        if tokenizer.vocab.len() > model.hp.n_vocab {
            return Err(Error::Invalid(format!(
                "the tokenizer has {} tokens but the model's embedding only {}",
                tokenizer.vocab.len(),
                model.hp.n_vocab
            )));
        }
        Self::new(model, tokenizer, cfg)
    }

    pub fn new(model: Model, tokenizer: Tokenizer, cfg: &EngineConfig) -> Result<Self> {
        let ctx = cfg.ctx.unwrap_or(model.hp.ctx_train).max(1);
        let bs = cfg.block_size.max(1);
        let n_blocks = cfg.kv_tokens.unwrap_or(ctx).max(ctx).div_ceil(bs);
        let sched = Scheduler::new(
            BlockManager::new(n_blocks, bs),
            cfg.max_batch_tokens,
            cfg.max_seqs,
        );
        let threads = if cfg.threads == 0 {
            physical_cores()
        } else {
            cfg.threads
        };
        let runner = Runner::new(model, cfg.device.as_deref(), bs, n_blocks, threads)?;
        Ok(Self {
            tokenizer,
            ctx,
            runner,
            sched,
            reqs: HashMap::new(),
            next_id: 1,
        })
    }

    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.runner.model
    }

    /// The model's own chat template, if it has one.
    pub fn model_template(&self) -> Option<&str> {
        self.runner
            .model
            .file
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
    }

    /// Renders `messages` with `template` (a built-in name or Jinja source) or the model's own, and tokenizes the
    /// result with special tokens parsed. BOS is added when the model wants one and the template did not write it.
    pub fn chat_tokens(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
    ) -> Result<Vec<u32>> {
        let spec = template
            .or(self.model_template())
            .ok_or(Error::NoTemplate)?;
        let t = ChatTemplate::new(spec)?;
        let tok_text = |id: Option<u32>| {
            id.map(|i| self.tokenizer.decode(&[i], true))
                .unwrap_or_default()
        };
        let (bos, eos) = (
            tok_text(self.tokenizer.vocab.bos),
            tok_text(self.tokenizer.vocab.eos),
        );
        let text = t.render(messages, true, &bos, &eos)?;
        let mut ids = self.tokenizer.encode(&text, false, true);
        if let Some(b) = self.tokenizer.vocab.bos
            && self.tokenizer.vocab.add_bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    /// [`Engine::chat_tokens`] for a conversation that may have outgrown the context: drops the oldest messages
    /// (never a leading system message, never the last message) until the prompt leaves `reserve` tokens of the
    /// context free for the answer. Returns the tokens and how many messages were dropped. If even the system
    /// message and the last message do not fit, the tokens are returned as they are and `add_request` refuses them.
    pub fn chat_tokens_fitting(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
        reserve: usize,
    ) -> Result<(Vec<u32>, usize)> {
        let keep = usize::from(
            messages
                .first()
                .is_some_and(|m| m.role == lar_types::Role::System),
        );
        let mut dropped = 0;
        loop {
            let msgs: Vec<ChatMessage> = messages[..keep]
                .iter()
                .chain(&messages[keep + dropped..])
                .cloned()
                .collect();
            let ids = self.chat_tokens(&msgs, template)?;
            if ids.len() + reserve <= self.ctx || keep + dropped + 1 >= messages.len() {
                return Ok((ids, dropped));
            }
            dropped += 1;
        }
    }

    /// Queues a request; its events go to `sink`. Fails at once on an empty prompt or one that does not fit.
    pub fn add_request(
        &mut self,
        prompt: Vec<u32>,
        params: SamplingParams,
        sink: Sink,
    ) -> Result<u64> {
        if prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if prompt.len() >= self.ctx {
            return Err(Error::PromptTooLong {
                tokens: prompt.len(),
                ctx: self.ctx,
            });
        }
        if let Some(&bad) = prompt
            .iter()
            .find(|&&t| t as usize >= self.runner.model.hp.n_vocab)
        {
            return Err(Error::Invalid(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        let stop = StopMatcher::new(&params.stop);
        self.reqs.insert(
            id,
            Request {
                sampler: Sampler::new(params),
                utf8: Utf8Stream::default(),
                stop,
                sink,
                prompt_len: prompt.len(),
                started: None,
                first_token: None,
            },
        );
        self.sched.add(id, prompt);
        Ok(id)
    }

    pub fn has_work(&self) -> bool {
        self.sched.has_work()
    }

    /// Cancels a request; its sink gets `Done` with `Cancelled`.
    pub fn cancel(&mut self, id: u64) {
        self.finish(id, FinishReason::Cancelled, String::new());
    }

    /// One iteration: schedule, forward, update. Returns the ids of requests that finished.
    pub fn step(&mut self) -> Result<Vec<u64>> {
        let items = self.sched.schedule();
        self.sched.preempted.clear();
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        for it in &items {
            if let Some(r) = self.reqs.get_mut(&it.id) {
                r.started.get_or_insert(now);
            }
        }
        let logits = {
            let batch: Vec<SeqBatch> = items
                .iter()
                .map(|it| {
                    let s = self.sched.get(it.id).expect("scheduled sequences exist");
                    SeqBatch {
                        tokens: &s.tokens[it.start..it.start + it.len],
                        pos: it.start,
                        block_table: &s.blocks,
                        all_logits: false,
                    }
                })
                .collect();
            self.runner.forward(&batch)?
        };
        let mut finished = Vec::new();
        for (it, mut row) in items.iter().zip(logits) {
            self.sched.advance(it);
            if it.samples
                && let Some(reason) = self.update(it, &mut row)
            {
                finished.push((it.id, reason));
            }
        }
        let mut ids = Vec::new();
        for (id, (reason, tail)) in finished {
            self.finish(id, reason, tail);
            ids.push(id);
        }
        Ok(ids)
    }

    /// Samples the next token of a sequence and streams its text; `Some` when the request is done.
    fn update(&mut self, it: &Scheduled, logits: &mut [f32]) -> Option<(FinishReason, String)> {
        let seq = self.sched.get(it.id)?;
        let n_tokens = seq.tokens.len();
        let n_generated = seq.n_generated;
        let r = self.reqs.get_mut(&it.id)?;
        let s = r.sampler.sample(logits, &seq.tokens);
        r.first_token.get_or_insert_with(Instant::now);
        let params = &r.sampler.params;
        if self.tokenizer.is_eog(s.token) && !params.ignore_eos {
            let tail = r.utf8.finish() + &r.stop.finish();
            return Some((FinishReason::Stop, tail));
        }
        let max_tokens = params.max_tokens;
        let top_logprobs: Vec<TokenLogprob> = s
            .top
            .iter()
            .map(|&(t, lp)| TokenLogprob {
                token: t,
                text: self.tokenizer.decode(&[t], false),
                logprob: lp,
            })
            .collect();
        let piece = r.utf8.push(&self.tokenizer.token_bytes(s.token, false));
        let (text, stopped) = r.stop.push(&piece);
        let ev = Event::Token(TokenEvent {
            token: s.token,
            text,
            logprob: s.logprob,
            top_logprobs,
        });
        let keep_going = (r.sink)(&ev);
        self.sched.append_token(it.id, s.token);
        if stopped {
            return Some((FinishReason::Stop, String::new()));
        }
        if !keep_going {
            return Some((FinishReason::Cancelled, String::new()));
        }
        if n_generated + 1 >= max_tokens || n_tokens + 1 >= self.ctx {
            let r = self.reqs.get_mut(&it.id)?;
            let tail = r.utf8.finish() + &r.stop.finish();
            return Some((FinishReason::Length, tail));
        }
        None
    }

    fn finish(&mut self, id: u64, reason: FinishReason, text: String) {
        let seq = self.sched.finish(id);
        if let Some(mut r) = self.reqs.remove(&id) {
            let end = Instant::now();
            let first = r.first_token.unwrap_or(end);
            let stats = GenerationStats {
                prompt_tokens: r.prompt_len,
                completion_tokens: seq.map_or(0, |s| s.n_generated),
                prompt_secs: r
                    .started
                    .map_or(0.0, |s| first.duration_since(s).as_secs_f64()),
                gen_secs: end.duration_since(first).as_secs_f64(),
            };
            (r.sink)(&Event::Done {
                reason,
                stats,
                text,
            });
        }
    }

    /// Generates for one prompt, calling `on_text` with each piece of text as it becomes final.
    pub fn generate(
        &mut self,
        prompt: Vec<u32>,
        params: SamplingParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Output> {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let id = self.add_request(
            prompt,
            params,
            Box::new(move |e| {
                let _ = tx.send(e.clone());
                true
            }),
        )?;
        let mut out = Output {
            text: String::new(),
            tokens: Vec::new(),
            reason: FinishReason::Stop,
            stats: GenerationStats::default(),
        };
        loop {
            let done = self.step()?;
            while let Ok(ev) = rx.try_recv() {
                match ev {
                    Event::Token(t) => {
                        out.tokens.push(t.token);
                        out.text.push_str(&t.text);
                        if !t.text.is_empty() && !on_text(&t.text) {
                            self.cancel(id);
                        }
                    }
                    Event::Done {
                        reason,
                        stats,
                        text,
                    } => {
                        if !text.is_empty() {
                            on_text(&text);
                        }
                        out.text.push_str(&text);
                        out.reason = reason;
                        out.stats = stats;
                        return Ok(out);
                    }
                }
            }
            if done.contains(&id) || !self.has_work() {
                // The Done event was drained above; reaching here means it was lost.
                return Err(Error::Invalid("request ended without a result".into()));
            }
        }
    }
}
