//! Anthropic's Messages API, so clients built for it (the `anthropic` SDK, agents pointed at `ANTHROPIC_BASE_URL`)
//! work unchanged: `POST /v1/messages` ([`messages`]) and `POST /v1/messages/count_tokens`. This file reads a
//! request into the engine's terms: `system`, messages whose content is text or blocks (`text`, `tool_use`,
//! `tool_result`), `tools` with `input_schema`, `tool_choice` (`auto`, `any`, `tool`, `none`), `stop_sequences`,
//! `max_tokens`. Errors come in Anthropic's shape (`{"type": "error", "error": {"type", "message"}}`).

pub mod messages;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use lar_grammar::tools::ToolChoice;
use lar_types::{ChatMessage, Role, Tool, ToolCall};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{check_fields, kind, opt_bool, opt_f64};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult, Shape};
use crate::generation::engine;
use crate::http::JsonBody;
use crate::manager::Wait;
use crate::openai::{Sampling, Stop};

/// Every field of a Messages request Lar reads.
const FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
];

/// A Messages request in the engine's terms.
pub struct Parsed {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub sampling: Sampling,
    /// `thinking`: enabled (`true`) or disabled (`false`) for a reasoning model; `None`: its default.
    pub thinking: Option<bool>,
}

/// Answers `e` in Anthropic's shape.
pub fn err(e: ApiError) -> ApiError {
    e.shape(Shape::Anthropic)
}

fn field(at: &str, msg: impl Into<String>) -> ApiError {
    ApiError::field(at, msg)
}

/// Reads a Messages request (`count`: for count_tokens, where `max_tokens` is not needed).
pub fn parse(obj: &Map<String, Value>, count: bool) -> ApiResult<Parsed> {
    check_fields(obj, &[FIELDS])?;
    let model = match obj.get("model") {
        Some(Value::String(m)) => m.clone(),
        _ => return Err(field("model", "model is required (a string)")),
    };
    let thinking = thinking(obj.get("thinking"))?;
    let max_tokens = match obj.get("max_tokens") {
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| field("max_tokens", "max_tokens must be a whole number"))?,
        ),
        None | Some(Value::Null) if count => None,
        _ => return Err(field("max_tokens", "max_tokens is required (a number)")),
    };
    let stop = match obj.get("stop_sequences") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(Stop::Many(
            a.iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| field("stop_sequences", "stop_sequences must be strings"))
                })
                .collect::<ApiResult<_>>()?,
        )),
        Some(v) => {
            return Err(field(
                "stop_sequences",
                format!("stop_sequences must be an array, not {}", kind(v)),
            ));
        }
    };
    let stream = opt_bool(obj, "stream")?;
    let num = |k: &str| opt_f64(obj, k);
    let sampling = Sampling {
        model: model.clone(),
        stream,
        max_tokens,
        temperature: num("temperature")?.map(|t| t as f32),
        top_p: num("top_p")?.map(|t| t as f32),
        top_k: num("top_k")?.map(|t| t as i64),
        stop,
        ..Default::default()
    };
    let mut messages = Vec::new();
    match obj.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(ChatMessage::new(Role::System, s.clone())),
        Some(Value::Array(blocks)) => {
            let text = texts(blocks, "system")?;
            messages.push(ChatMessage::new(Role::System, text));
        }
        Some(v) => {
            return Err(field(
                "system",
                format!("system must be a string or text blocks, not {}", kind(v)),
            ));
        }
    }
    let raw = obj
        .get("messages")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| field("messages", "messages must be a non-empty array"))?;
    let mut called: Vec<(String, String)> = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        read_message(m, i, &mut called, &mut messages)?;
    }
    let (tools, choice, parallel) = read_tools(obj)?;
    Ok(Parsed {
        model,
        messages,
        tools,
        choice,
        parallel,
        sampling,
        thinking,
    })
}

