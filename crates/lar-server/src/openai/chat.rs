//! `POST /v1/chat/completions`: messages (string or array-of-parts content) rendered with the model's chat
//! template, `n` choices, logprobs, and the answer as one JSON object or as SSE chunks (`stream_options.
//! include_usage`: every chunk carries `usage: null`, then one chunk with no choices and the usage, then `[DONE]`).
//! `response_format` (and vLLM's `structured_outputs`) constrain the answer with a grammar; `tools` are rendered
//! by the model's template and its calls parsed back (see [`super::tools`]), enforced by their grammar.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use lar_engine::Event;
use lar_grammar::tools::{Piece, ToolFormat, ToolParser};
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
use crate::generation::{Generation, engine, failure};
use crate::http::{JsonBody, unix_now};
use crate::kb::Caller;
use crate::kb::ground::{Grounding, KbModel};
use crate::manager::Wait;
use crate::structured::Offer;

const FIELDS: &[&str] = &[
    "messages",
    "logprobs",
    "top_logprobs",
    "response_format",
    "structured_outputs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "chat_template_kwargs",
];
/// Fields of OpenAI's API that need other modalities or are deprecated.
const LATER: &[&str] = &[
    "functions",
    "function_call",
    "audio",
    "modalities",
    "prediction",
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
pub(crate) fn messages(raw: Vec<Value>) -> ApiResult<Vec<ChatMessage>> {
    if raw.is_empty() {
        return Err(ApiError::field("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(raw.len());
    // The calls made so far (id, tool), for the tool messages that answer them.
    let mut called: Vec<(String, String)> = Vec::new();
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
        let calls = match m.tool_calls.as_ref().filter(|t| !t.is_null()) {
            Some(v) if role == Role::Assistant => super::tools::calls_in(v, &at("tool_calls"))?,
            Some(_) => {
                return Err(ApiError::field(
                    &at("tool_calls"),
                    format!(
                        "{}: only assistant messages carry tool calls",
                        at("tool_calls")
                    ),
                ));
            }
            None => Vec::new(),
        };
        called.extend(calls.iter().map(|c| (c.id.clone(), c.name.clone())));
        let answers = if role == Role::Tool {
            let id = m.tool_call_id.as_deref().ok_or_else(|| {
                ApiError::field(
                    &at("tool_call_id"),
                    format!(
                        "{}: a tool message names the call it answers",
                        at("tool_call_id")
                    ),
                )
            })?;
            let tool = called.iter().find(|(k, _)| k == id).ok_or_else(|| {
                ApiError::field(
                    &at("tool_call_id"),
                    format!(
                        "{}: no earlier assistant message made a call with id '{id}'",
                        at("tool_call_id")
                    ),
                )
            })?;
            Some(tool.1.clone())
        } else {
            None
        };
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
        msg.name = answers;
        msg.tool_calls = calls;
        out.push(msg);
    }
    Ok(out)
}

pub async fn handle(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(mut obj): JsonBody,
) -> ApiResult<Response> {
    check_fields(&obj, &[SAMPLING_FIELDS, FIELDS, LATER, DESCRIPTIVE_FIELDS])?;
    let kb_tools = crate::kb::agent::take(&mut obj)?;
    refuse(
        &obj,
        LATER,
        "yet (tools and structured output come with constrained decoding)",
    )?;
    let (constraint, param) = crate::structured::of_openai(&obj)?;
    let tool_spec = super::tools::spec(&obj)?;
    if tool_spec.is_some() && constraint.is_some() {
        return Err(ApiError::unsupported(
            param,
            "together with tools yet (ask for one or the other)",
        ));
    }
    let s: Sampling = typed(&obj)?;
    let x: Extra = typed(&obj)?;
    let n = s.n()?;
    let mut msgs = messages(x.messages)?;
    let kb = KbModel::parse(&st, &s.model)?;
    let thinking = match (
        reasoning_effort(obj.get("reasoning_effort"), "reasoning_effort")?,
        crate::structured::template_kwargs(&obj)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                "reasoning_effort",
                "give reasoning_effort or chat_template_kwargs.enable_thinking, not both",
            ));
        }
        (Some(t), None) => Some((t, "reasoning_effort")),
        (None, Some(t)) => Some((t, "chat_template_kwargs")),
        (None, None) => None,
    };
    if !kb_tools.is_empty() {
        let refuse = |what: &str, why: &str| Err(ApiError::unsupported(what, why));
        if kb.is_some() {
            return refuse(
                "tools",
                "as knowledge-base tools with a knowledge-base model (use one or the other)",
            );
        }
        if n > 1 {
            return refuse("n", "above 1 with knowledge-base tools yet");
        }
        if x.logprobs.unwrap_or(false) {
            return refuse("logprobs", "with knowledge-base tools yet");
        }
    }
    if kb.is_some() && (tool_spec.is_some() || constraint.is_some()) {
        return Err(ApiError::unsupported(
            if tool_spec.is_some() { "tools" } else { param },
            "with a knowledge-base model yet",
        ));
    }
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
    if want_logprobs && tool_spec.is_some() {
        return Err(ApiError::unsupported("logprobs", "together with tools yet"));
    }
    let chat_model = kb.as_ref().map_or(&s.model, |k| &k.model);
    let lease = Arc::new(
        st.manager
            .get(chat_model, &LoadOptions::default(), None, Wait::No)
            .await?,
    );
    let h = engine(&lease)?.clone();
    if !kb_tools.is_empty()
        && let Some(spec) = tool_spec
    {
        let model = lease.name();
        let run = crate::kb::agent::Run {
            lease: lease.clone(),
            s,
            spec,
            kbs: kb_tools,
            thinking,
        };
        return crate::kb::agent::respond(&st, &caller, run, msgs, model).await;
    }
    let mut grounding = None;
    let mut constraint = constraint;
    if let Some(k) = &kb {
        let answer = s
            .max_completion_tokens
            .or(s.max_tokens)
            .map_or(384, |m| m.max(1) as usize);
        let g = k.ground(&st, &caller, &lease, msgs, answer).await?;
        msgs = g.messages.clone();
        constraint = g.forced.clone();
        grounding = Some(g);
    }
    let mut offer = match tool_spec {
        Some(t) => Offer {
            tools: t.tools,
            choice: t.choice,
            parallel: t.parallel,
            format: None,
            param: "tools",
            thinking: None,
            split_thinking: false,
        },
        None => Offer::format(constraint, param),
    };
    // This route shows a reasoning model's thinking apart from its answer.
    (offer.thinking, offer.split_thinking) = (thinking, true);
    let prep = crate::structured::prepare(&lease, msgs, offer).await?;
    let (prompt, format) = (&prep.prompt, prep.tools);
    let params = s.params(prompt.len(), lease.model.ctx, want_logprobs.then_some(top))?;
    let mut gens = Vec::with_capacity(n);
    let choices = super::Choices {
        prompt,
        params: &params,
        n,
        prompt_logprobs: None,
        constrained: prep.constrained.as_ref(),
        lora: super::lora_slot(s.lora.as_deref())?,
    };
    start_choices(&st, &lease, &mut gens, &choices)?;
    for g in &mut gens {
        prep.reveal(g);
    }
    let meta = Meta {
        id: new_id("chatcmpl"),
        created: unix_now(),
        model: if kb.is_some() {
            s.model.clone()
        } else {
            lease.name()
        },
        logprobs: want_logprobs,
        tokenizer: h,
        tools: format,
        sources: grounding.as_ref().map(Grounding::sources_json),
        think: prep.think,
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
        let (thinking, text) = match &meta.think {
            Some(t) => t.split(&c.text),
            None => (String::new(), c.text.clone()),
        };
        let (content, calls) = crate::structured::split_calls(meta.tools, &text);
        let mut message = json!({"role": "assistant", "content": content});
        if !thinking.is_empty() {
            message["reasoning_content"] = json!(thinking);
            message["reasoning"] = json!(thinking);
        }
        if let Some(g) = &grounding {
            let (text, cited, added) = g.cite(&content);
            message["content"] = json!(text);
            message["cited"] = json!(cited);
            message["citations_added"] = json!(added);
        }
        if !calls.is_empty() {
            message["tool_calls"] = calls.iter().map(super::tools::call_json).collect();
            if content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        choices.push(json!({
            "index": i,
            "message": message,
            "logprobs": meta.logprobs.then(|| json!({"content": logprobs(&meta, &c.tokens)})),
            "finish_reason": reason_of(c.finished.reason, calls.len()),
        }));
    }
    let mut body = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": fingerprint(),
        "choices": choices,
        "usage": usage.json(),
    });
    if let Some(sources) = &meta.sources {
        body["sources"] = sources.clone();
    }
    Ok(axum::Json(body).into_response())
}

