//! Lar's HTTP server as a library: [`app`] builds the axum `Router` from an [`AppState`], and [`serve`] runs it on a
//! listener with the connection limits a public socket needs. The CLI only parses flags into these.
//!
//! One request's way through: the middleware ([`http`]: request id, auth, metrics, logs) -> a route of [`openai`],
//! [`ollama`] or [`anthropic`], which reads its body ([`body`]: UTF-8, JSON, every field known and typed) into engine types (the
//! prompt rendered and tokenized, sampling parameters validated by `lar_types`) -> the model manager
//! ([`manager`]: load on demand, keep-alive, LRU unload, queue limit) -> the engine handle's `submit` -> the
//! engine's events, turned into the API's JSON, SSE or NDJSON as they come ([`generation`]).

pub mod anthropic;
pub mod body;
pub mod catalog;
pub mod error;
pub mod generation;
pub mod http;
pub mod kb;
pub mod llama;
pub mod manager;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod serve;
pub mod structured;
pub mod testing;
pub mod web;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post};

pub use catalog::{Catalog, StoreCatalog};
pub use error::{ApiError, Shape};
pub use manager::{KeepAlive, Manager, ManagerConfig};
pub use serve::{ServeConfig, serve};

/// What the routes need beyond the model manager.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Keys accepted in `Authorization: Bearer` or `X-Api-Key`; empty: no key asked.
    pub api_keys: Vec<String>,
    /// Origins allowed by CORS; empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Write prompts and outputs to the log (off: only sizes and timings).
    pub log_prompts: bool,
    /// The SQLite file `/v1/responses` stores responses in (`None`: in memory, gone with the server).
    pub responses_db: Option<std::path::PathBuf>,
    /// The SQLite file the web UI keeps conversations in (`None`: in memory, gone with the server).
    pub ui_db: Option<std::path::PathBuf>,
    /// The run records the web UI's lab shows and adds benchmarks to (`runs.sqlite`; `None`: no lab).
    pub runs_db: Option<std::path::PathBuf>,
    /// Knowledge bases served (`/v1/kb`, `kb:NAME` models) and who may read them.
    pub kb: kb::KbServing,
    /// Record every generation in this audit log (`--audit`).
    pub audit: Option<Arc<lar_lab::audit::AuditLog>>,
    /// With the audit log: keep the prompt and output texts, not only their sha256 (`--audit-text`).
    pub audit_text: bool,
    /// How long a stream with nothing to send (a long prefill, a queue) waits before a keep-alive: an SSE comment,
    /// or a space before the next NDJSON line, so proxies do not cut it.
    pub stream_keepalive: std::time::Duration,
}

/// How long a quiet stream waits before a keep-alive unless configured ([`ServerConfig::stream_keepalive`]).
pub const DEFAULT_STREAM_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            cors_origins: Vec::new(),
            body_limit: 32 << 20,
            log_prompts: false,
            responses_db: None,
            ui_db: None,
            runs_db: None,
            kb: kb::KbServing::default(),
            audit: None,
            audit_text: false,
            stream_keepalive: DEFAULT_STREAM_KEEPALIVE,
        }
    }
}

/// The server's state, shared by every route.
#[derive(Clone)]
pub struct AppState {
    pub manager: Arc<Manager>,
    pub metrics: Arc<metrics::Metrics>,
    pub cfg: Arc<ServerConfig>,
    pub started: Instant,
    /// False until the models named at start have loaded (`/health` answers 503 until then).
    pub ready: Arc<AtomicBool>,
    /// Stored `/v1/responses` answers.
    pub responses: Arc<responses::store::ResponseStore>,
    pub kb: Arc<kb::KnowledgeBases>,
    /// The web UI's sessions and conversations.
    pub web: Arc<web::Web>,
}

impl AppState {
    pub fn new(manager: Arc<Manager>, cfg: ServerConfig) -> Self {
        Self {
            responses: Arc::new(responses::store::ResponseStore::new(
                cfg.responses_db.clone(),
            )),
            kb: Arc::new(kb::KnowledgeBases::new(cfg.kb.clone())),
            web: Arc::new(web::Web::new(cfg.ui_db.clone())),
            manager,
            metrics: Arc::default(),
            cfg: Arc::new(cfg),
            started: Instant::now(),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Loads `models` (in the background), `/health` answering 503 until every one has loaded or failed.
    pub fn preload(&self, models: Vec<String>) {
        if models.is_empty() {
            return;
        }
        self.ready.store(false, Ordering::SeqCst);
        let st = self.clone();
        tokio::spawn(async move {
            for m in models {
                let opts = catalog::LoadOptions::default();
                match st.manager.get(&m, &opts, None, manager::Wait::Yes).await {
                    Ok(lease) => drop(lease),
                    Err(e) => tracing::error!("{m}: {}", e.message),
                }
            }
            st.ready.store(true, Ordering::SeqCst);
        });
    }
}

/// The whole API: OpenAI's under `/v1`, Ollama's under `/api` and `/`, `/health`, `/metrics`, and the web UI
/// under `/ui` (where `/` sends a browser).
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(http::health))
        .route("/metrics", get(http::metrics))
        .route("/v1/models", get(openai::models::list))
        .route("/v1/models/{*id}", get(openai::models::one))
        .route("/v1/chat/completions", post(openai::chat::handle))
        .route("/v1/completions", post(openai::completions::handle))
        .route("/v1/embeddings", post(openai::embeddings::handle))
        .route("/v1/messages", post(anthropic::messages::handle))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/responses", post(responses::create))
        .route(
            "/v1/responses/{id}",
            get(responses::get_one).delete(responses::delete),
        )
        .route("/v1/kb", get(kb::list))
        .route("/v1/kb/{name}/search", post(kb::search))
        .route("/tokenize", post(llama::tokenize))
        .route("/detokenize", post(llama::detokenize))
        .route("/tokenizer_info", get(llama::tokenizer_info))
        .route("/apply-template", post(llama::apply_template))
        .route("/lora-adapters", get(llama::lora_adapters))
        .route("/", get(ollama::root).head(ollama::root))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::models::tags))
        .route("/api/ps", get(ollama::models::ps))
        .route("/api/show", post(ollama::models::show))
        .route("/api/delete", axum::routing::delete(ollama::models::delete))
        .route("/api/copy", post(ollama::models::copy))
        .route("/api/pull", post(ollama::pull::handle))
        .route("/api/generate", post(ollama::generate::handle))
        .route("/api/chat", post(ollama::chat::handle))
        .route("/api/embed", post(ollama::embed::embed))
        .route("/api/embeddings", post(ollama::embed::embeddings))
        .merge(web::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::track,
        ));
    http::outer_layers(routes.fallback(http::not_found), &state).with_state(state)
}
