//! `GET /v1/models` and `GET /v1/models/{id}`: every model in the store, as OpenAI lists them, then the knowledge
//! bases this caller may read as `kb:NAME` models (answered by the server's default chat model).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use crate::AppState;
use crate::catalog::ModelEntry;
use crate::error::ApiResult;
use crate::kb::Caller;

fn model_json(e: &ModelEntry) -> Value {
    json!({"id": e.name, "object": "model", "created": e.modified, "owned_by": "lar"})
}

fn kb_json(c: &lar_rag::kb::KbConfig) -> Value {
    json!({"id": format!("kb:{}", c.name), "object": "model", "created": c.created, "owned_by": "lar-kb"})
}

pub async fn list(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let cat = st.manager.catalog().clone();
    let models = tokio::task::spawn_blocking(move || {
        cat.list()
            .map(|m| crate::catalog::with_adapters(m, &cat.adapters()))
    })
    .await
    .map_err(crate::error::ApiError::internal)??;
    let mut data: Vec<Value> = models.iter().map(model_json).collect();
    data.extend(st.kb.list(&caller).await?.iter().map(kb_json));
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn one(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if let Some(rest) = id.strip_prefix("kb:") {
        let name = rest.split_once('@').map_or(rest, |(n, _)| n);
        let mut v = kb_json(&st.kb.config(&caller, name).await?);
        v["id"] = json!(id);
        return Ok(Json(v));
    }
    let cat = st.manager.catalog().clone();
    let e = tokio::task::spawn_blocking(move || {
        let (base, adapter) = crate::manager::split_adapter(&id);
        let e = cat.entry(base)?;
        match adapter {
            None => Ok(e),
            Some(a) => crate::catalog::with_adapters(vec![e.clone()], &cat.adapters())
                .into_iter()
                .find(|m| m.name == format!("{}+{a}", e.name))
                .ok_or_else(|| crate::error::ApiError::model_not_found(&id)),
        }
    })
    .await
    .map_err(crate::error::ApiError::internal)??;
    Ok(Json(model_json(&e)))
}
