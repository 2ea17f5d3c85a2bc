//! The knowledge-base agent loop ([`super::agent`]) streamed as chat completion chunks: the loop runs in its own
//! task and says what happens as it happens; each piece becomes a chunk as the OpenAI SDK reads them (the role
//! first, `delta.reasoning_content` for thinking, `delta.content` for text, a client's own call as its two
//! `tool_calls` fragments), each search made is a chunk with an empty delta and `knowledge_base_search`, and the
//! last chunk has the finish reason, `sources` and `knowledge_base_searches`, as the whole answer does. A failure
//! is an error event; a client that goes away ends the loop (its generation is aborted with it).

use std::convert::Infallible;

use axum::response::Response;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, StreamExt};
use lar_types::ChatMessage;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Caller;
use super::agent::{Delta, Outcome, Run, run};
use crate::AppState;
use crate::error::ApiError;
use crate::openai::{Usage, finish_reason, new_id};

/// How many pieces may wait for a slow client before the loop waits for it.
const BUFFER: usize = 64;

/// What the stream's chunks share.
struct Meta {
    id: String,
    created: u64,
    model: String,
    with_usage: bool,
}

impl Meta {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "system_fingerprint": crate::openai::chat::fingerprint(),
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.with_usage {
            c["usage"] = Value::Null;
        }
        c
    }
}

fn data(v: Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// The SSE answer of a loop.
pub fn respond(
    st: AppState,
    caller: Caller,
    r: Run,
    msgs: Vec<ChatMessage>,
    model: String,
) -> Response {
    let meta = Meta {
        id: new_id("chatcmpl"),
        created: crate::http::unix_now(),
        model,
        with_usage: r.s.include_usage(),
    };
    let every = st.cfg.stream_keepalive;
    let (tx, rx) = mpsc::channel::<Delta>(BUFFER);
    let task = tokio::spawn(async move { run(&st, &caller, r, msgs, Some(&tx)).await });
    let first = data(meta.chunk(json!({"role": "assistant", "content": ""}), None));
    // The pieces as they come, then (once the loop has ended and the channel with it) the end.
    let pieces = stream::unfold((rx, 0usize), |(mut rx, calls)| async move {
        let d = rx.recv().await?;
        let next = calls + usize::from(matches!(d, Delta::Call(_)));
        Some(((d, calls), (rx, next)))
    });
    let meta = std::sync::Arc::new(meta);
    let m = meta.clone();
    let body = pieces.flat_map(move |(d, calls)| stream::iter(chunks(&m, d, calls)));
    let tail = stream::once(async move {
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal(format!("the agent loop failed: {e}"))),
        };
        end(&meta, outcome)
    })
    .flat_map(stream::iter);
    let all = stream::once(async move { first })
        .chain(body)
        .chain(tail)
        .map(Ok::<_, Infallible>);
    crate::generation::sse(all, every)
}

/// The chunks of one piece; `calls`: the client's calls sent before it.
fn chunks(meta: &Meta, d: Delta, calls: usize) -> Vec<SseEvent> {
    match d {
        Delta::Thinking(t) => vec![data(
            meta.chunk(json!({"reasoning_content": t, "reasoning": t}), None),
        )],
        Delta::Text(t) => vec![data(meta.chunk(json!({"content": t}), None))],
        Delta::Call(c) => crate::openai::tools::call_deltas(calls, &c)
            .into_iter()
            .map(|f| data(meta.chunk(json!({"tool_calls": f}), None)))
            .collect(),
        Delta::Search(s) => {
            let mut c = meta.chunk(json!({}), None);
            c["knowledge_base_search"] = s;
            vec![data(c)]
        }
    }
}

/// The last chunk (finish reason, sources, searches), the usage when asked, `[DONE]`; or the error.
fn end(meta: &Meta, outcome: Result<Outcome, ApiError>) -> Vec<SseEvent> {
    let o = match outcome {
        Ok(o) => o,
        Err(e) => return vec![data(e.body())],
    };
    let finish = if o.calls.is_empty() {
        finish_reason(o.finish)
    } else {
        "tool_calls"
    };
    let mut last = meta.chunk(json!({}), Some(finish));
    last["sources"] = json!(o.sources);
    last["knowledge_base_searches"] = json!(o.searches);
    let mut out = vec![data(last)];
    if meta.with_usage {
        let mut u = meta.chunk(json!({}), None);
        u["choices"] = json!([]);
        u["usage"] = Usage::of(&o.stats, 1).json();
        out.push(data(u));
    }
    out.push(SseEvent::default().data("[DONE]"));
    out
}
