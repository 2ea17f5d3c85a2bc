//! `POST /api/chat`: messages through the model's chat template, NDJSON by default or one object with
//! `stream: false`. No messages loads the model (`done_reason: "load"`), or with `keep_alive: 0` unloads it.
//! `tools` are offered as in OpenAI's API (Ollama has no `tool_choice`: the model decides, and a call it starts
//! is held to its tool's schema); calls come back in `message.tool_calls` with the arguments as an object, and
//! `tool` messages (`tool_name`) carry the results in.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lar_engine::{Finished, Request};
use lar_grammar::reasoning::ThinkParser;
use lar_grammar::tools::{Piece, ToolChoice, ToolParser};
use lar_types::{ChatMessage, Role, ToolCall};
use serde::Deserialize;
use serde_json::{Value, json};

use super::logprobs::{self, Logprobs};
use super::{
    Lines, Options, done_reason, err, final_fields, keep_alive, load_or_unload, ndjson,
    now_rfc3339, whole,
};
use crate::AppState;
use crate::body::{check_fields, typed, typed_value};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::Generation;
use crate::http::JsonBody;
use crate::kb::Caller;
use crate::kb::ground::KbModel;
use crate::manager::Wait;
use crate::structured::Offer;

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "options",
    "keep_alive",
    "format",
    "tools",
    "think",
    "logprobs",
    "top_logprobs",
];

#[derive(Deserialize)]
struct Req {
    model: String,
    #[serde(default)]
    messages: Vec<Value>,
    stream: Option<bool>,
    think: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Option<Vec<String>>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
}

fn messages(raw: Vec<Value>) -> ApiResult<Vec<ChatMessage>> {
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let m: InMessage = typed_value(v).map_err(|mut e| {
                e.message = format!("messages[{i}]: {}", e.message);
                e
            })?;
            let role = match m.role.as_str() {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "tool" => Role::Tool,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}]: unknown role '{other}' (system, user, assistant, tool)"
                    )));
                }
            };
            if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}]: this model reads text only; it cannot take images"
                )));
            }
            let calls = match m.tool_calls.as_ref().filter(|t| !t.is_null()) {
                Some(v) if role == Role::Assistant => calls_in(v, i)?,
                Some(_) => {
                    return Err(ApiError::field(
                        "tool_calls",
                        format!("messages[{i}]: only assistant messages carry tool calls"),
                    ));
                }
                None => Vec::new(),
            };
            let _ = &m.thinking;
            let mut msg = ChatMessage::new(role, m.content);
            msg.name = m.tool_name.filter(|_| role == Role::Tool);
            msg.tool_calls = calls;
            Ok(msg)
        })
        .collect()
}

/// An assistant message's `tool_calls`: `[{"function": {"name": ..., "arguments": {...}}}]`.
fn calls_in(v: &Value, i: usize) -> ApiResult<Vec<ToolCall>> {
    let at = format!("messages[{i}].tool_calls");
    let bad = |why: String| ApiError::field("tool_calls", format!("{at}{why}"));
    let a = v
        .as_array()
        .ok_or_else(|| bad(" must be an array".into()))?;
    a.iter()
        .enumerate()
        .map(|(j, c)| {
            let f = c.get("function");
            let name = f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("[{j}] needs function.name")))?;
            let arguments = match f.and_then(|f| f.get("arguments")) {
                None | Some(Value::Null) => json!({}),
                Some(o @ Value::Object(_)) => o.clone(),
                Some(Value::String(s)) => serde_json::from_str(s)
                    .map_err(|e| bad(format!("[{j}].function.arguments is not JSON: {e}")))?,
                Some(_) => return Err(bad(format!("[{j}].function.arguments must be an object"))),
            };
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}_{j}"), str::to_string);
            Ok(ToolCall {
                id,
                name: name.to_string(),
                arguments,
            })
        })
        .collect()
}

pub async fn handle(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(obj): JsonBody,
) -> Response {
    match run(st, caller, obj).await {
        Ok(r) => r,
        Err(e) => err(e).into_response(),
    }
}

