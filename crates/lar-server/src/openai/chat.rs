//! `POST /v1/chat/completions`: messages (string or array-of-parts content) rendered with the model's chat
//! template, `n` choices, logprobs, and the answer as one JSON object or as SSE chunks (`stream_options.
//! include_usage`: every chunk carries `usage: null`, then one chunk with no choices and the usage, then `[DONE]`).
//! Tool calls and response formats come with constrained decoding; until then they are refused, not ignored.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use lar_engine::Event;
use lar_types::{ChatMessage, Role, TokenEvent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DESCRIPTIVE_FIELDS, SAMPLING_FIELDS, Sampling, Usage, finish_reason, new_id, start_choices,
};
use crate::AppState;
use crate::body::{check_fields, refuse, typed, typed_value};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, KEEP_ALIVE_EVERY, engine, failure};
use crate::http::{JsonBody, unix_now};
use crate::manager::Wait;

const FIELDS: &[&str] = &["messages", "logprobs", "top_logprobs", "response_format"];
/// Fields of OpenAI's API that need constrained decoding or other modalities.
const LATER: &[&str] = &[
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
    "reasoning_effort",
    "web_search_options",
];

#[derive(Deserialize)]
struct Extra {
    messages: Vec<Value>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    refusal: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

/// The conversation as the engine's messages.
fn messages(raw: Vec<Value>) -> ApiResult<Vec<ChatMessage>> {
    if raw.is_empty() {
        return Err(ApiError::field("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, v) in raw.into_iter().enumerate() {
        let at = |f: &str| format!("messages[{i}].{f}");
        let m: InMessage = typed_value(v).map_err(|e| {
            let msg = e.message.clone();
            ApiError::field(&format!("messages[{i}]"), format!("messages[{i}]: {msg}"))
        })?;
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::field(
                    &at("role"),
                    format!(
                        "{}: unknown role '{other}' (system, developer, user, assistant, tool)",
                        at("role")
                    ),
                ));
            }
        };
        if m.tool_calls.as_ref().is_some_and(|t| !t.is_null()) {
            return Err(ApiError::unsupported(
                &at("tool_calls"),
                "yet (tool calling comes with constrained decoding)",
            ));
        }
        let _ = (&m.name, &m.refusal);
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut texts = Vec::new();
                for (j, p) in parts.into_iter().enumerate() {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => texts.push(t),
                        ("text", None) => {
                            return Err(ApiError::field(
                                &format!("messages[{i}].content[{j}].text"),
                                format!("messages[{i}].content[{j}] is a text part without text"),
                            ));
                        }
                        (kind, _) => {
                            return Err(ApiError::field(
                                &format!("messages[{i}].content[{j}].type"),
                                format!(
                                    "messages[{i}].content[{j}]: this model reads text only, not '{kind}'"
                                ),
                            ));
                        }
                    }
                }
                texts.join("\n")
            }
        };
        let mut msg = ChatMessage::new(role, content);
        msg.tool_call_id = m.tool_call_id;
        out.push(msg);
    }
    Ok(out)
}

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Response> {
    check_fields(&obj, &[SAMPLING_FIELDS, FIELDS, LATER, DESCRIPTIVE_FIELDS])?;
    refuse(
        &obj,
        LATER,
        "yet (tools and structured output come with constrained decoding)",
    )?;
    if let Some(rf) = obj.get("response_format").filter(|v| !v.is_null())
        && rf.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(ApiError::unsupported(
            "response_format",
            "yet beyond {\"type\": \"text\"} (JSON output comes with constrained decoding)",
        ));
    }
    let s: Sampling = typed(&obj)?;
    let x: Extra = typed(&obj)?;
    let n = s.n()?;
    let msgs = messages(x.messages)?;
    let top = match (x.logprobs.unwrap_or(false), x.top_logprobs) {
        (false, Some(k)) if k > 0 => {
            return Err(ApiError::field(
                "top_logprobs",
                "top_logprobs needs logprobs: true",
            ));
        }
        (_, Some(k)) => crate::body::count("top_logprobs", k, 0)?,
        _ => 0,
    };
    let want_logprobs = x.logprobs.unwrap_or(false);
    let lease = Arc::new(
        st.manager
            .get(&s.model, &LoadOptions::default(), None, Wait::No)
            .await?,
    );
    let h = engine(&lease)?.clone();
    // Rendering and tokenizing a long conversation is real work: off the async threads.
    let h2 = h.clone();
    let prompt = tokio::task::spawn_blocking(move || h2.chat_tokens(&msgs, None))
        .await
        .map_err(ApiError::internal)??;
    let params = s.params(prompt.len(), lease.model.ctx, top)?;
    let mut gens = Vec::with_capacity(n);
    start_choices(&st, &lease, &mut gens, &prompt, &params, n, None)?;
    let meta = Meta {
        id: new_id("chatcmpl"),
        created: unix_now(),
        model: lease.model.entry.name.clone(),
        logprobs: want_logprobs,
        tokenizer: h,
    };
    if s.stream() {
        return Ok(stream_response(meta, gens, s.include_usage()).into_response());
    }
    let done = futures_util::future::join_all(gens.into_iter().map(|g| g.collect())).await;
    let done: Vec<_> = done.into_iter().collect::<ApiResult<_>>()?;
    let stats: Vec<_> = done
        .iter()
        .map(|c| Some(c.finished.stats.clone()))
        .collect();
    let usage = Usage::of(&stats, n);
    let mut choices = Vec::with_capacity(n);
    for (i, c) in done.into_iter().enumerate() {
        choices.push(json!({
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": meta.logprobs.then(|| json!({"content": logprobs(&meta, &c.tokens)})),
            "finish_reason": finish_reason(c.finished.reason),
        }));
    }
    Ok(axum::Json(json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": fingerprint(),
        "choices": choices,
        "usage": usage.json(),
    }))
    .into_response())
}

