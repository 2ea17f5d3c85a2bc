//! Knowledge bases through the API: `GET /v1/kb` (the ones this caller may read), `POST /v1/kb/{name}/search`
//! (the hybrid search of `lar kb search --json`, the same hits), in [`ground`], `kb:NAME` and `kb:NAME@MODEL`
//! as chat model names that answer from the knowledge base with numbered sources, and in [`agent`], a knowledge
//! base offered to the model as a search tool in a loop the server runs.
//!
//! Who may read what follows the API key: `--kb-access KEY=NAME,NAME` limits a key to those knowledge bases; a key
//! not named there (or no key, on a server without keys) reads every one. A knowledge base a caller may not read is
//! answered exactly as one that does not exist. The work itself is lar-rag's (registry, stores, search, prompts);
//! this opens the knowledge base's embedder (a store name goes through the model manager, so it is shared with
//! `/v1/embeddings` and unloads when idle; a directory is opened once and kept) and runs the blocking store calls
//! off the async threads.

pub mod agent;
pub mod agent_stream;
pub mod ground;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use lar_rag::kb::{KbConfig, Registry};
use lar_rag::search::{Hit, SearchOptions};
use lar_types::Embedder;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{check_fields, typed};
use crate::catalog::{LoadOptions, Runner};
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;
use crate::manager::{Lease, Wait};

/// How the server serves knowledge bases.
#[derive(Clone, Debug, Default)]
pub struct KbServing {
    /// The registry's directory (`$LAR_HOME/kb`); `None`: no knowledge base is served.
    pub root: Option<PathBuf>,
    /// Keys limited to some knowledge bases: key -> the names it may read.
    pub grants: HashMap<String, Vec<String>>,
    /// The chat model that answers `kb:NAME` (a store name); `kb:NAME@MODEL` names its own.
    pub default_model: Option<String>,
    /// Threads of an embedder opened from a directory (0: the machine's choice).
    pub threads: usize,
}

/// Who is asking: the API key the request carried (`None` on a server that asks for none).
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub key: Option<Arc<str>>,
}

impl KbServing {
    /// Whether `caller` may read knowledge base `name`.
    pub fn may_read(&self, caller: &Caller, name: &str) -> bool {
        match caller.key.as_deref().and_then(|k| self.grants.get(k)) {
            Some(names) => names.iter().any(|n| n == name),
            None => true,
        }
    }
}

/// The knowledge bases of a server: its settings and the embedders opened from directories.
#[derive(Default)]
pub struct KnowledgeBases {
    pub cfg: KbServing,
    embedders: Mutex<HashMap<String, Arc<dyn Embedder>>>,
}

/// An embedder ready to use, with the lease that keeps it loaded when it came from the model manager.
pub struct OpenEmbedder {
    pub embedder: Arc<dyn Embedder>,
    _lease: Option<Lease>,
}

pub(crate) fn rag_error(e: lar_rag::Error) -> ApiError {
    match e {
        lar_rag::Error::Invalid(m) => ApiError::bad_request(m),
        lar_rag::Error::NotFound(n) => not_found(&n),
        other => ApiError::internal(other),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        format!("no knowledge base '{name}' that this caller may read (see GET /v1/kb)"),
    )
    .code("knowledge_base_not_found")
}

impl KnowledgeBases {
    pub fn new(cfg: KbServing) -> Self {
        Self {
            cfg,
            embedders: Mutex::default(),
        }
    }

