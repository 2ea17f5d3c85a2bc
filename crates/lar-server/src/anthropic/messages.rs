//! `POST /v1/messages`: one message back, whole (`content` blocks: `thinking` for a reasoning model, `text`,
//! `tool_use`; `stop_reason` `end_turn`, `max_tokens`, `stop_sequence` or `tool_use`; `usage`) or as Anthropic's
//! event stream: `message_start`, `ping`, then per block `content_block_start`, `content_block_delta`
//! (`thinking_delta`, `text_delta`, `input_json_delta`), `content_block_stop`, then `message_delta` (stop reason,
//! output tokens) and `message_stop`; a failure is an `error` event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use lar_engine::{Event, Finished, Request};
use lar_grammar::reasoning::ThinkParser;
use lar_grammar::tools::{Piece, ToolFormat, ToolParser};
use lar_types::{FinishReason, ToolCall};
use serde_json::{Map, Value, json};

use super::{err, parse};
use crate::AppState;
use crate::catalog::LoadOptions;
use crate::error::{ApiResult, Shape};
use crate::generation::{Generation, failed_error, failure};
use crate::http::JsonBody;
use crate::manager::Wait;
use crate::openai::new_id;
use crate::structured::Offer;

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> Response {
    match run(st, obj).await {
        Ok(r) => r,
        Err(e) => err(e).into_response(),
    }
}

/// What the answer repeats.
struct Meta {
    id: String,
    model: String,
    input_tokens: usize,
    stops: Vec<String>,
    tools: Option<ToolFormat>,
    /// A reasoning model's markers: its thinking becomes a `thinking` block.
    think: Option<crate::structured::Thinking>,
}

async fn run(st: AppState, obj: Map<String, Value>) -> ApiResult<Response> {
    let p = parse(&obj, false)?;
    let lease = Arc::new(
        st.manager
            .get(&p.model, &LoadOptions::default(), None, Wait::Yes)
            .await?,
    );
    let offer = Offer {
        tools: p.tools.clone(),
        choice: p.choice.clone(),
        parallel: p.parallel,
        format: None,
        param: "tools",
        thinking: p.thinking.map(|t| (t, "thinking")),
        split_thinking: true,
    };
    let prep = crate::structured::prepare(&lease, p.messages.clone(), offer).await?;
    let (ids, format) = (prep.prompt.clone(), prep.tools);
    let params = p
        .sampling
        .params(ids.len(), lease.model.ctx, None)
        .map_err(|mut e| {
            if e.param.as_deref() == Some("stop") {
                e.param = Some("stop_sequences".into());
            }
            e
        })?;
    let meta = Meta {
        id: new_id("msg"),
        model: lease.name(),
        input_tokens: ids.len(),
        stops: params.stop.clone(),
        tools: format,
        think: prep.think,
    };
    let mut req = Request::new(ids, params);
    if let Some(c) = &prep.constrained {
        req.processors.push(c.mask());
    }
    let mut job = Generation::start(lease, &st, req)?;
    prep.reveal(&mut job);
    if p.sampling.stream() {
        return Ok(stream_response(meta, job));
    }
    let done = job.collect().await?;
    let (blocks, calls) = blocks_of(&meta, &done.text);
    let (reason, seq) = stop_reason(&done.finished, calls, &meta);
    Ok(axum::Json(json!({
        "id": meta.id,
        "type": "message",
        "role": "assistant",
        "model": meta.model,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": usage(&meta, &done.finished),
    }))
    .into_response())
}

fn usage(meta: &Meta, f: &Finished) -> Value {
    json!({
        "input_tokens": meta.input_tokens,
        "output_tokens": f.stats.completion_tokens,
        "cache_read_input_tokens": f.stats.cached_tokens,
        "cache_creation_input_tokens": 0,
    })
}

fn tool_use(c: &ToolCall) -> Value {
    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
}

/// A whole answer as content blocks (a reasoning model's thinking first); how many were calls.
fn blocks_of(meta: &Meta, text: &str) -> (Vec<Value>, usize) {
    let (thought, text) = match &meta.think {
        Some(t) => t.split(text),
        None => (String::new(), text.to_string()),
    };
    let mut blocks = Vec::new();
    if !thought.is_empty() {
        // Lar signs nothing: the signature is empty (clients send it back; it is not checked).
        blocks.push(json!({"type": "thinking", "thinking": thought, "signature": ""}));
    }
    let Some(f) = meta.tools else {
        if !text.is_empty() {
            blocks.push(json!({"type": "text", "text": text}));
        }
        return (blocks, 0);
    };
    let mut p = ToolParser::new(f, new_id("toolu"));
    let mut pieces = p.push(&text);
    pieces.extend(p.finish());
    let mut calls = 0;
    for piece in pieces {
        match piece {
            Piece::Text(t) if t.trim().is_empty() => {}
            Piece::Text(t) => blocks.push(json!({"type": "text", "text": t})),
            Piece::Call(c) => {
                calls += 1;
                blocks.push(tool_use(&c));
            }
        }
    }
    (blocks, calls)
}