/// `thinking`: `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`. The model thinks until it
/// closes its thinking: the budget is checked (a whole number of at least 1) but not a limit Lar enforces.
fn thinking(v: Option<&Value>) -> ApiResult<Option<bool>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let o = v.as_object().ok_or_else(|| {
        field(
            "thinking",
            format!("thinking must be an object, not {}", kind(v)),
        )
    })?;
    if let Some(k) = o
        .keys()
        .find(|k| !["type", "budget_tokens"].contains(&k.as_str()))
    {
        return Err(field(
            "thinking",
            format!("thinking.{k} is not a field Lar knows"),
        ));
    }
    match o.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(Some(false)),
        Some("enabled") => match o.get("budget_tokens") {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|b| b >= 1) => Ok(Some(true)),
            _ => Err(field(
                "thinking",
                "thinking.budget_tokens must be a whole number of at least 1",
            )),
        },
        _ => Err(field(
            "thinking",
            "thinking.type must be \"enabled\" or \"disabled\"",
        )),
    }
}

/// The text of text blocks, joined.
fn texts(blocks: &[Value], at: &str) -> ApiResult<String> {
    let mut out = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match (
            b.get("type").and_then(Value::as_str),
            b.get("text").and_then(Value::as_str),
        ) {
            (Some("text"), Some(t)) => out.push(t.to_string()),
            _ => {
                return Err(field(
                    &format!("{at}[{j}]"),
                    format!("{at}[{j}] must be a text block"),
                ));
            }
        }
    }
    Ok(out.join("\n"))
}

/// One message: its text, its `tool_use` blocks as calls, its `tool_result` blocks as tool messages.
fn read_message(
    m: &Value,
    i: usize,
    called: &mut Vec<(String, String)>,
    out: &mut Vec<ChatMessage>,
) -> ApiResult<()> {
    let at = format!("messages[{i}]");
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        other => {
            return Err(field(
                &format!("{at}.role"),
                format!("{at}.role must be user or assistant (got {other:?})"),
            ));
        }
    };
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            out.push(ChatMessage::new(role, s.clone()));
            return Ok(());
        }
        Some(Value::Array(a)) => a,
        _ => {
            return Err(field(
                &format!("{at}.content"),
                format!("{at}.content must be a string or blocks"),
            ));
        }
    };
    let mut text = Vec::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bat = format!("{at}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push(
                b.get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| field(&bat, format!("{bat} is a text block without text")))?
                    .to_string(),
            ),
            Some("tool_use") if role == Role::Assistant => {
                let (Some(id), Some(name)) = (
                    b.get("id").and_then(Value::as_str),
                    b.get("name").and_then(Value::as_str),
                ) else {
                    return Err(field(
                        &bat,
                        format!("{bat}: a tool_use block needs an id and a name"),
                    ));
                };
                let input = match b.get("input") {
                    Some(o @ Value::Object(_)) => o.clone(),
                    None | Some(Value::Null) => json!({}),
                    Some(v) => {
                        return Err(field(
                            &bat,
                            format!("{bat}.input must be an object, not {}", kind(v)),
                        ));
                    }
                };
                called.push((id.to_string(), name.to_string()));
                calls.push(ToolCall {
                    id: id.to_string(),
                    name: name.to_string(),
                    arguments: input,
                });
            }
            Some("tool_result") if role == Role::User => {
                let id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        field(
                            &bat,
                            format!("{bat}: a tool_result block needs the tool_use_id it answers"),
                        )
                    })?;
                let tool = called.iter().find(|(k, _)| k == id).ok_or_else(|| {
                    field(
                        &bat,
                        format!("{bat}: no earlier tool_use block has the id '{id}'"),
                    )
                })?;
                let content = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => texts(a, &format!("{bat}.content"))?,
                    Some(v) => {
                        return Err(field(
                            &bat,
                            format!("{bat}.content must be text, not {}", kind(v)),
                        ));
                    }
                };
                let content = if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                    format!("Error: {content}")
                } else {
                    content
                };
                let mut msg = ChatMessage::new(Role::Tool, content);
                msg.tool_call_id = Some(id.to_string());
                msg.name = Some(tool.1.clone());
                out.push(msg);
            }
            // Earlier thinking is not shown to the model again (as Anthropic's own models do).
            Some("thinking" | "redacted_thinking") if role == Role::Assistant => {}
            Some(other) => {
                return Err(field(
                    &bat,
                    format!(
                        "{bat}: '{other}' blocks are not supported in a {} message",
                        role.as_str()
                    ),
                ));
            }
            None => return Err(field(&bat, format!("{bat} has no type"))),
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        let mut msg = ChatMessage::new(role, text.join("\n"));
        msg.tool_calls = calls;
        out.push(msg);
    }
    Ok(())
}

