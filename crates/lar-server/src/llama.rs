//! The tokenizer and template helpers that people (and tools) script against, in both dialects that share these
//! paths: llama-server's `POST /tokenize` (`content`, `add_special`, `parse_special`, `with_pieces`) and vLLM's
//! (`prompt`, `add_special_tokens`, `return_token_strs`; answered with `count` and `max_model_len` too), chosen by
//! which text field the body carries; `POST /detokenize` (`tokens`; the text comes as llama-server's `content` and
//! vLLM's `prompt`); vLLM's `GET /tokenizer_info` (special tokens, chat template, context: what
//! lm-evaluation-harness's remote tokenizer reads); llama-server's `POST /apply-template` (OpenAI-style `messages`
//! and `tools`, rendered by the model's template) and `GET /lora-adapters` (the adapters served, with the ids a
//! request's `lora` field uses). Both servers serve one model; here `model` names one, and may be left out while
//! exactly one chat model is loaded.

use axum::Json;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use lar_engine::EngineHandle;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{check_fields, kind};
use crate::catalog::{LoadOptions, Runner};
use crate::error::{ApiError, ApiResult};
use crate::generation::engine;
use crate::http::JsonBody;
use crate::manager::{Lease, Wait};

/// The model a helper request names, or the one chat model loaded.
async fn model(st: &AppState, obj: &Map<String, Value>) -> ApiResult<(Lease, EngineHandle)> {
    let name = match obj.get("model") {
        Some(Value::String(m)) => m.clone(),
        None | Some(Value::Null) => {
            let chat: Vec<String> = st
                .manager
                .loaded()
                .iter()
                .filter(|m| matches!(m.runner, Runner::Chat(_)))
                .map(|m| m.entry.name.clone())
                .collect();
            match &chat[..] {
                [one] => one.clone(),
                _ => {
                    return Err(ApiError::field(
                        "model",
                        format!(
                            "name the model: {} chat models are loaded ({})",
                            chat.len(),
                            chat.join(", ")
                        ),
                    ));
                }
            }
        }
        Some(v) => {
            return Err(ApiError::field(
                "model",
                format!("model must be a string, not {}", kind(v)),
            ));
        }
    };
    let lease = st
        .manager
        .get(&name, &LoadOptions::default(), None, Wait::Yes)
        .await?;
    let h = engine(&lease)?.clone();
    Ok((lease, h))
}

fn flag(obj: &Map<String, Value>, k: &str, default: bool) -> ApiResult<bool> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ApiError::field(
            k,
            format!("{k} must be a boolean, not {}", kind(v)),
        )),
    }
}

/// `POST /tokenize`: llama-server's form (`content`) or vLLM's (`prompt`).
pub async fn tokenize(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Response> {
    if obj.contains_key("prompt") {
        return tokenize_vllm(st, obj).await;
    }
    check_fields(
        &obj,
        &[&[
            "model",
            "content",
            "add_special",
            "parse_special",
            "with_pieces",
        ]],
    )?;
    let content = match obj.get("content") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ApiError::field(
                "content",
                "content (llama-server) or prompt (vLLM) must be a string",
            ));
        }
    };
    let add_special = flag(&obj, "add_special", false)?;
    let parse_special = flag(&obj, "parse_special", true)?;
    let pieces = flag(&obj, "with_pieces", false)?;
    let (_lease, h) = model(&st, &obj).await?;
    let out = tokio::task::spawn_blocking(move || {
        let tok = h.tokenizer();
        let ids = tok.encode(&content, add_special, parse_special);
        if !pieces {
            return json!({"tokens": ids});
        }
        let list: Vec<Value> = ids
            .iter()
            .map(|&id| {
                let bytes = tok.token_bytes(id, true);
                match String::from_utf8(bytes.clone()) {
                    Ok(s) => json!({"id": id, "piece": s}),
                    // A piece that is not whole UTF-8 comes as its bytes, as llama-server sends it.
                    Err(_) => json!({"id": id, "piece": bytes}),
                }
            })
            .collect();
        json!({"tokens": list})
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(out).into_response())
}

/// vLLM's `POST /tokenize` for a completion prompt: special tokens in the text are parsed (as Hugging Face
/// tokenizers do) and BOS added unless `add_special_tokens` is false; `token_strs` (each token's text, lossy where
/// a token is part of a character) when `return_token_strs`.
async fn tokenize_vllm(st: AppState, obj: Map<String, Value>) -> ApiResult<Response> {
    check_fields(
        &obj,
        &[&["model", "prompt", "add_special_tokens", "return_token_strs"]],
    )?;
    let prompt = match obj.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        other => {
            return Err(ApiError::field(
                "prompt",
                format!(
                    "prompt must be a string, not {}",
                    other.map_or("nothing", kind)
                ),
            ));
        }
    };
    let add_special = flag(&obj, "add_special_tokens", true)?;
    let strs = flag(&obj, "return_token_strs", false)?;
    let (_lease, h) = model(&st, &obj).await?;
    let out = tokio::task::spawn_blocking(move || {
        let tok = h.tokenizer();
        let ids = tok.encode(&prompt, add_special, true);
        let token_strs: Option<Vec<String>> = strs.then(|| {
            ids.iter()
                .map(|&id| String::from_utf8_lossy(&tok.token_bytes(id, true)).into_owned())
                .collect()
        });
        json!({
            "count": ids.len(),
            "max_model_len": h.model().ctx,
            "tokens": ids,
            "token_strs": token_strs,
        })
    })
    .await
    .map_err(ApiError::internal)?;
    Ok(Json(out).into_response())
}

