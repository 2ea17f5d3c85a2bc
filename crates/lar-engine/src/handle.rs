//! The engine behind a cloneable handle: [`EngineHandle::start`] moves an [`EngineCore`] onto its own thread,
//! and every caller (the CLI's run, chat, ask and bench; next, the server) talks to it the same way:
//! [`EngineHandle::submit`] -> an [`EventStream`], [`EngineHandle::abort`], [`EngineHandle::stats`].
//!
//! The thread drains its commands at the top of every step (so an abort takes effect at the next step, also in the
//! middle of a long prefill), sleeps when there is no work, and ends when every handle is gone and the last request
//! has finished. Requests are checked against the engine's [`Limits`] on the caller's thread, so a bad request is
//! refused at once with a typed error and never reaches the loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lar_tokenizer::Tokenizer;
use lar_types::{ChatMessage, FinishReason, GenerationStats, SamplingParams};

use crate::engine_core::{EngineCore, EngineStats, Limits, Request};
use crate::events::{Event, EventStream, Outbox, channel};
use crate::prompt::ModelInfo;
use crate::{Error, Result};

enum Command {
    Submit {
        id: u64,
        req: Box<Request>,
        out: Outbox,
        arrived: Instant,
    },
    Abort(u64),
}

struct Shared {
    info: ModelInfo,
    event_buffer: usize,
    ids: Arc<AtomicU64>,
    stats: Mutex<EngineStats>,
}

/// A handle on a running engine; clone it freely (every clone talks to the same engine thread).
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

/// The result of [`EngineHandle::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<u32>,
    pub reason: FinishReason,
    pub stats: GenerationStats,
}

impl EngineHandle {
    /// Runs `core` on a thread of its own. Callers see its model through [`Self::model`]: the core's tokenizer,
    /// limits and device, and `template`, the model's own chat template.
    pub fn start(core: EngineCore, template: Option<String>) -> Result<Self> {
        let limits = core.config().limits;
        let info = ModelInfo {
            tokenizer: core.tokenizer().clone(),
            ctx: limits.ctx,
            n_vocab: limits.n_vocab,
            template,
            device: core.device(),
            loras: core.loras().to_vec(),
        };
        let shared = Arc::new(Shared {
            event_buffer: core.config().event_buffer,
            ids: core.ids(),
            stats: Mutex::new(core.stats()),
            info,
        });
        let (tx, rx) = mpsc::channel();
        let for_loop = shared.clone();
        std::thread::Builder::new()
            .name("lar-engine".into())
            .spawn(move || run(core, rx, for_loop))
            .map_err(|e| Error::Config(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { tx, shared })
    }

    /// The model as callers see it: tokenizer, context length, chat template, device.
    pub fn model(&self) -> &ModelInfo {
        &self.shared.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.info.tokenizer
    }

    /// Context length per sequence.
    pub fn ctx(&self) -> usize {
        self.shared.info.ctx
    }

    /// See [`ModelInfo::chat_tokens`].
    pub fn chat_tokens(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
    ) -> Result<Vec<u32>> {
        self.shared.info.chat_tokens(messages, template)
    }

    /// See [`ModelInfo::chat_tokens_fitting`].
    pub fn chat_tokens_fitting(
        &self,
        messages: &[ChatMessage],
        template: Option<&str>,
        reserve: usize,
    ) -> Result<(Vec<u32>, usize)> {
        self.shared
            .info
            .chat_tokens_fitting(messages, template, reserve)
    }

    /// Checks a request and queues it; its events come on the returned stream (whose `id` [`Self::abort`] takes).
    pub fn submit(&self, req: Request) -> Result<EventStream> {
        let info = &self.shared.info;
        Limits {
            ctx: info.ctx,
            n_vocab: info.n_vocab,
            n_loras: info.loras.len(),
        }
        .check(&req)?;
        let id = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        let (out, stream) = channel(id, self.shared.event_buffer);
        self.tx
            .send(Command::Submit {
                id,
                req: Box::new(req),
                out,
                arrived: Instant::now(),
            })
            .map_err(|_| Error::EngineStopped)?;
        Ok(stream)
    }

    /// Cancels a request at the next step; its stream ends with `Cancelled`. Unknown or finished ids are ignored.
    pub fn abort(&self, id: u64) {
        let _ = self.tx.send(Command::Abort(id));
    }

    /// The engine's counters as of its last step.
    pub fn stats(&self) -> EngineStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Generates for one prompt on the calling thread's behalf, calling `on_text` with each piece of text as it
    /// becomes final; `on_text` returning false aborts the request (the output so far is returned).
    pub fn generate(
        &self,
        prompt: Vec<u32>,
        params: SamplingParams,
        on_text: impl FnMut(&str) -> bool,
    ) -> Result<Output> {
        self.generate_request(Request::new(prompt, params), on_text)
    }

    /// [`Self::generate`] for a whole [`Request`] (a LoRA adapter, logits processors).
    pub fn generate_request(
        &self,
        req: Request,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Output> {
        let mut stream = self.submit(req)?;
        let mut out = Output {
            text: String::new(),
            tokens: Vec::new(),
            reason: FinishReason::Stop,
            stats: GenerationStats::default(),
        };
        let mut aborted = false;
        while let Some(ev) = stream.blocking_next() {
            match ev {
                Event::Token(t) => {
                    out.tokens.push(t.token);
                    out.text.push_str(&t.text);
                    if !aborted && !t.text.is_empty() && !on_text(&t.text) {
                        self.abort(stream.id());
                        aborted = true;
                    }
                }
                Event::Done(f) => {
                    if f.reason == FinishReason::Error {
                        return Err(Error::Failed(f.error.unwrap_or_default()));
                    }
                    if !f.text.is_empty() {
                        on_text(&f.text);
                    }
                    out.text.push_str(&f.text);
                    out.reason = f.reason;
                    out.stats = f.stats;
                    return Ok(out);
                }
            }
        }
        Err(Error::EngineStopped)
    }
}

/// The engine thread.
fn run(mut core: EngineCore, rx: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let apply = |core: &mut EngineCore, cmd| match cmd {
        Command::Submit {
            id,
            req,
            out,
            arrived,
        } => core.add(id, *req, out, arrived),
        Command::Abort(id) => core.abort(id),
    };
    let mut open = true;
    loop {
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = core.stats();
        // Idle: wait for a command (or for the last handle to go).
        if !core.has_work() {
            if !open {
                break;
            }
            match rx.recv() {
                Ok(c) => apply(&mut core, c),
                Err(_) => {
                    open = false;
                    continue;
                }
            }
        }
        // Then take every command queued before this step.
        while open {
            match rx.try_recv() {
                Ok(c) => apply(&mut core, c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        // Readers see the requests just taken (waiting) before the step, which may be a long prefill.
        *shared.stats.lock().unwrap_or_else(|p| p.into_inner()) = core.stats();
        core.step();
    }
}
