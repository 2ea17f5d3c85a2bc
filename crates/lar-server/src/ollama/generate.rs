//! `POST /api/generate`: a prompt (with an optional `system`) through the model's chat template, or with
//! `raw: true` as it is (control tokens parsed, as Ollama and llama.cpp do); `context` continues an earlier
//! answer, and the final line gives the new `context`. An empty prompt loads the model, or with `keep_alive: 0`
//! unloads it. A reasoning model's thinking goes to `thinking` (`think` renders the template's `enable_thinking`;
//! a raw prompt cannot ask to think).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lar_engine::{Finished, Request};
use lar_grammar::reasoning::ThinkParser;
use lar_types::{ChatMessage, Role};
use serde::Deserialize;
use serde_json::{Value, json};

use super::logprobs::{self, Logprobs};
use super::{
    Lines, Options, done_reason, err, final_fields, keep_alive, load_or_unload, ndjson,
    now_rfc3339, whole,
};
use crate::AppState;
use crate::body::{check_fields, refuse, typed};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, engine};
use crate::http::JsonBody;
use crate::manager::Wait;

const FIELDS: &[&str] = &[
    "model",
    "prompt",
    "suffix",
    "system",
    "template",
    "context",
    "stream",
    "raw",
    "format",
    "images",
    "options",
    "keep_alive",
    "think",
    "logprobs",
    "top_logprobs",
];

#[derive(Deserialize)]
struct Req {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    context: Vec<u32>,
    stream: Option<bool>,
    raw: Option<bool>,
    images: Option<Vec<String>>,
    think: Option<bool>,
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
    let constraint = crate::structured::ollama_format(obj.get("format"))?;
    refuse(
        &obj,
        &["suffix"],
        "(fill-in-the-middle needs the model's FIM tokens; send a raw prompt)",
    )?;
    if obj
        .get("template")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        return Err(ApiError::unsupported(
            "template",
            "(Lar renders the model's own Jinja template; send raw: true with the prompt already formatted)",
        ));
    }
    let r: Req = typed(&obj)?;
    if r.images.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(
            ApiError::bad_request("this model reads text only; it cannot take images")
                .param("images"),
        );
    }
    let opts = Options::parse(&obj)?;
    let ask = logprobs::requested(&obj)?;
    let ka = keep_alive(&obj)?;
    let load = LoadOptions { ctx: opts.ctx()? };
    if r.prompt.is_empty() && r.context.is_empty() {
        let reason = load_or_unload(&st, &r.model, &load, ka).await?;
        return Ok(axum::Json(json!({
            "model": r.model,
            "created_at": now_rfc3339(),
            "response": "",
            "done_reason": reason,
            "done": true,
        }))
        .into_response());
    }
    let lease = Arc::new(st.manager.get(&r.model, &load, ka, Wait::Yes).await?);
    let h = engine(&lease)?;
    let tok = h.tokenizer();
    let mut prompt = r.context.clone();
    let raw = r.raw.unwrap_or(false) || h.model().template.is_none();
    if raw && r.system.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported(
            "system",
            "with a raw prompt (raw: true, or a model without a chat template): put it in the prompt",
        ));
    }
    let (grammar, think) = if raw {
        if r.think == Some(true) {
            return Err(ApiError::unsupported(
                "think",
                "with a raw prompt (the template that opens the thinking is not used)",
            ));
        }
        prompt.extend(tok.encode(&r.prompt, r.context.is_empty(), true));
        (
            crate::structured::compile(&lease, constraint, "format").await?,
            None,
        )
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = r.system.filter(|s| !s.is_empty()) {
            msgs.push(ChatMessage::new(Role::System, s));
        }
        msgs.push(ChatMessage::new(Role::User, r.prompt));
        let offer = crate::structured::Offer {
            thinking: r.think.map(|t| (t, "think")),
            split_thinking: true,
            ..crate::structured::Offer::format(constraint, "format")
        };
        let prep = crate::structured::prepare(&lease, msgs, offer).await?;
        prompt.extend_from_slice(&prep.prompt);
        (prep.constrained, prep.think.map(|t| t.parser()))
    };
    let mut params = opts.params(prompt.len(), lease.model.ctx)?;
    logprobs::apply(ask, &mut params);
    let lines = GenLines {
        logprobs: ask.map(|_| Logprobs::new(h.clone())),
        model: lease.name(),
        started,
        // The load's time when this request waited for it, as Ollama reports it; nothing once loaded.
        load_secs: if lease.waited_for_load {
            lease.model.load_secs
        } else {
            0.0
        },
        context: prompt.clone(),
        think,
    };
    let mut req = Request::new(prompt, params);
    if let Some(c) = &grammar {
        req.processors.push(c.mask());
    }
    let job = Generation::start(lease, &st, req)?;
    if r.stream.unwrap_or(true) {
        Ok(ndjson(job, lines))
    } else {
        whole(job, lines).await
    }
}

struct GenLines {
    model: String,
    started: Instant,
    load_secs: f64,
    /// Prompt tokens, then the answer's as they come: the final line's `context`.
    context: Vec<u32>,
    /// A reasoning model's thinking goes to `thinking`.
    think: Option<ThinkParser>,
    logprobs: Option<Logprobs>,
}

impl GenLines {
    /// (answer, thinking) of a piece of text.
    fn split(&mut self, text: &str, last: bool) -> (String, String) {
        match self.think.as_mut() {
            Some(tp) => {
                let (thinking, answer) = tp.take(text, last);
                (answer, thinking)
            }
            None => (text.to_string(), String::new()),
        }
    }
}

impl Lines for GenLines {
    fn logprobs(&mut self) -> Option<&mut Logprobs> {
        self.logprobs.as_mut()
    }

    fn seen(&mut self, token: u32) {
        self.context.push(token);
    }

    fn piece(&mut self, text: &str) -> Option<Value> {
        let (answer, thinking) = self.split(text, false);
        if answer.is_empty() && thinking.is_empty() {
            return None;
        }
        let mut l = json!({"model": self.model, "created_at": now_rfc3339(), "response": answer, "done": false});
        if !thinking.is_empty() {
            l["thinking"] = json!(thinking);
        }
        Some(l)
    }

    fn done(&mut self, text: &str, f: &Finished) -> Value {
        let (answer, thinking) = self.split(text, true);
        let mut l = json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "response": answer,
            "done": true,
            "done_reason": done_reason(f.reason),
            "context": self.context,
        });
        if !thinking.is_empty() {
            l["thinking"] = json!(thinking);
        }
        final_fields(&mut l, &f.stats, self.started, self.load_secs);
        l
    }
}
