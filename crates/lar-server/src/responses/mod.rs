//! OpenAI's Responses API, as Codex and the `openai` SDK's `responses.create` use it: `POST /v1/responses` with
//! `input` as text or items (messages, `function_call`, `function_call_output`), `instructions`, function
//! `tools`, `tool_choice`, `text.format` (a JSON schema), `max_output_tokens`, `previous_response_id` (the
//! conversation a stored response ended is continued), `store`, `reasoning.effort` (a reasoning model's thinking
//! is a `reasoning` item before the answer, its text in `content` as `reasoning_text`; `none` asks it to answer at
//! once); the answer whole or as its event stream ([`stream`]). `GET` and `DELETE /v1/responses/{id}` read and
//! remove a stored one ([`store`]).
//!
//! Reasoning items a client sends back (Codex does) are accepted and left out of the prompt, as reasoning models'
//! templates leave out earlier thinking; there is nothing to encrypt, so `include: ["reasoning.encrypted_content"]`
//! is accepted and the items carry none.

pub mod store;
pub mod stream;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use lar_engine::Request;
use lar_grammar::tools::{ToolChoice, ToolFormat};
use lar_types::{ChatMessage, FinishReason, GenerationStats, Role, Tool, ToolCall};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{check_fields, kind, opt_bool, opt_f64, opt_i64};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::Generation;
use crate::http::{JsonBody, unix_now};
use crate::manager::Wait;
use crate::openai::{Sampling, new_id};

const FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "store",
    "previous_response_id",
    "text",
    "metadata",
    "user",
    "truncation",
    "reasoning",
    "include",
    "background",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

/// A Responses request in the engine's terms, and what its answer repeats.
pub struct Parsed {
    pub model: String,
    /// The conversation without the instructions (what a later request continues).
    pub conversation: Vec<ChatMessage>,
    pub instructions: Option<String>,
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub format: Option<lar_grammar::Constraint>,
    pub sampling: Sampling,
    pub store: bool,
    /// `reasoning.effort`: think (`Some(true)`), answer at once, or the model's default.
    pub thinking: Option<bool>,
    /// The request's settings as the response object echoes them.
    pub echo: Map<String, Value>,
}

fn field(at: &str, msg: impl Into<String>) -> ApiError {
    ApiError::field(at, msg)
}

fn text_of(content: &Value, at: &str) -> ApiResult<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => {
                        out.push(t.to_string())
                    }
                    (Some("refusal"), _) => {}
                    (ty, _) => {
                        return Err(field(
                            &format!("{at}[{j}]"),
                            format!("{at}[{j}]: this model reads text only, not {ty:?}"),
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        v => Err(field(
            at,
            format!("{at} must be text or content parts, not {}", kind(v)),
        )),
    }
}

/// `input` items appended to `conv` (which may hold a stored conversation, whose calls results may answer).
fn read_input(input: &Value, conv: &mut Vec<ChatMessage>) -> ApiResult<()> {
    let items = match input {
        Value::String(s) => {
            conv.push(ChatMessage::new(Role::User, s.clone()));
            return Ok(());
        }
        Value::Array(a) => a,
        v => {
            return Err(field(
                "input",
                format!("input must be text or an array of items, not {}", kind(v)),
            ));
        }
    };
    for (i, it) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        let ty = it.get("type").and_then(Value::as_str).unwrap_or("message");
        match ty {
            "message" => {
                let role = match it.get("role").and_then(Value::as_str) {
                    Some("user") => Role::User,
                    Some("assistant") => Role::Assistant,
                    Some("system" | "developer") => Role::System,
                    other => {
                        return Err(field(
                            &format!("{at}.role"),
                            format!("{at}.role: unknown role {other:?}"),
                        ));
                    }
                };
                let text = text_of(
                    it.get("content").unwrap_or(&Value::Null),
                    &format!("{at}.content"),
                )?;
                conv.push(ChatMessage::new(role, text));
            }
            "function_call" => {
                let (Some(id), Some(name)) = (
                    it.get("call_id").and_then(Value::as_str),
                    it.get("name").and_then(Value::as_str),
                ) else {
                    return Err(field(
                        &at,
                        format!("{at}: a function_call needs a call_id and a name"),
                    ));
                };
                let arguments = match it.get("arguments") {
                    Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                        field(
                            &format!("{at}.arguments"),
                            format!("{at}.arguments is not JSON: {e}"),
                        )
                    })?,
                    _ => {
                        return Err(field(
                            &format!("{at}.arguments"),
                            format!("{at}.arguments must be a JSON string"),
                        ));
                    }
                };
                let call = ToolCall {
                    id: id.into(),
                    name: name.into(),
                    arguments,
                };
                match conv.last_mut() {
                    Some(m) if m.role == Role::Assistant => m.tool_calls.push(call),
                    _ => {
                        let mut m = ChatMessage::new(Role::Assistant, "");
                        m.tool_calls.push(call);
                        conv.push(m);
                    }
                }
            }
            "function_call_output" => {
                let id = it.get("call_id").and_then(Value::as_str).ok_or_else(|| {
                    field(
                        &at,
                        format!("{at}: a function_call_output needs the call_id it answers"),
                    )
                })?;
                let name = conv
                    .iter()
                    .flat_map(|m| &m.tool_calls)
                    .find(|c| c.id == id)
                    .map(|c| c.name.clone())
                    .ok_or_else(|| {
                        field(
                            &format!("{at}.call_id"),
                            format!("{at}: no function_call has the call_id '{id}'"),
                        )
                    })?;
                let output = text_of(
                    it.get("output").unwrap_or(&Value::Null),
                    &format!("{at}.output"),
                )?;
                let mut m = ChatMessage::new(Role::Tool, output);
                m.tool_call_id = Some(id.into());
                m.name = Some(name);
                conv.push(m);
            }
            // Earlier thinking: not rendered again (see the module's header).
            "reasoning" => {}
            other => {
                return Err(ApiError::unsupported(
                    &format!("{at}.type"),
                    &format!("for '{other}' items"),
                ));
            }
        }
    }
    Ok(())
}