    fn registry(&self) -> ApiResult<Registry> {
        self.cfg.root.as_ref().map(Registry::new).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "this server serves no knowledge bases",
            )
        })
    }

    /// The settings of knowledge base `name`, when `caller` may read it (else the same 404 as for none).
    pub async fn config(&self, caller: &Caller, name: &str) -> ApiResult<KbConfig> {
        lar_rag::kb::check_name(name).map_err(rag_error)?;
        let reg = self.registry()?;
        if !self.cfg.may_read(caller, name) {
            return Err(not_found(name));
        }
        let n = name.to_string();
        tokio::task::spawn_blocking(move || reg.get(&n))
            .await
            .map_err(ApiError::internal)?
            .map_err(rag_error)
    }

    /// The knowledge bases `caller` may read. One whose config cannot be read is left out (and logged), so it
    /// breaks no listing.
    pub async fn list(&self, caller: &Caller) -> ApiResult<Vec<KbConfig>> {
        let Ok(reg) = self.registry() else {
            return Ok(Vec::new());
        };
        let grants = self.cfg.clone();
        let caller = caller.clone();
        tokio::task::spawn_blocking(move || {
            let names = reg.names().map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(names
                .into_iter()
                .filter(|n| grants.may_read(&caller, n))
                .filter_map(|n| match reg.get(&n) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("knowledge base '{n}' left out of the list: {e}");
                        None
                    }
                })
                .collect())
        })
        .await
        .map_err(ApiError::internal)?
    }

    /// The embedder of a knowledge base: a store name through the manager, a directory opened once.
    pub async fn embedder(&self, st: &AppState, cfg: &KbConfig) -> ApiResult<OpenEmbedder> {
        let name = cfg.embedder.clone();
        if !Path::new(&name).is_absolute() {
            let lease = st
                .manager
                .get(&name, &LoadOptions::default(), None, Wait::Yes)
                .await?;
            let Runner::Embed(e) = &lease.model.runner else {
                return Err(ApiError::internal(format!(
                    "knowledge base '{}': its embedder '{name}' is a chat model",
                    cfg.name
                )));
            };
            return Ok(OpenEmbedder {
                embedder: e.clone(),
                _lease: Some(lease),
            });
        }
        if let Some(e) = self.cached(&name) {
            return Ok(OpenEmbedder {
                embedder: e,
                _lease: None,
            });
        }
        let threads = self.cfg.threads;
        let path = name.clone();
        let e = tokio::task::spawn_blocking(move || {
            lar_engine::SentenceEmbedder::open(Path::new(&path), threads)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("knowledge base embedder {name}: {e}")))?;
        let e: Arc<dyn Embedder> = Arc::new(e);
        self.embedders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, e.clone());
        Ok(OpenEmbedder {
            embedder: e,
            _lease: None,
        })
    }

    fn cached(&self, name: &str) -> Option<Arc<dyn Embedder>> {
        self.embedders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The hybrid search of `lar kb search` on knowledge base `name`.
    pub async fn search(
        &self,
        st: &AppState,
        caller: &Caller,
        name: &str,
        query: &str,
        opts: SearchOptions,
    ) -> ApiResult<Vec<Hit>> {
        opts.validate().map_err(rag_error)?;
        if query.trim().is_empty() {
            return Err(ApiError::field("query", "the query is empty"));
        }
        let cfg = self.config(caller, name).await?;
        let emb = self.embedder(st, &cfg).await?;
        let reg = self.registry()?;
        let q = query.to_string();
        tokio::task::spawn_blocking(move || {
            let store = reg.open(&cfg)?;
            lar_rag::search::search(store.as_ref(), emb.embedder.as_ref(), &q, &opts)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(rag_error)
    }
}

/// One knowledge base as `GET /v1/kb` lists it (a PostgreSQL URL is never shown).
fn kb_json(c: &KbConfig) -> Value {
    json!({
        "id": c.name,
        "object": "knowledge_base",
        "embedder": c.embedder,
        "dimensions": c.dim,
        "store": if c.is_postgres() { "postgres" } else { "sqlite" },
        "created": c.created,
        "model": format!("kb:{}", c.name),
    })
}

pub async fn list(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let all = st.kb.list(&caller).await?;
    Ok(Json(json!({
        "object": "list",
        "data": all.iter().map(kb_json).collect::<Vec<_>>(),
    })))
}

/// Most hits one search returns.
const MAX_K: i64 = 100;

const SEARCH_FIELDS: &[&str] = &["query", "k", "kind", "path", "since", "until", "from"];

#[derive(Deserialize)]
struct SearchBody {
    query: String,
    k: Option<i64>,
    #[serde(default)]
    kind: Option<Kinds>,
    path: Option<String>,
    since: Option<String>,
    until: Option<String>,
    from: Option<String>,
}

/// `kind`: one name or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Kinds {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1/kb/{name}/search`: `{"query", "k", "kind", "path", "since", "until", "from"}` (the filters of
/// `lar kb search`) -> `{"object": "list", "data": [hits, as lar kb search --json prints them]}`.
pub async fn search(
    State(st): State<AppState>,
    UrlPath(name): UrlPath<String>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Json<Value>> {
    check_fields(&obj, &[SEARCH_FIELDS])?;
    let b: SearchBody = typed(&obj)?;
    let k = match b.k {
        Some(k) if k > MAX_K => {
            return Err(ApiError::field(
                "k",
                format!("k is at most {MAX_K} (got {k})"),
            ));
        }
        Some(k) => crate::body::count("k", k, 1)?,
        None => SearchOptions::default().k,
    };
    let filter = lar_rag::filter::FilterSpec {
        kinds: match b.kind {
            None => Vec::new(),
            Some(Kinds::One(k)) => vec![k],
            Some(Kinds::Many(v)) => v,
        },
        path: b.path,
        since: b.since,
        until: b.until,
        sender: b.from,
    }
    .to_filter()
    .map_err(rag_error)?;
    let opts = SearchOptions {
        k,
        filter,
        ..Default::default()
    };
    let hits = st.kb.search(&st, &caller, &name, &b.query, opts).await?;
    Ok(Json(json!({"object": "list", "data": hits})))
}