/// What every chunk of a response repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    tokenizer: lar_engine::EngineHandle,
    /// The syntax of the model's tool calls, when the request offered tools.
    tools: Option<ToolFormat>,
    /// A knowledge-base model's numbered sources (on the answer, and on each choice's last chunk).
    sources: Option<Value>,
    /// A reasoning model's markers: its thinking goes to `reasoning_content`.
    think: Option<crate::structured::Thinking>,
}

/// OpenAI's reasoning effort (chat's `reasoning_effort`, the Responses API's `reasoning.effort`, named by
/// `param`): `none` asks a reasoning model to answer at once, any other effort to think (Lar has no budget per
/// effort: the model thinks as long as it does).
pub fn reasoning_effort(v: Option<&Value>, param: &str) -> ApiResult<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "none" => Ok(Some(false)),
            "minimal" | "low" | "medium" | "high" => Ok(Some(true)),
            other => Err(ApiError::field(
                param,
                format!("{param} must be none, minimal, low, medium or high (got '{other}')"),
            )),
        },
        Some(v) => Err(ApiError::field(
            param,
            format!("{param} must be a string, not {}", crate::body::kind(v)),
        )),
    }
}

/// `tool_calls` when the answer ended in calls.
fn reason_of(r: lar_types::FinishReason, calls: usize) -> &'static str {
    if calls > 0 && r == lar_types::FinishReason::Stop {
        "tool_calls"
    } else {
        finish_reason(r)
    }
}

