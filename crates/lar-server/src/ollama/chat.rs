//! `POST /api/chat`: messages through the model's chat template, NDJSON by default or one object with
//! `stream: false`. No messages loads the model (`done_reason: "load"`), or with `keep_alive: 0` unloads it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lar_engine::{Finished, Request};
use lar_types::{ChatMessage, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Lines, Options, done_reason, err, final_fields, keep_alive, load_or_unload, ndjson,
    now_rfc3339, whole,
};
use crate::AppState;
use crate::body::{check_fields, refuse, typed, typed_value};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, engine};
use crate::http::JsonBody;
use crate::manager::Wait;

const FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "options",
    "keep_alive",
    "format",
    "tools",
    "think",
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
            if m.tool_calls.as_ref().is_some_and(|t| !t.is_null()) {
                return Err(ApiError::unsupported(
                    "tool_calls",
                    "yet (tool calling comes with constrained decoding)",
                ));
            }
            let _ = (&m.thinking, &m.tool_name);
            Ok(ChatMessage::new(role, m.content))
        })
        .collect()
}

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> Response {
    match run(st, obj).await {
        Ok(r) => r,
        Err(e) => err(e).into_response(),
    }
}

async fn run(st: AppState, obj: serde_json::Map<String, Value>) -> ApiResult<Response> {
    let started = Instant::now();
    check_fields(&obj, &[FIELDS])?;
    refuse(
        &obj,
        &["format"],
        "yet (JSON output comes with constrained decoding)",
    )?;
    if obj
        .get("tools")
        .is_some_and(|t| !(t.is_null() || t.as_array().is_some_and(|a| a.is_empty())))
    {
        return Err(ApiError::unsupported(
            "tools",
            "yet (tool calling comes with constrained decoding)",
        ));
    }
    let r: Req = typed(&obj)?;
    if r.think == Some(true) {
        return Err(ApiError::bad_request(format!(
            "'{}' does not support thinking",
            r.model
        )));
    }
    let opts = Options::parse(&obj)?;
    let ka = keep_alive(&obj)?;
    let msgs = messages(r.messages)?;
    let load = LoadOptions { ctx: opts.ctx()? };
    if msgs.is_empty() {
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
    let lease = Arc::new(st.manager.get(&r.model, &load, ka, Wait::Yes).await?);
    let h = engine(&lease)?;
    let prompt = h.chat_tokens(&msgs, None)?;
    let params = opts.params(prompt.len(), lease.model.ctx)?;
    let lines = ChatLines {
        model: lease.model.entry.name.clone(),
        started,
        load_secs: lease.model.load_secs,
    };
    let job = Generation::start(lease, &st, Request::new(prompt, params))?;
    if r.stream.unwrap_or(true) {
        Ok(ndjson(job, lines))
    } else {
        whole(job, lines).await
    }
}

struct ChatLines {
    model: String,
    started: Instant,
    load_secs: f64,
}

impl Lines for ChatLines {
    fn piece(&mut self, text: &str) -> Value {
        json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": {"role": "assistant", "content": text},
            "done": false,
        })
    }

    fn done(&mut self, text: &str, f: &Finished) -> Value {
        let mut l = json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "message": {"role": "assistant", "content": text},
            "done_reason": done_reason(f.reason),
            "done": true,
        });
        final_fields(&mut l, &f.stats, self.started, self.load_secs);
        l
    }
}