fn read_tools(obj: &Map<String, Value>) -> ApiResult<(Vec<Tool>, ToolChoice, bool)> {
    let mut tools = Vec::new();
    if let Some(a) = obj.get("tools").filter(|v| !v.is_null()) {
        let a = a
            .as_array()
            .ok_or_else(|| field("tools", "tools must be an array"))?;
        for (i, t) in a.iter().enumerate() {
            let at = format!("tools[{i}]");
            let mut f = t
                .as_object()
                .cloned()
                .ok_or_else(|| field(&at, format!("{at} must be an object")))?;
            match f.remove("type").as_ref().and_then(Value::as_str) {
                Some("function") => {}
                other => {
                    return Err(ApiError::unsupported(
                        &format!("{at}.type"),
                        &format!("for {other:?} tools (only function tools run here)"),
                    ));
                }
            }
            tools.push(crate::openai::tools::function(&f, &at)?);
        }
    }
    let parallel = opt_bool(obj, "parallel_tool_calls")?.unwrap_or(true);
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            o => {
                return Err(field(
                    "tool_choice",
                    format!("tool_choice must be auto, none, required or a function (got '{o}')"),
                ));
            }
        },
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| field("tool_choice", "tool_choice names the function"))?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(field(
                    "tool_choice",
                    format!("tool_choice names '{name}', which is not among the tools"),
                ));
            }
            ToolChoice::Function(name.into())
        }
        Some(v) => {
            return Err(field(
                "tool_choice",
                format!("tool_choice must be a string or a function, not {v}"),
            ));
        }
    };
    Ok((tools, choice, parallel))
}