pub fn fingerprint() -> String {
    format!("lar-{}", env!("CARGO_PKG_VERSION"))
}

/// OpenAI's logprobs content: each token with its bytes and alternatives.
fn logprobs(meta: &Meta, tokens: &[TokenEvent]) -> Vec<Value> {
    let tok = meta.tokenizer.tokenizer();
    tokens
        .iter()
        .map(|t| {
            let mut e = token_entry(tok, t.token, t.logprob);
            e["top_logprobs"] = t
                .top_logprobs
                .iter()
                .map(|a| token_entry(tok, a.token, Some(a.logprob)))
                .collect();
            e
        })
        .collect()
}

/// One token's log-probability entry, `{token, logprob, bytes}` (OpenAI chat's shape, which Ollama's copies).
pub(crate) fn token_entry(tok: &lar_tokenizer::Tokenizer, id: u32, lp: Option<f32>) -> Value {
    let text = tok.decode(&[id], false);
    json!({"token": text, "logprob": lp, "bytes": text.as_bytes()})
}

fn chunk(meta: &Meta, choices: Value, usage: Option<Value>, with_usage: bool) -> SseEvent {
    SseEvent::default().data(chunk_json(meta, choices, usage, with_usage).to_string())
}

fn chunk_json(meta: &Meta, choices: Value, usage: Option<Value>, with_usage: bool) -> Value {
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
    c
}

/// The SSE answer: the choices' chunks as they come (merged when `n > 1`), then the usage chunk and `[DONE]`.
fn stream_response(meta: Meta, gens: Vec<Generation>, with_usage: bool) -> Response {
    let meta = Arc::new(meta);
    let n = gens.len();
    let every = gens
        .first()
        .map_or(crate::DEFAULT_STREAM_KEEPALIVE, Generation::keep_alive);
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
            out.push(
                SseEvent::default().data(crate::generation::failed_error(e).body().to_string()),
            );
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
    crate::generation::sse(body.chain(tail).map(Ok), every)
}