/// vLLM's `GET /tokenizer_info` (`?model=NAME`, or the one chat model loaded): the special tokens as text, what the
/// tokenizer adds, the chat template and the context length.
pub async fn tokenizer_info(
    State(st): State<AppState>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> ApiResult<Response> {
    // A query string that does not parse is this API's 400 (JSON, naming the problem), not axum's plain text.
    let Query(q) =
        q.map_err(|e| ApiError::bad_request(format!("malformed query string: {}", e.body_text())))?;
    let mut obj = Map::new();
    for (k, v) in q {
        if k != "model" {
            return Err(ApiError::field(
                &k,
                format!("unknown query parameter '{k}' (only model is known)"),
            ));
        }
        if obj.insert(k, Value::String(v)).is_some() {
            return Err(ApiError::field(
                "model",
                "model is given twice in the query string",
            ));
        }
    }
    let (lease, h) = model(&st, &obj).await?;
    let tok = h.tokenizer();
    let v = &tok.vocab;
    let text = |id: Option<u32>| {
        id.map(|t| String::from_utf8_lossy(&tok.token_bytes(t, true)).into_owned())
    };
    Ok(Json(json!({
        "model": lease.name(),
        "tokenizer_class": match v.model {
            lar_tokenizer::Model::Bpe { .. } => "bpe",
            lar_tokenizer::Model::Spm => "spm",
            lar_tokenizer::Model::Hf { .. } => "tokenizers",
        },
        "vocab_size": v.len(),
        "bos_token": text(v.bos),
        "eos_token": text(v.eos),
        "unk_token": text(v.unk),
        "pad_token": Value::Null,
        "add_bos_token": v.add_bos,
        "add_eos_token": v.add_eos,
        "chat_template": h.model().template,
        "model_max_length": h.model().ctx,
    }))
    .into_response())
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(st): State<AppState>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Response> {
    check_fields(&obj, &[&["model", "tokens"]])?;
    let ids: Vec<u32> = match obj.get("tokens") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| ApiError::field("tokens", "tokens must be token ids"))
            })
            .collect::<ApiResult<_>>()?,
        _ => {
            return Err(ApiError::field(
                "tokens",
                "tokens must be an array of token ids",
            ));
        }
    };
    let (_lease, h) = model(&st, &obj).await?;
    let n_vocab = h.model().n_vocab;
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::field(
            "tokens",
            format!("token id {bad} is outside the vocabulary of {n_vocab}"),
        ));
    }
    let content = h.tokenizer().decode(&ids, true);
    // llama-server answers with `content`, vLLM with `prompt`: both, so either kind of client reads it.
    Ok(Json(json!({"content": content, "prompt": content})).into_response())
}

/// `POST /apply-template`: the prompt text a chat request would be given.
pub async fn apply_template(
    State(st): State<AppState>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Response> {
    check_fields(
        &obj,
        &[&["model", "messages", "tools", "chat_template_kwargs"]],
    )?;
    let thinking = crate::structured::template_kwargs(&obj)?;
    let raw = match obj.get("messages") {
        Some(Value::Array(a)) => a.clone(),
        _ => return Err(ApiError::field("messages", "messages must be an array")),
    };
    let msgs = crate::openai::chat::messages(raw)?;
    let tools = crate::openai::tools::spec(&obj)?
        .map(|t| t.tools)
        .unwrap_or_default();
    let (_lease, h) = model(&st, &obj).await?;
    let prompt = tokio::task::spawn_blocking(move || -> ApiResult<String> {
        let m = h.model();
        if tools.is_empty() {
            return Ok(m.chat_text_thinking(&msgs, &[], None, thinking)?);
        }
        let format = lar_grammar::tools::ToolFormat::detect(&m.template_source(None)?);
        Ok(if format.renders_tools() {
            m.chat_text_thinking(&msgs, &tools, None, thinking)?
        } else {
            m.chat_text_thinking(
                &lar_grammar::tools::generic_messages(&msgs, &tools),
                &[],
                None,
                thinking,
            )?
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({"prompt": prompt})).into_response())
}

/// `GET /lora-adapters`: every adapter served, per base model, with its id there (what a request's `lora` field
/// names). llama-server lists `id`, `path` and `scale` (the default strength: 0 here, since a request runs an
/// adapter only when it names one); Lar adds the base `model` and the adapter's `name` (`model+name` as a model).
pub async fn lora_adapters(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let cat = st.manager.catalog().clone();
    let adapters = tokio::task::spawn_blocking(move || cat.adapters())
        .await
        .map_err(ApiError::internal)?;
    let mut ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let list: Vec<Value> = adapters
        .iter()
        .map(|a| {
            let id = ids.entry(a.base.as_str()).or_default();
            let v = json!({
                "id": *id,
                "path": a.path.display().to_string(),
                "scale": 0.0,
                "model": a.base,
                "name": a.name,
            });
            *id += 1;
            v
        })
        .collect();
    Ok(Json(Value::Array(list)))
}