/// Reads a request; a stored conversation is continued from `store`.
pub fn parse(obj: &Map<String, Value>, st: &AppState) -> ApiResult<Parsed> {
    check_fields(obj, &[FIELDS])?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| field("model", "model is required"))?
        .to_string();
    if opt_bool(obj, "background")? == Some(true) {
        return Err(ApiError::unsupported(
            "background",
            "(answers come in the request, or streamed)",
        ));
    }
    for (i, v) in obj
        .get("include")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if v.as_str() != Some("reasoning.encrypted_content") {
            return Err(ApiError::unsupported(
                &format!("include[{i}]"),
                &format!(
                    "for {v} (only reasoning.encrypted_content, of which there is none, is known)"
                ),
            ));
        }
    }
    let thinking = match obj.get("reasoning").filter(|r| !r.is_null()) {
        None => None,
        Some(Value::Object(r)) => {
            if let Some(k) = r
                .keys()
                .find(|k| !matches!(k.as_str(), "effort" | "summary" | "generate_summary"))
            {
                return Err(field(
                    &format!("reasoning.{k}"),
                    format!("reasoning.{k} is not a field of reasoning (effort, summary)"),
                ));
            }
            crate::openai::chat::reasoning_effort(r.get("effort"), "reasoning.effort")?
        }
        Some(v) => {
            return Err(field(
                "reasoning",
                format!("reasoning must be an object, not {}", kind(v)),
            ));
        }
    };
    if let Some(t) = obj
        .get("truncation")
        .and_then(Value::as_str)
        .filter(|t| *t != "disabled")
    {
        return Err(ApiError::unsupported(
            "truncation",
            &format!("as '{t}' (a conversation that does not fit is a 400)"),
        ));
    }
    let mut conversation = Vec::new();
    if let Some(prev) = obj.get("previous_response_id").filter(|v| !v.is_null()) {
        let id = prev.as_str().ok_or_else(|| {
            field(
                "previous_response_id",
                "previous_response_id must be a string",
            )
        })?;
        let stored = st.responses.get(id)?.ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                format!("no stored response has the id '{id}'"),
            )
            .param("previous_response_id")
        })?;
        conversation = stored.messages;
    }
    read_input(
        obj.get("input")
            .ok_or_else(|| field("input", "input is required"))?,
        &mut conversation,
    )?;
    if conversation.is_empty() {
        return Err(field("input", "input has no message to answer"));
    }
    let instructions = match obj.get("instructions") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(field(
                "instructions",
                format!("instructions must be a string, not {}", kind(v)),
            ));
        }
    };
    let (tools, choice, parallel) = read_tools(obj)?;
    let format = match obj
        .get("text")
        .and_then(|t| t.get("format"))
        .filter(|f| !f.is_null())
    {
        None => None,
        Some(f) => {
            // The same formats as chat's response_format, with the schema's fields beside its type.
            let mut js = f
                .as_object()
                .cloned()
                .ok_or_else(|| field("text.format", "text.format must be an object"))?;
            let ty = js.remove("type");
            let rf = match ty.as_ref().and_then(Value::as_str) {
                Some("json_schema") => json!({"type": "json_schema", "json_schema": js}),
                _ => json!({"type": ty}),
            };
            crate::structured::response_format(Some(&rf)).map_err(|mut e| {
                e.param = Some("text.format".into());
                e
            })?
        }
    };
    if format.is_some() && !tools.is_empty() {
        return Err(ApiError::unsupported(
            "text.format",
            "together with tools yet (ask for one or the other)",
        ));
    }
    let num = |k: &str| opt_f64(obj, k).map(|v| v.map(|v| v as f32));
    let sampling = Sampling {
        model: model.clone(),
        stream: opt_bool(obj, "stream")?,
        max_tokens: opt_i64(obj, "max_output_tokens")?,
        temperature: num("temperature")?,
        top_p: num("top_p")?,
        ..Default::default()
    };
    let store = opt_bool(obj, "store")?.unwrap_or(true);
    let mut echo = Map::new();
    for k in [
        "instructions",
        "max_output_tokens",
        "temperature",
        "top_p",
        "tool_choice",
        "tools",
        "text",
        "metadata",
        "previous_response_id",
        "user",
        "reasoning",
    ] {
        echo.insert(k.into(), obj.get(k).cloned().unwrap_or(Value::Null));
    }
    echo.insert("parallel_tool_calls".into(), json!(parallel));
    Ok(Parsed {
        model,
        conversation,
        instructions,
        tools,
        choice,
        parallel,
        format,
        sampling,
        store,
        thinking,
        echo,
    })
}

/// The response object.
pub fn response_object(
    id: &str,
    model: &str,
    p: &Map<String, Value>,
    status: &str,
    output: Vec<Value>,
    stats: Option<&GenerationStats>,
    store: bool,
) -> Value {
    let mut r = json!({
        "id": id, "object": "response", "created_at": unix_now(), "status": status, "model": model,
        "output": output, "error": null,
        "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "store": store,
        "usage": stats.map(|s| json!({
            "input_tokens": s.prompt_tokens, "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens": s.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": s.prompt_tokens + s.completion_tokens})),
    });
    for (k, v) in p {
        r[k] = v.clone();
    }
    if r["tools"].is_null() {
        r["tools"] = json!([]);
    }
    if r["tool_choice"].is_null() {
        r["tool_choice"] = json!("auto");
    }
    if r["text"].is_null() {
        r["text"] = json!({"format": {"type": "text"}});
    }
    if r["metadata"].is_null() {
        r["metadata"] = json!({});
    }
    r
}

pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A reasoning model's thinking as an output item.
pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [], "status": "completed", "encrypted_content": null,
           "content": [{"type": "reasoning_text", "text": text}]})
}

