//! The Responses API's event stream: `response.created`, `response.in_progress`, then for a reasoning model's
//! thinking `response.output_item.added` (a `reasoning` item), `response.reasoning_text.delta`...,
//! `response.reasoning_text.done`, `response.output_item.done`; for the message
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`...,
//! `response.output_text.done`, `response.content_part.done`, `response.output_item.done`; for each call
//! `response.output_item.added`, `response.function_call_arguments.delta`, `...done`, `response.output_item.done`;
//! then `response.completed` (or `response.incomplete`, or `response.failed`). Every event has a
//! `sequence_number`.

use std::convert::Infallible;

use axum::response::Response;
use axum::response::sse::Event as SseEvent;
use futures_util::stream::{self, StreamExt};
use lar_engine::Event;
use lar_grammar::reasoning::ThinkParser;
use lar_grammar::tools::{Piece, ToolParser};
use lar_types::{FinishReason, ToolCall};
use serde_json::{Value, json};

use super::{
    Parsed, Started, call_item, count_reasoning, ended, message_item, reasoning_item,
    response_object,
};
use crate::AppState;
use crate::generation::failure;
use crate::openai::new_id;

/// What the stream has said so far.
struct Emitter {
    seq: u64,
    id: String,
    model: String,
    p: Parsed,
    parser: Option<ToolParser>,
    think: Option<ThinkParser>,
    /// The open reasoning item: its id, output index and text so far.
    reasoning: Option<(String, usize, String)>,
    /// All the thinking (for the usage).
    thinking: String,
    /// The open message item: its id, output index and text so far.
    message: Option<(String, usize, String)>,
    /// Items given so far (for the final response object).
    output: Vec<Value>,
    text: String,
    calls: Vec<ToolCall>,
}

impl Emitter {
    fn ev(&mut self, ty: &str, mut data: Value) -> SseEvent {
        data["type"] = json!(ty);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        SseEvent::default().event(ty).data(data.to_string())
    }

    fn snapshot(
        &self,
        status: &str,
        output: Vec<Value>,
        stats: Option<&lar_types::GenerationStats>,
    ) -> Value {
        response_object(
            &self.id,
            &self.model,
            &self.p.echo,
            status,
            output,
            stats,
            self.p.store,
        )
    }

    fn text(&mut self, t: &str, out: &mut Vec<SseEvent>) {
        if t.is_empty() {
            return;
        }
        if self.message.is_none() {
            let (mid, idx) = (new_id("msg"), self.output.len());
            let item = json!({"type": "message", "id": mid, "status": "in_progress", "role": "assistant", "content": []});
            out.push(self.ev(
                "response.output_item.added",
                json!({"output_index": idx, "item": item}),
            ));
            out.push(self.ev("response.content_part.added", json!({"item_id": mid, "output_index": idx,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})));
            self.output.push(Value::Null);
            self.message = Some((mid, idx, String::new()));
        }
        let Some((mid, idx, _)) = self.message.clone() else {
            return;
        };
        out.push(self.ev(
            "response.output_text.delta",
            json!({"item_id": mid, "output_index": idx,
            "content_index": 0, "delta": t, "logprobs": []}),
        ));
        if let Some(m) = self.message.as_mut() {
            m.2.push_str(t);
        }
        self.text.push_str(t);
    }

    fn think(&mut self, t: &str, out: &mut Vec<SseEvent>) {
        if t.is_empty() {
            return;
        }
        if self.reasoning.is_none() {
            let (rid, idx) = (new_id("rs"), self.output.len());
            let mut item = reasoning_item(&rid, "");
            item["content"] = json!([]);
            item["status"] = json!("in_progress");
            out.push(self.ev(
                "response.output_item.added",
                json!({"output_index": idx, "item": item}),
            ));
            self.output.push(Value::Null);
            self.reasoning = Some((rid, idx, String::new()));
        }
        let Some((rid, idx, _)) = self.reasoning.clone() else {
            return;
        };
        out.push(self.ev(
            "response.reasoning_text.delta",
            json!({"item_id": rid, "output_index": idx, "content_index": 0, "delta": t}),
        ));
        if let Some(r) = self.reasoning.as_mut() {
            r.2.push_str(t);
        }
        self.thinking.push_str(t);
    }

    fn close_reasoning(&mut self, out: &mut Vec<SseEvent>) {
        let Some((rid, idx, text)) = self.reasoning.take() else {
            return;
        };
        out.push(self.ev(
            "response.reasoning_text.done",
            json!({"item_id": rid, "output_index": idx, "content_index": 0, "text": text}),
        ));
        let item = reasoning_item(&rid, &text);
        out.push(self.ev(
            "response.output_item.done",
            json!({"output_index": idx, "item": item.clone()}),
        ));
        self.output[idx] = item;
    }

    fn close_message(&mut self, out: &mut Vec<SseEvent>) {
        let Some((mid, idx, text)) = self.message.take() else {
            return;
        };
        out.push(self.ev(
            "response.output_text.done",
            json!({"item_id": mid, "output_index": idx,
            "content_index": 0, "text": text, "logprobs": []}),
        ));
        out.push(self.ev(
            "response.content_part.done",
            json!({"item_id": mid, "output_index": idx,
            "content_index": 0, "part": {"type": "output_text", "text": text, "annotations": []}}),
        ));
        let item = message_item(&mid, &text, "completed");
        out.push(self.ev(
            "response.output_item.done",
            json!({"output_index": idx, "item": item.clone()}),
        ));
        self.output[idx] = item;
    }

    fn call(&mut self, c: ToolCall, out: &mut Vec<SseEvent>) {
        self.close_message(out);
        let idx = self.output.len();
        let mut item = call_item(&c, "in_progress");
        item["arguments"] = json!("");
        let item_id = item["id"].clone();
        out.push(self.ev(
            "response.output_item.added",
            json!({"output_index": idx, "item": item}),
        ));
        let args = c.arguments.to_string();
        out.push(self.ev(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": idx, "delta": args}),
        ));
        out.push(self.ev(
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": idx, "arguments": args}),
        ));
        let done = call_item(&c, "completed");
        out.push(self.ev(
            "response.output_item.done",
            json!({"output_index": idx, "item": done.clone()}),
        ));
        self.output.push(done);
        self.calls.push(c);
    }

    fn push(&mut self, t: &str, last: bool, out: &mut Vec<SseEvent>) {
        let (thinking, answer) = match self.think.as_mut() {
            Some(p) => p.take(t, last),
            None => (String::new(), t.to_string()),
        };
        self.think(&thinking, out);
        if !answer.is_empty() {
            self.close_reasoning(out);
        }
        let t = answer.as_str();
        let pieces = match self.parser.as_mut() {
            None => vec![Piece::Text(t.to_string())],
            Some(p) => {
                let mut v = p.push(t);
                if last {
                    v.extend(p.finish());
                }
                v
            }
        };
        for piece in pieces {
            match piece {
                Piece::Text(s) => self.text(&s, out),
                Piece::Call(c) => self.call(c, out),
            }
        }
    }
}

pub fn response(st: AppState, p: Parsed, s: Started) -> Response {
    let every = st.cfg.stream_keepalive;
    let parser = s.tools.map(|f| ToolParser::new(f, new_id("call")));
    let handle = s.handle.clone();
    let mut em = Emitter {
        seq: 0,
        id: s.id,
        model: s.model,
        p,
        parser,
        think: s.think.map(|t| t.parser()),
        reasoning: None,
        thinking: String::new(),
        message: None,
        output: Vec::new(),
        text: String::new(),
        calls: Vec::new(),
    };
    let created = em.snapshot("in_progress", Vec::new(), None);
    let head = vec![
        em.ev("response.created", json!({"response": created.clone()})),
        em.ev("response.in_progress", json!({"response": created})),
    ];
    let rest = stream::unfold(Some((s.job, em, st, handle)), |state| async move {
        let (mut job, mut em, st, handle) = state?;
        let mut out = Vec::new();
        match job.next().await? {
            Event::Token(t) => {
                em.push(&t.text, false, &mut out);
                Some((out, Some((job, em, st, handle))))
            }
            Event::Done(f) => {
                if let Some(e) = failure(&f) {
                    let e = crate::generation::failed_error(e);
                    let code = if e.status.is_client_error() {
                        "invalid_prompt"
                    } else {
                        "server_error"
                    };
                    let mut r = em.snapshot("failed", Vec::new(), None);
                    r["error"] = json!({"code": code, "message": e.message});
                    out.push(em.ev("response.failed", json!({"response": r})));
                    return Some((out, None));
                }
                em.push(&f.text, true, &mut out);
                em.close_reasoning(&mut out);
                em.close_message(&mut out);
                let status = if f.reason == FinishReason::Length {
                    "incomplete"
                } else {
                    "completed"
                };
                let mut r = em.snapshot(status, em.output.clone(), Some(&f.stats));
                count_reasoning(&mut r, &handle, &em.thinking);
                if em.p.store {
                    let conv = ended(
                        std::mem::take(&mut em.p.conversation),
                        &em.text,
                        std::mem::take(&mut em.calls),
                    );
                    if let Err(e) = st.responses.put(&em.id, &conv, &r) {
                        tracing::error!("storing a response: {}", e.message);
                    }
                }
                let ty = if status == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                out.push(em.ev(ty, json!({"response": r})));
                Some((out, None))
            }
        }
    })
    .flat_map(stream::iter);
    let all = stream::iter(head).chain(rest).map(Ok::<_, Infallible>);
    crate::generation::sse(all, every)
}