/// One choice's chunks: the role first, then a chunk per piece of text (and two per tool call), then the finish
/// reason.
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
    let parser = meta.tools.map(|f| ToolParser::new(f, new_id("call")));
    let think = meta.think.map(|t| t.parser());
    // `said`: the text so far, for the sources a grounded answer cites.
    let rest = stream::unfold(Some((job, parser, think, 0usize, String::new())), move |state| {
        let (meta, usage, failed) = (meta.clone(), usage.clone(), failed.clone());
        async move {
            let (mut g, mut parser, mut think, mut calls, mut said) = state?;
            let mut out = Vec::new();
            match g.next().await? {
                Event::Token(t) => {
                    let text = match think.as_mut() {
                        Some(tp) => thinking_chunk(&meta, index, tp.take(&t.text, false), with_usage, &mut out),
                        None => t.text.clone(),
                    };
                    if let Some(p) = parser.as_mut() {
                        let pieces = p.push(&text);
                        pieces_chunks(&meta, index, pieces, &mut calls, with_usage, &mut out);
                    } else if !text.is_empty() || meta.logprobs {
                        if meta.sources.is_some() {
                            said.push_str(&text);
                        }
                        // (Empty text: nothing to show yet, an incomplete character, a possible stop string, or
                        // thinking; with logprobs every token still gets its chunk.)
                        let lp = meta
                            .logprobs
                            .then(|| json!({"content": logprobs(&meta, std::slice::from_ref(&t))}));
                        out.push(chunk(
                            &meta,
                            json!([{"index": index, "delta": {"content": text}, "logprobs": lp, "finish_reason": null}]),
                            None,
                            with_usage,
                        ));
                    }
                    Some((out, Some((g, parser, think, calls, said))))
                }
                Event::Done(mut f) => {
                    if let Some(e) = failure(&f) {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Some((out, None));
                    }
                    usage.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(f.stats.clone());
                    if let Some(tp) = think.as_mut() {
                        let split = tp.take(&f.text, true);
                        f.text = thinking_chunk(&meta, index, split, with_usage, &mut out);
                    }
                    let delta = match parser.as_mut() {
                        Some(p) => {
                            let mut pieces = p.push(&f.text);
                            pieces.extend(p.finish());
                            pieces_chunks(&meta, index, pieces, &mut calls, with_usage, &mut out);
                            json!({})
                        }
                        None if f.text.is_empty() => json!({}),
                        None => json!({"content": f.text}),
                    };
                    let mut last = chunk_json(
                        &meta,
                        json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": reason_of(f.reason, calls)}]),
                        None,
                        with_usage,
                    );
                    if let Some(sources) = &meta.sources {
                        said.push_str(delta["content"].as_str().unwrap_or_default());
                        last["cited"] = json!(crate::kb::ground::cited_in(&said, sources));
                        last["sources"] = sources.clone();
                    }
                    out.push(SseEvent::default().data(last.to_string()));
                    Some((out, None))
                }
            }
        }
    })
    .flat_map(stream::iter);
    stream::once(async move { first }).chain(rest)
}

/// The chunk of a reasoning model's thinking (`delta.reasoning_content`, and `reasoning` as vLLM also writes it),
/// when there is some; returns the answer's text.
fn thinking_chunk(
    meta: &Meta,
    index: usize,
    (thinking, answer): (String, String),
    with_usage: bool,
    out: &mut Vec<SseEvent>,
) -> String {
    if !thinking.is_empty() {
        out.push(chunk(
            meta,
            json!([{"index": index, "delta": {"reasoning_content": thinking, "reasoning": thinking}, "logprobs": null, "finish_reason": null}]),
            None,
            with_usage,
        ));
    }
    answer
}

/// The chunks of parsed pieces: text as content, each call as its two fragments (`calls` counts them).
fn pieces_chunks(
    meta: &Meta,
    index: usize,
    pieces: Vec<Piece>,
    calls: &mut usize,
    with_usage: bool,
    out: &mut Vec<SseEvent>,
) {
    for piece in pieces {
        let deltas = match piece {
            Piece::Text(t) => vec![json!({"content": t})],
            Piece::Call(c) => {
                *calls += 1;
                super::tools::call_deltas(*calls - 1, &c)
                    .into_iter()
                    .map(|d| json!({"tool_calls": d}))
                    .collect()
            }
        };
        for d in deltas {
            out.push(chunk(
                meta,
                json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": null}]),
                None,
                with_usage,
            ));
        }
    }
}
