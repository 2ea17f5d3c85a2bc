//! `GET /v1/models` and `GET /v1/models/{id}`: every model in the store, as OpenAI lists them.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::catalog::ModelEntry;
use crate::error::ApiResult;

fn model_json(e: &ModelEntry) -> Value {
    json!({"id": e.name, "object": "model", "created": e.modified, "owned_by": "lar"})
}

pub async fn list(State(st): State<AppState>) -> ApiResult<Json<Value>> {
    let cat = st.manager.catalog().clone();
    let models = tokio::task::spawn_blocking(move || cat.list())
        .await
        .map_err(crate::error::ApiError::internal)??;
    Ok(Json(json!({
        "object": "list",
        "data": models.iter().map(model_json).collect::<Vec<_>>(),
    })))
}

pub async fn one(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let cat = st.manager.catalog().clone();
    let e = tokio::task::spawn_blocking(move || cat.entry(&id))
        .await
        .map_err(crate::error::ApiError::internal)??;
    Ok(Json(model_json(&e)))
}