/// `tools` (`{name, description, input_schema}`) and `tool_choice`.
fn read_tools(obj: &Map<String, Value>) -> ApiResult<(Vec<Tool>, ToolChoice, bool)> {
    let mut tools = Vec::new();
    if let Some(a) = obj.get("tools").filter(|v| !v.is_null()) {
        let a = a
            .as_array()
            .ok_or_else(|| field("tools", "tools must be an array"))?;
        for (i, t) in a.iter().enumerate() {
            let at = format!("tools[{i}]");
            let o = t
                .as_object()
                .ok_or_else(|| field(&at, format!("{at} must be an object")))?;
            if let Some(ty) = o
                .get("type")
                .and_then(Value::as_str)
                .filter(|t| *t != "custom")
            {
                return Err(ApiError::unsupported(
                    &format!("{at}.type"),
                    &format!("for '{ty}' (server tools run at Anthropic; define a custom tool)"),
                ));
            }
            let mut f = Map::new();
            for (k, v) in o {
                match k.as_str() {
                    "name" | "description" => {
                        f.insert(k.clone(), v.clone());
                    }
                    "input_schema" => {
                        f.insert("parameters".into(), v.clone());
                    }
                    "type" | "cache_control" => {}
                    other => {
                        return Err(field(
                            &format!("{at}.{other}"),
                            format!("{at}: unknown field '{other}'"),
                        ));
                    }
                }
            }
            if !f.contains_key("parameters") {
                return Err(field(
                    &format!("{at}.input_schema"),
                    format!("{at}.input_schema is required"),
                ));
            }
            tools.push(crate::openai::tools::function(&f, &at)?);
        }
    }
    let tc = obj.get("tool_choice").filter(|v| !v.is_null());
    let parallel = !tc
        .and_then(|t| t.get("disable_parallel_tool_use"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let choice = match tc {
        None => ToolChoice::Auto,
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("auto") => ToolChoice::Auto,
            Some("any") => ToolChoice::Required,
            Some("none") => ToolChoice::None,
            Some("tool") => {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                    field(
                        "tool_choice.name",
                        "tool_choice of type tool names the tool",
                    )
                })?;
                if !tools.iter().any(|x| x.name == name) {
                    return Err(field(
                        "tool_choice.name",
                        format!("tool_choice names '{name}', which is not among the tools"),
                    ));
                }
                ToolChoice::Function(name.to_string())
            }
            other => {
                return Err(field(
                    "tool_choice.type",
                    format!("tool_choice.type must be auto, any, tool or none (got {other:?})"),
                ));
            }
        },
    };
    if tools.is_empty() && !matches!(choice, ToolChoice::Auto | ToolChoice::None) {
        return Err(field(
            "tool_choice",
            "tool_choice needs tools to choose from",
        ));
    }
    Ok((tools, choice, parallel))
}

/// The prompt of a parsed request, and the tool-call syntax when tools are offered.
pub fn prompt(
    h: &lar_engine::EngineHandle,
    p: &Parsed,
) -> ApiResult<(Vec<u32>, Option<lar_grammar::tools::ToolFormat>)> {
    if p.tools.is_empty() || p.choice == ToolChoice::None {
        return Ok((h.chat_tokens(&p.messages, None)?, None));
    }
    let (ids, f) = crate::structured::tool_prompt(h, &p.messages, &p.tools, None)?;
    Ok((ids, Some(f)))
}

/// `POST /v1/messages/count_tokens`: the prompt's length, as the model would see it.
pub async fn count_tokens(State(st): State<AppState>, JsonBody(obj): JsonBody) -> Response {
    let run = async {
        let p = parse(&obj, true)?;
        let lease = st
            .manager
            .get(&p.model, &LoadOptions::default(), None, Wait::Yes)
            .await?;
        let h = engine(&lease)?.clone();
        let (ids, _) = tokio::task::spawn_blocking(move || prompt(&h, &p))
            .await
            .map_err(ApiError::internal)??;
        Ok::<_, ApiError>(axum::Json(json!({"input_tokens": ids.len()})).into_response())
    };
    match run.await {
        Ok(r) => r,
        Err(e) => err(e).into_response(),
    }
}