/// Sets the usage's reasoning tokens of a response object: the thinking's text tokenized again.
pub fn count_reasoning(r: &mut Value, h: &lar_engine::EngineHandle, thinking: &str) {
    if !thinking.is_empty() && r["usage"].is_object() {
        r["usage"]["output_tokens_details"]["reasoning_tokens"] =
            json!(h.tokenizer().encode(thinking, false, false).len());
    }
}

pub fn call_item(c: &ToolCall, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{}", c.id), "call_id": c.id, "name": c.name,
           "arguments": c.arguments.to_string(), "status": status})
}

/// A generation's setup: the prompt and its constraint, for a parsed request.
pub struct Started {
    pub job: Generation,
    pub tools: Option<ToolFormat>,
    /// A reasoning model's markers: its thinking is a reasoning item.
    pub think: Option<crate::structured::Thinking>,
    pub handle: lar_engine::EngineHandle,
    pub id: String,
    pub model: String,
}

async fn start(st: &AppState, p: &Parsed) -> ApiResult<Started> {
    let lease = Arc::new(
        st.manager
            .get(&p.model, &LoadOptions::default(), None, Wait::No)
            .await?,
    );
    let mut msgs = Vec::with_capacity(p.conversation.len() + 1);
    if let Some(i) = &p.instructions {
        msgs.push(ChatMessage::new(Role::System, i.clone()));
    }
    msgs.extend(p.conversation.iter().cloned());
    let offer = crate::structured::Offer {
        tools: p.tools.clone(),
        choice: p.choice.clone(),
        parallel: p.parallel,
        format: p.format.clone(),
        param: "text.format",
        thinking: p.thinking.map(|t| (t, "reasoning.effort")),
        split_thinking: true,
    };
    let handle = crate::generation::engine(&lease)?.clone();
    let prep = crate::structured::prepare(&lease, msgs, offer).await?;
    let (ids, format) = (prep.prompt.clone(), prep.tools);
    let params = p
        .sampling
        .params(ids.len(), lease.model.ctx, None)
        .map_err(|mut e| {
            if e.param.as_deref() == Some("max_tokens") {
                e.param = Some("max_output_tokens".into());
            }
            e
        })?;
    let mut req = Request::new(ids, params);
    if let Some(c) = &prep.constrained {
        req.processors.push(c.mask());
    }
    let model = lease.name();
    let mut job = Generation::start(lease, st, req)?;
    prep.reveal(&mut job);
    Ok(Started {
        job,
        tools: format,
        think: prep.think,
        handle,
        id: new_id("resp"),
        model,
    })
}

/// The conversation a response ends: what it was given, then what it said.
pub fn ended(
    mut conversation: Vec<ChatMessage>,
    text: &str,
    calls: Vec<ToolCall>,
) -> Vec<ChatMessage> {
    let mut m = ChatMessage::new(Role::Assistant, text);
    m.tool_calls = calls;
    conversation.push(m);
    conversation
}

pub async fn create(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Response> {
    let p = parse(&obj, &st)?;
    let s = start(&st, &p).await?;
    if p.sampling.stream() {
        return Ok(stream::response(st, p, s));
    }
    let done = s.job.collect().await?;
    let (thinking, answer) = match &s.think {
        Some(t) => t.split(&done.text),
        None => (String::new(), done.text.clone()),
    };
    let (text, calls) = crate::structured::split_calls(s.tools, &answer);
    let mut output = Vec::new();
    if !thinking.is_empty() {
        output.push(reasoning_item(&new_id("rs"), &thinking));
    }
    if !text.trim().is_empty() || calls.is_empty() {
        output.push(message_item(&new_id("msg"), &text, "completed"));
    }
    output.extend(calls.iter().map(|c| call_item(c, "completed")));
    let status = if done.finished.reason == FinishReason::Length {
        "incomplete"
    } else {
        "completed"
    };
    let mut r = response_object(
        &s.id,
        &s.model,
        &p.echo,
        status,
        output,
        Some(&done.finished.stats),
        p.store,
    );
    count_reasoning(&mut r, &s.handle, &thinking);
    if p.store {
        st.responses
            .put(&s.id, &ended(p.conversation, &text, calls), &r)?;
    }
    Ok(Json(r).into_response())
}

pub async fn get_one(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    match st.responses.get(&id)? {
        Some(s) => Ok(Json(s.response).into_response()),
        None => Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no stored response has the id '{id}'"),
        )),
    }
}

pub async fn delete(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    if st.responses.delete(&id)? {
        Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
    } else {
        Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("no stored response has the id '{id}'"),
        ))
    }
}
