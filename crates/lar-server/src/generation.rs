//! One generation as the routes drive it: a lease on the model, the engine's event stream, and the books kept as
//! events pass (time to first token, inter-token latency, end-to-end and queue time, token counts). Dropping a
//! [`Generation`] drops its stream, which the engine takes as a cancellation at its next step: a client that
//! disconnects frees its sequence and KV blocks without anything else to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lar_engine::{EngineHandle, Event, EventStream, Finished, Request};
use lar_types::{FinishReason, TokenEvent};

use crate::AppState;
use crate::catalog::Runner;
use crate::error::{ApiError, ApiResult};
use crate::manager::Lease;
use crate::metrics::Metrics;

pub struct Generation {
    stream: EventStream,
    metrics: Arc<Metrics>,
    model: String,
    submitted: Instant,
    last: Option<Instant>,
    /// The answer so far, kept only when prompts and answers are logged (`--log-prompts`).
    logged: Option<String>,
    /// A control token whose text is shown anyway (a tool call's opening marker, for the parser).
    reveal: Option<(u32, String)>,
    /// The audit record being written (`--audit`), with the log it goes to and the answer so far.
    audit: Option<Audit>,
    /// How long its stream waits with nothing to send before a keep-alive (`ServerConfig::stream_keepalive`).
    keep_alive: Duration,
    /// Held until the generation is dropped: the model stays loaded meanwhile.
    _lease: Arc<Lease>,
}

/// A generation's audit record until its end.
struct Audit {
    log: Arc<lar_lab::audit::AuditLog>,
    record: lar_lab::audit::Record,
    prompt: String,
    output: String,
    /// Tokens generated so far (for a generation that never ends).
    tokens: usize,
    keep_text: bool,
}

impl Audit {
    /// Writes the record with the end it had; a failure to write is logged, not the request's.
    fn write(mut self, prompt_tokens: usize, completion_tokens: usize, finish: &str) {
        let texts = lar_lab::audit::Record::of_texts(&self.prompt, &self.output, self.keep_text);
        let r = &mut self.record;
        r.prompt_tokens = prompt_tokens;
        r.completion_tokens = completion_tokens;
        r.finish = finish.to_string();
        r.prompt_sha256 = texts.prompt_sha256;
        r.output_sha256 = texts.output_sha256;
        r.prompt = texts.prompt;
        r.output = texts.output;
        if let Err(e) = self.log.append(&self.record) {
            tracing::error!(error = %e, "the audit log could not be written");
        }
    }
}

/// What a whole generation produced.
#[derive(Debug)]
pub struct Collected {
    pub text: String,
    pub tokens: Vec<TokenEvent>,
    pub finished: Finished,
}

/// The chat engine of a lease, or a 400 for an embedding model.
pub fn engine(lease: &Lease) -> ApiResult<&EngineHandle> {
    match &lease.model.runner {
        Runner::Chat(h) => Ok(h),
        Runner::Embed(_) => Err(ApiError::bad_request(format!(
            "'{}' is an embedding model; it cannot generate text",
            lease.model.entry.name
        ))
        .param("model")),
    }
}

impl Generation {
    /// Submits `req` to the lease's engine, with the adapter its model name asked for (`base+NAME`) unless the
    /// request names one itself (llama-server's `lora` field; asking for two is a 400). With `--log-prompts` the
    /// prompt and, at the end, the answer are logged.
    pub fn start(lease: Arc<Lease>, st: &AppState, mut req: Request) -> ApiResult<Self> {
        let h = engine(&lease)?;
        match (req.lora, &lease.lora) {
            (Some(_), Some((name, _))) => {
                return Err(ApiError::field(
                    "lora",
                    format!(
                        "the model name already asks for adapter '{name}': name the adapter once (Lar runs one \
                         adapter per request)"
                    ),
                ));
            }
            (None, Some((_, slot))) => req.lora = Some(*slot),
            _ => {}
        }
        let logged = st.cfg.log_prompts.then(|| {
            tracing::info!(prompt = %h.tokenizer().decode(&req.prompt, true), "prompt");
            String::new()
        });
        let audit = st.cfg.audit.as_ref().map(|log| {
            let info = crate::http::REQUEST
                .try_with(Clone::clone)
                .unwrap_or_default();
            Audit {
                log: log.clone(),
                record: lar_lab::audit::Record {
                    source: "serve".into(),
                    route: Some(info.route),
                    request_id: Some(info.id),
                    key: info.key,
                    model: lease.name(),
                    model_sha256: Some(lease.model.entry.digest.clone()),
                    params: serde_json::to_value(&req.params).unwrap_or_default(),
                    sources: info.sources.lock().map(|s| s.clone()).unwrap_or_default(),
                    prompt_tokens: req.prompt.len(),
                    ..Default::default()
                },
                prompt: h.tokenizer().decode(&req.prompt, true),
                output: String::new(),
                tokens: 0,
                keep_text: st.cfg.audit_text,
            }
        });
        let stream = match h.submit(req) {
            Ok(s) => s,
            Err(lar_engine::Error::EngineStopped) => {
                // A dead engine: the next request loads the model again.
                st.manager.forget(&lease.model.entry.name);
                return Err(lar_engine::Error::EngineStopped.into());
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            stream,
            metrics: st.metrics.clone(),
            logged,
            model: lease.model.entry.name.clone(),
            submitted: Instant::now(),
            last: None,
            reveal: None,
            audit,
            keep_alive: st.cfg.stream_keepalive,
            _lease: lease,
        })
    }

