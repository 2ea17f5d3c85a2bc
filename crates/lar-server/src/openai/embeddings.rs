//! `POST /v1/embeddings`: input as a string, a list of strings, or token arrays (decoded with the embedder's own
//! vocabulary is not possible for a foreign tokenizer, so token arrays are refused with a 400 that says so);
//! `encoding_format` `float` or `base64` (little-endian f32, what the openai SDK asks for when numpy is there);
//! `dimensions` refused unless it is the model's own. A text longer than the embedder's limit is a 400, never
//! silently cut.

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::DESCRIPTIVE_FIELDS;
use crate::AppState;
use crate::body::{check_fields, typed};
use crate::catalog::{LoadOptions, Runner};
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;
use crate::manager::Wait;

const FIELDS: &[&str] = &["model", "input", "encoding_format", "dimensions"];
/// Most texts in one request.
pub const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct Req {
    model: String,
    input: Input,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

/// Embeds `texts` with the lease's model, off the async threads; refuses texts over the model's limit.
pub async fn embed_texts(
    st: &AppState,
    model: &str,
    texts: Vec<String>,
    keep_alive: Option<crate::KeepAlive>,
    wait: Wait,
) -> ApiResult<(Vec<Vec<f32>>, usize, crate::manager::Lease)> {
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::field(
            "input",
            format!(
                "at most {MAX_INPUTS} inputs in one request (got {})",
                texts.len()
            ),
        ));
    }
    let lease = st
        .manager
        .get(model, &LoadOptions::default(), keep_alive, wait)
        .await?;
    let Runner::Embed(e) = lease.model.runner.clone() else {
        return Err(ApiError::bad_request(format!(
            "'{}' is not an embedding model (pull one, such as all-minilm)",
            lease.model.entry.name
        ))
        .param("model"));
    };
    let (vectors, tokens) = tokio::task::spawn_blocking(move || {
        let mut tokens = 0;
        for (i, t) in texts.iter().enumerate() {
            let n = e.count_tokens(t);
            if n > e.max_tokens() {
                return Err(ApiError::field(
                    "input",
                    format!(
                        "input {i} has {n} tokens, more than the model's limit of {}; split it",
                        e.max_tokens()
                    ),
                ));
            }
            tokens += n;
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let v = e
            .embed(&refs)
            .map_err(|err| ApiError::internal(format!("embedding failed: {err}")))?;
        Ok((v, tokens))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((vectors, tokens, lease))
}

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Json<Value>> {
    check_fields(&obj, &[FIELDS, DESCRIPTIVE_FIELDS])?;
    let r: Req = typed(&obj)?;
    let base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::field(
                "encoding_format",
                format!("encoding_format must be float or base64 (got '{other}')"),
            ));
        }
    };
    let texts = match r.input {
        Input::Text(t) => vec![t],
        Input::Texts(t) => t,
        Input::Tokens(_) | Input::TokenLists(_) => {
            return Err(ApiError::unsupported(
                "input",
                "as token ids for Lar's embedders (their vocabulary is not the client's); send text",
            ));
        }
    };
    if texts.is_empty() {
        return Err(ApiError::field("input", "input must not be an empty list"));
    }
    let (vectors, tokens, lease) = embed_texts(&st, &r.model, texts, None, Wait::No).await?;
    if let Some(d) = r.dimensions {
        let own = vectors.first().map_or(0, Vec::len);
        if d != own as i64 {
            return Err(ApiError::unsupported(
                "dimensions",
                &format!("unless it is the model's own ({own})"),
            ));
        }
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": lease.model.entry.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