/// `stop_reason` and `stop_sequence` (the engine says which stop string, if one ended the text).
fn stop_reason(f: &Finished, calls: usize, meta: &Meta) -> (&'static str, Option<String>) {
    match f.reason {
        FinishReason::Length => ("max_tokens", None),
        _ if calls > 0 => ("tool_use", None),
        _ => match &f.stop_string {
            Some(s) if meta.stops.contains(s) => ("stop_sequence", Some(s.clone())),
            _ => ("end_turn", None),
        },
    }
}

fn event(name: &str, data: Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// The event stream: blocks open as their first piece arrives and close when the next kind starts.
fn stream_response(meta: Meta, job: Generation) -> Response {
    let every = job.keep_alive();
    let start = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": meta.id, "type": "message", "role": "assistant", "content": [], "model": meta.model,
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": meta.input_tokens, "output_tokens": 0}}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    let parser = meta.tools.map(|f| ToolParser::new(f, new_id("toolu")));
    let think = meta.think.map(|t| t.parser());
    let state = Blocks {
        meta,
        parser,
        think,
        index: 0,
        open_text: false,
        open_thinking: false,
        calls: 0,
    };
    let rest = stream::unfold(Some((job, state)), |s| async move {
        let (mut job, mut b) = s?;
        let mut out = Vec::new();
        match job.next().await? {
            Event::Token(t) => {
                b.push(&t.text, false, &mut out);
                Some((out, Some((job, b))))
            }
            Event::Done(f) => {
                if let Some(e) = failure(&f) {
                    let e = failed_error(e).shape(Shape::Anthropic);
                    out.push(event("error", e.body()));
                    return Some((out, None));
                }
                b.push(&f.text, true, &mut out);
                b.close(&mut out);
                let (reason, seq) = stop_reason(&f, b.calls, &b.meta);
                out.push(event(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                           "usage": {"output_tokens": f.stats.completion_tokens}}),
                ));
                out.push(event("message_stop", json!({"type": "message_stop"})));
                Some((out, None))
            }
        }
    })
    .flat_map(stream::iter);
    let all = stream::iter(start).chain(rest).map(Ok::<_, Infallible>);
    crate::generation::sse(all, every)
}

/// The blocks of a streamed answer so far.
struct Blocks {
    meta: Meta,
    parser: Option<ToolParser>,
    think: Option<ThinkParser>,
    /// The index of the next block to open.
    index: usize,
    open_text: bool,
    open_thinking: bool,
    calls: usize,
}

impl Blocks {
    fn push(&mut self, text: &str, last: bool, out: &mut Vec<SseEvent>) {
        let text = match self.think.as_mut() {
            None => text.to_string(),
            Some(tp) => {
                let (thinking, answer) = tp.take(text, last);
                if !thinking.is_empty() {
                    self.thinking(&thinking, out);
                }
                answer
            }
        };
        if !text.is_empty() {
            self.close_thinking(out);
        }
        let pieces = match self.parser.as_mut() {
            None => vec![Piece::Text(text)],
            Some(p) => {
                let mut v = p.push(&text);
                if last {
                    v.extend(p.finish());
                }
                v
            }
        };
        for piece in pieces {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => {
                    if !self.open_text {
                        out.push(event(
                            "content_block_start",
                            json!({"type": "content_block_start",
                            "index": self.index, "content_block": {"type": "text", "text": ""}}),
                        ));
                        self.open_text = true;
                    }
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": self.index, "delta": {"type": "text_delta", "text": t}}),
                    ));
                }
                Piece::Call(c) => {
                    self.close(out);
                    self.calls += 1;
                    out.push(event("content_block_start", json!({"type": "content_block_start",
                        "index": self.index, "content_block": {"type": "tool_use", "id": c.id, "name": c.name,
                        "input": {}}})));
                    out.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta",
                        "index": self.index, "delta": {"type": "input_json_delta",
                        "partial_json": c.arguments.to_string()}}),
                    ));
                    out.push(event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": self.index}),
                    ));
                    self.index += 1;
                }
            }
        }
    }

    /// A piece of thinking, in a `thinking` block opened for it.
    fn thinking(&mut self, t: &str, out: &mut Vec<SseEvent>) {
        if !self.open_thinking {
            out.push(event(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.index,
                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            ));
            self.open_thinking = true;
        }
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.index,
                   "delta": {"type": "thinking_delta", "thinking": t}}),
        ));
    }

    fn close_thinking(&mut self, out: &mut Vec<SseEvent>) {
        if self.open_thinking {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.open_thinking = false;
            self.index += 1;
        }
    }

    fn close(&mut self, out: &mut Vec<SseEvent>) {
        self.close_thinking(out);
        if self.open_text {
            out.push(event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.index}),
            ));
            self.open_text = false;
            self.index += 1;
        }
    }
}
