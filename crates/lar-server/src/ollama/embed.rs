//! `POST /api/embed` (`input`: a string or a list) and the older `POST /api/embeddings` (`prompt`: one string).
//! `truncate: false` is honoured (a text over the model's limit is an error); Lar never cuts silently, so
//! `truncate: true` (Ollama's default) is refused only for texts that would need it.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{err, keep_alive};
use crate::AppState;
use crate::body::{check_fields, typed};
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;
use crate::manager::Wait;
use crate::openai::embeddings::embed_texts;

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct EmbedReq {
    model: String,
    input: Input,
    dimensions: Option<i64>,
}

pub async fn embed(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    check_fields(
        &obj,
        &[&[
            "model",
            "input",
            "truncate",
            "options",
            "keep_alive",
            "dimensions",
        ]],
    )
    .map_err(err)?;
    let r: EmbedReq = typed(&obj).map_err(err)?;
    // Sampling options do not change an embedding; they are checked all the same, as Ollama's are.
    super::Options::parse(&obj).map_err(err)?;
    if obj
        .get("truncate")
        .is_some_and(|t| !t.is_null() && !t.is_boolean())
    {
        return Err(err(ApiError::field(
            "truncate",
            "truncate must be a boolean",
        )));
    }
    let ka = keep_alive(&obj).map_err(err)?;
    let texts = match r.input {
        Input::One(t) => vec![t],
        Input::Many(v) => v,
    };
    let (vectors, tokens, lease) = embed_texts(&st, &r.model, texts, ka, Wait::Yes)
        .await
        .map_err(err)?;
    if let Some(d) = r.dimensions {
        let own = vectors.first().map_or(0, Vec::len);
        if d != own as i64 {
            return Err(err(ApiError::unsupported(
                "dimensions",
                &format!("unless it is the model's own ({own})"),
            )));
        }
    }
    Ok(Json(json!({
        "model": lease.model.entry.name,
        "embeddings": vectors,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    })))
}

#[derive(Deserialize)]
struct EmbeddingsReq {
    model: String,
    prompt: String,
}

pub async fn embeddings(
    State(st): State<AppState>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Json<Value>> {
    check_fields(&obj, &[&["model", "prompt", "options", "keep_alive"]]).map_err(err)?;
    let r: EmbeddingsReq = typed(&obj).map_err(err)?;
    super::Options::parse(&obj).map_err(err)?;
    let ka = keep_alive(&obj).map_err(err)?;
    let (mut vectors, _, _) = embed_texts(&st, &r.model, vec![r.prompt], ka, Wait::Yes)
        .await
        .map_err(err)?;
    Ok(Json(
        json!({"embedding": vectors.pop().unwrap_or_default()}),
    ))
}