/// What every chunk of a response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    tokenizer: lar_engine::EngineHandle,
}

pub fn fingerprint() -> String {
    format!("lar-{}", env!("CARGO_PKG_VERSION"))
}

/// OpenAI's logprobs content: each token with its bytes and alternatives.
fn logprobs(meta: &Meta, tokens: &[TokenEvent]) -> Vec<Value> {
    let tok = meta.tokenizer.tokenizer();
    let entry = |id: u32, lp: f32| {
        let text = tok.decode(&[id], false);
        json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
    };
    tokens
        .iter()
        .map(|t| {
            let mut e = entry(t.token, t.logprob);
            e["top_logprobs"] = t
                .top_logprobs
                .iter()
                .map(|a| entry(a.token, a.logprob))
                .collect();
            e
        })
        .collect()
}

fn chunk(meta: &Meta, choices: Value, usage: Option<Value>, with_usage: bool) -> SseEvent {
    let mut c = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": fingerprint(),
        "choices": choices,
    });
    if with_usage {
        c["usage"] = usage.unwrap_or(Value::Null);
    }
    SseEvent::default().data(c.to_string())
}

/// The SSE answer: the choices' chunks as they come (merged when `n > 1`), then the usage chunk and `[DONE]`.
fn stream_response(
    meta: Meta,
    gens: Vec<Generation>,
    with_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let meta = Arc::new(meta);
    let n = gens.len();
    let usage = Arc::new(Mutex::new(vec![None; n]));
    let failed = Arc::new(Mutex::new(None::<String>));
    let per_choice = gens.into_iter().enumerate().map(|(i, g)| {
        choice_stream(
            meta.clone(),
            i,
            g,
            with_usage,
            usage.clone(),
            failed.clone(),
        )
        .boxed()
    });
    let per_choice: Vec<_> = per_choice.collect();
    let body = stream::select_all(per_choice);
    let tail_meta = meta.clone();
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            out.push(SseEvent::default().data(ApiError::internal(e).body().to_string()));
            return out;
        }
        if with_usage {
            let u = Usage::of(&usage.lock().unwrap_or_else(|p| p.into_inner()), n);
            out.push(chunk(&tail_meta, json!([]), Some(u.json()), true));
        }
        out.push(SseEvent::default().data("[DONE]"));
        out
    })
    .flat_map(stream::iter);
    Sse::new(body.chain(tail).map(Ok)).keep_alive(
        KeepAlive::new()
            .interval(KEEP_ALIVE_EVERY)
            .text("keep-alive"),
    )
}

/// One choice's chunks: the role first, then a chunk per piece of text, then the finish reason.
fn choice_stream(
    meta: Arc<Meta>,
    index: usize,
    job: Generation,
    with_usage: bool,
    usage: Arc<Mutex<Vec<Option<lar_types::GenerationStats>>>>,
    failed: Arc<Mutex<Option<String>>>,
) -> impl Stream<Item = SseEvent> {
    let first = chunk(
        &meta,
        json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        None,
        with_usage,
    );
    let rest = stream::unfold(Some(job), move |g| {
        let (meta, usage, failed) = (meta.clone(), usage.clone(), failed.clone());
        async move {
            let mut g = g?;
            match g.next().await? {
                Event::Token(t) => {
                    if t.text.is_empty() && !meta.logprobs {
                        // Nothing to show yet (an incomplete character, a possible stop string).
                        return Some((None, Some(g)));
                    }
                    let lp = meta
                        .logprobs
                        .then(|| json!({"content": logprobs(&meta, std::slice::from_ref(&t))}));
                    let c = chunk(
                        &meta,
                        json!([{"index": index, "delta": {"content": t.text}, "logprobs": lp, "finish_reason": null}]),
                        None,
                        with_usage,
                    );
                    Some((Some(c), Some(g)))
                }
                Event::Done(f) => {
                    if let Some(e) = failure(&f) {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Some((None, None));
                    }
                    usage.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(f.stats.clone());
                    let delta = if f.text.is_empty() {
                        json!({})
                    } else {
                        json!({"content": f.text})
                    };
                    let c = chunk(
                        &meta,
                        json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason(f.reason)}]),
                        None,
                        with_usage,
                    );
                    Some((Some(c), None))
                }
            }
        }
    })
    .filter_map(|c| async move { c });
    stream::once(async move { first }).chain(rest)
}