    /// How long its stream waits with nothing to send before a keep-alive.
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The engine's id of the request (for [`lar_engine::Request::follows`]).
    pub fn id(&self) -> u64 {
        self.stream.id()
    }

    /// Shows `text` for the control token `token` (which the engine's text leaves out).
    pub fn reveal(&mut self, token: Option<(u32, String)>) {
        self.reveal = token;
    }

    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<Event> {
        let mut ev = self.stream.next().await?;
        let now = Instant::now();
        if let (Event::Token(t), Some((id, text))) = (&mut ev, &self.reveal)
            && t.token == *id
        {
            t.text = format!("{text}{}", t.text);
        }
        match &ev {
            Event::Token(t) => {
                if let Some(l) = self.logged.as_mut() {
                    l.push_str(&t.text);
                }
                if let Some(a) = self.audit.as_mut() {
                    a.output.push_str(&t.text);
                    a.tokens += 1;
                }
                match self.last {
                    None => self
                        .metrics
                        .first_token(&self.model, (now - self.submitted).as_secs_f64()),
                    Some(t) => self
                        .metrics
                        .inter_token(&self.model, (now - t).as_secs_f64()),
                }
                self.last = Some(now);
            }
            Event::Done(f) => {
                if let Some(l) = self.logged.take() {
                    tracing::info!(answer = %format!("{l}{}", f.text), reason = ?f.reason, "answer");
                }
                if let Some(mut a) = self.audit.take() {
                    a.output.push_str(&f.text);
                    let finish = serde_json::to_value(f.reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| format!("{:?}", f.reason).to_lowercase());
                    a.write(f.stats.prompt_tokens, f.stats.completion_tokens, &finish);
                }
                self.metrics.finished(
                    &self.model,
                    (now - self.submitted).as_secs_f64(),
                    f.stats.queue_secs,
                    f.stats.prompt_tokens,
                    f.stats.completion_tokens,
                )
            }
        }
        Some(ev)
    }

    /// The next event, or `None` when `every` passes without one (the caller sends a keep-alive and asks again).
    pub async fn next_or_tick(&mut self, every: Duration) -> Option<Option<Event>> {
        tokio::time::timeout(every, self.next()).await.ok()
    }

    /// Reads the whole generation. A failed one is a 500 (its cause goes to the log).
    pub async fn collect(mut self) -> ApiResult<Collected> {
        let mut text = String::new();
        let mut tokens = Vec::new();
        while let Some(ev) = self.next().await {
            match ev {
                Event::Token(t) => {
                    text.push_str(&t.text);
                    tokens.push(t);
                }
                Event::Done(f) => {
                    if let Some(e) = failure(&f) {
                        return Err(failed_error(e));
                    }
                    text.push_str(&f.text);
                    return Ok(Collected {
                        text,
                        tokens,
                        finished: f,
                    });
                }
            }
        }
        Err(ApiError::internal(
            "the engine ended a stream without its end",
        ))
    }
}

impl Drop for Generation {
    /// A generation dropped before its end (the client went away) is recorded as cancelled, with what it had said.
    fn drop(&mut self) {
        if let Some(a) = self.audit.take() {
            let (p, n) = (a.record.prompt_tokens, a.tokens);
            a.write(p, n, "cancelled");
        }
    }
}

/// Why a finished generation did not complete: it failed, or the engine cut it short (a client that fell too
/// far behind). A truncated answer is never reported as a normal end.
pub fn failure(f: &Finished) -> Option<String> {
    match f.reason {
        FinishReason::Error => Some(f.error.clone().unwrap_or_else(|| "unknown".into())),
        FinishReason::Cancelled => f.error.clone(),
        _ => None,
    }
}

/// The error for a failed generation: a grammar that could not go on (the model's vocabulary cannot complete the
/// requested format) is the request's to know, with its reason; anything else is internal.
pub fn failed_error(e: String) -> ApiError {
    if e.starts_with(lar_grammar::FAILED) {
        ApiError::bad_request(format!(
            "the model could not complete the requested format ({e})"
        ))
    } else {
        ApiError::internal(format!("generation failed: {e}"))
    }
}

/// Server-sent events, with a keep-alive comment every `every` while nothing comes.
pub fn sse<S>(events: S, every: Duration) -> axum::response::Response
where
    S: futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>
        + Send
        + 'static,
{
    use axum::response::IntoResponse;
    axum::response::Sse::new(events)
        .keep_alive(
            axum::response::sse::KeepAlive::new()
                .interval(every)
                .text("keep-alive"),
        )
        .into_response()
}