async fn run(
    st: AppState,
    caller: Caller,
    obj: serde_json::Map<String, Value>,
) -> ApiResult<Response> {
    let started = Instant::now();
    check_fields(&obj, &[FIELDS])?;
    let constraint = crate::structured::ollama_format(obj.get("format"))?;
    let tool_spec = crate::openai::tools::spec(&obj)?;
    if tool_spec.is_some() && constraint.is_some() {
        return Err(ApiError::unsupported(
            "format",
            "together with tools yet (ask for one or the other)",
        ));
    }
    let r: Req = typed(&obj)?;
    let opts = Options::parse(&obj)?;
    let ask = logprobs::requested(&obj)?;
    let ka = keep_alive(&obj)?;
    let mut msgs = messages(r.messages)?;
    let load = LoadOptions { ctx: opts.ctx()? };
    let kb = KbModel::parse(&st, &r.model)?;
    if kb.is_some() && (tool_spec.is_some() || constraint.is_some()) {
        let f = if tool_spec.is_some() {
            "tools"
        } else {
            "format"
        };
        return Err(ApiError::unsupported(f, "with a knowledge-base model yet"));
    }
    if msgs.is_empty() && kb.is_none() {
        let reason = load_or_unload(&st, &r.model, &load, ka).await?;
        return Ok(axum::Json(json!({
            "model": r.model,
            "created_at": now_rfc3339(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": reason,
            "done": true,
        }))
        .into_response());
    }
    let chat_model = kb.as_ref().map_or(&r.model, |k| &k.model);
    let lease = Arc::new(st.manager.get(chat_model, &load, ka, Wait::Yes).await?);
    let mut constraint = constraint;
    let mut sources = None;
    if let Some(k) = &kb {
        let g = k
            .ground(&st, &caller, &lease, msgs, opts.answer_tokens())
            .await?;
        sources = Some(g.sources_json());
        constraint = g.forced;
        msgs = g.messages;
    }
    let offer = match tool_spec {
        Some(t) => Offer {
            tools: t.tools,
            choice: ToolChoice::Auto,
            parallel: t.parallel,
            format: None,
            param: "tools",
            thinking: None,
            split_thinking: true,
        },
        None => Offer::format(constraint, "format"),
    };
    let offer = Offer {
        thinking: r.think.map(|t| (t, "think")),
        split_thinking: true,
        ..offer
    };
    let prep = crate::structured::prepare(&lease, msgs, offer).await?;
    let mut params = opts.params(prep.prompt.len(), lease.model.ctx)?;
    logprobs::apply(ask, &mut params);
    let lines = ChatLines {
        logprobs: match ask {
            Some(_) => Some(Logprobs::new(crate::generation::engine(&lease)?.clone())),
            None => None,
        },
        model: if kb.is_some() {
            r.model.clone()
        } else {
            lease.name()
        },
        sources,
        started,
        // The load's time when this request waited for it, as Ollama reports it; nothing once loaded.
        load_secs: if lease.waited_for_load {
            lease.model.load_secs
        } else {
            0.0
        },
        parser: prep
            .tools
            .map(|f| ToolParser::new(f, crate::openai::new_id("call"))),
        calls: Vec::new(),
        think: prep.think.map(|t| t.parser()),
        said: String::new(),
    };
    let mut req = Request::new(prep.prompt.clone(), params);
    if let Some(c) = &prep.constrained {
        req.processors.push(c.mask());
    }
    let mut job = Generation::start(lease, &st, req)?;
    prep.reveal(&mut job);
    if r.stream.unwrap_or(true) {
        Ok(ndjson(job, lines))
    } else {
        whole(job, lines).await
    }
}

struct ChatLines {
    model: String,
    /// A knowledge-base model's numbered sources, on the last line.
    sources: Option<Value>,
    started: Instant,
    load_secs: f64,
    /// When tools were offered: the calls' parser, and the calls found in this line's text.
    parser: Option<ToolParser>,
    calls: Vec<ToolCall>,
    /// A reasoning model's thinking goes to `message.thinking`.
    think: Option<ThinkParser>,
    /// The answer's text so far (for the sources it cites).
    said: String,
    logprobs: Option<Logprobs>,
}

impl ChatLines {
    /// The message of a line: the text to show and, when tools were offered, the calls completed in it.
    fn message(&mut self, text: &str, last: bool) -> Option<Value> {
        let (thinking, text) = match self.think.as_mut() {
            Some(tp) => tp.take(text, last),
            None => (String::new(), text.to_string()),
        };
        let with_thinking = |mut m: Value| {
            if !thinking.is_empty() {
                m["thinking"] = json!(thinking);
            }
            m
        };
        let Some(p) = self.parser.as_mut() else {
            self.said.push_str(&text);
            if text.is_empty() && thinking.is_empty() && !last {
                return None;
            }
            return Some(with_thinking(json!({"role": "assistant", "content": text})));
        };
        let mut pieces = p.push(&text);
        if last {
            pieces.extend(p.finish());
        }
        let mut content = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => content.push_str(&t),
                Piece::Call(c) => self.calls.push(c),
            }
        }
        if content.is_empty() && self.calls.is_empty() && thinking.is_empty() && !last {
            return None;
        }
        let mut m = json!({"role": "assistant", "content": content});
        if !self.calls.is_empty() {
            m["tool_calls"] = std::mem::take(&mut self.calls)
                .iter()
                .map(
                    |c| json!({"id": c.id, "function": {"name": c.name, "arguments": c.arguments}}),
                )
                .collect();
        }
        Some(with_thinking(m))
    }
}

impl Lines for ChatLines {
    fn logprobs(&mut self) -> Option<&mut Logprobs> {
        self.logprobs.as_mut()
    }

    fn piece(&mut self, text: &str) -> Option<Value> {
        let message = self.message(text, false)?;
        Some(json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": message,
            "done": false,
        }))
    }

    fn done(&mut self, text: &str, f: &Finished) -> Value {
        let message = self
            .message(text, true)
            .unwrap_or_else(|| json!({"role": "assistant", "content": ""}));
        let mut l = json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": message,
            "done_reason": done_reason(f.reason),
            "done": true,
        });
        final_fields(&mut l, &f.stats, self.started, self.load_secs);
        if let Some(s) = self.sources.take() {
            l["cited"] = serde_json::json!(crate::kb::ground::cited_in(&self.said, &s));
            l["sources"] = s;
        }
        l
    }
}
