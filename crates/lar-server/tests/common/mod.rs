//! What the server's tests share: a catalog of scripted models (the engine loop with a deterministic backend, so
//! every answer is known in advance), an app built on it, and helpers to send requests with `oneshot` and read
//! JSON, SSE and NDJSON answers.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lar_engine::engine_core::{CoreConfig, Limits};
use lar_engine::scripted::{self, ScriptedBackend};
use lar_server::catalog::{Kind, LoadOptions, ModelDetails, ModelEntry, Opened, Progress, Runner};
use lar_server::{ApiError, AppState, Catalog, Manager, ManagerConfig, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub const N_VOCAB: usize = 64;
pub const CTX: usize = 256;

/// Models: `scripted` (chat), `slow` (chat, 20 ms per forward pass), `slowload` (takes 300 ms to load), `embed`
/// (an embedder whose vectors are the texts' byte sums).
pub struct ScriptedCatalog {
    pub opens: AtomicUsize,
}

pub fn core_config(ctx: usize, n_blocks: usize) -> CoreConfig {
    CoreConfig {
        limits: Limits {
            ctx,
            n_vocab: N_VOCAB,
        },
        block_size: 4,
        n_blocks,
        max_batch_tokens: 64,
        max_seqs: 8,
        reserve_per_seq: 1,
        event_buffer: 1024,
        prefix_caching: true,
    }
}

fn entry(name: &str, kind: Kind) -> ModelEntry {
    ModelEntry {
        name: format!("{name}:latest"),
        size: 1000,
        digest: "ab".repeat(32),
        modified: 1_700_000_000,
        kind,
        format: "gguf".into(),
        family: "scripted".into(),
        parameter_size: "1.00M".into(),
        quantization_level: "F32".into(),
        context_length: CTX,
    }
}

pub struct SumEmbedder;

impl lar_types::Embedder for SumEmbedder {
    fn dim(&self) -> usize {
        3
    }
    fn max_tokens(&self) -> usize {
        8
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn embed(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(texts
            .iter()
            .map(|t| vec![t.len() as f32, t.bytes().map(f32::from).sum(), 0.5])
            .collect())
    }
}

impl Catalog for ScriptedCatalog {
    fn list(&self) -> Result<Vec<ModelEntry>, ApiError> {
        Ok(vec![
            entry("embed", Kind::Embed),
            entry("scripted", Kind::Chat),
            entry("slow", Kind::Chat),
            entry("slowload", Kind::Chat),
        ])
    }

    fn entry(&self, name: &str) -> Result<ModelEntry, ApiError> {
        let n = lar_server::catalog::parse_name(name)?.to_string();
        self.list()?
            .into_iter()
            .find(|e| e.name == n)
            .ok_or_else(|| ApiError::model_not_found(name))
    }

    fn details(&self, name: &str) -> Result<ModelDetails, ApiError> {
        self.entry(name)?;
        Ok(ModelDetails {
            template: Some("chatml".into()),
            model_info: [("general.architecture".to_string(), "scripted".into())].into(),
        })
    }

    fn open(&self, name: &str, opts: &LoadOptions) -> Result<Opened, ApiError> {
        let e = self.entry(name)?;
        self.opens.fetch_add(1, Ordering::SeqCst);
        if e.kind == Kind::Embed {
            return Ok(Opened {
                runner: Runner::Embed(Arc::new(SumEmbedder)),
                size: 10,
                ctx: 0,
            });
        }
        let ctx = opts.ctx.unwrap_or(CTX);
        let mut b = ScriptedBackend::new(N_VOCAB, 4, 4 * ctx / 4);
        if e.name.starts_with("slow:") {
            b.delay = Duration::from_millis(20);
        }
        if e.name.starts_with("slowload:") {
            std::thread::sleep(Duration::from_millis(300));
        }
        let h = scripted::start(b, core_config(ctx, 4 * ctx / 4)).map_err(ApiError::from)?;
        Ok(Opened {
            runner: Runner::Chat(h),
            size: 1000,
            ctx,
        })
    }

    fn pull(&self, source: &str, _: Option<&str>, _: Progress) -> Result<ModelEntry, ApiError> {
        Err(ApiError::bad_request(format!(
            "no registry here for {source}"
        )))
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.entry(name).map(|_| ())
    }

    fn copy(&self, src: &str, _: &str) -> Result<(), ApiError> {
        self.entry(src).map(|_| ())
    }
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub catalog: Arc<ScriptedCatalog>,
}

pub fn app_with(mcfg: ManagerConfig, scfg: ServerConfig) -> TestApp {
    let catalog = Arc::new(ScriptedCatalog {
        opens: AtomicUsize::new(0),
    });
    let manager = Manager::new(catalog.clone(), mcfg);
    let state = AppState::new(manager, scfg);
    TestApp {
        router: lar_server::app(state.clone()),
        state,
        catalog,
    }
}

pub fn app() -> TestApp {
    app_with(ManagerConfig::default(), ServerConfig::default())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body.
    pub fn sse(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    /// The lines of an NDJSON body, parsed.
    pub fn ndjson(&self) -> Vec<Value> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect()
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn post(router: &Router, path: &str, body: impl Into<Body>) -> Answer {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    send(router, req).await
}

pub async fn post_json(router: &Router, path: &str, v: &Value) -> Answer {
    post(router, path, v.to_string()).await
}

pub async fn get(router: &Router, path: &str) -> Answer {
    send(
        router,
        Request::get(path).body(Body::empty()).expect("request"),
    )
    .await
}

/// The text the scripted tokenizer gives `ids`.
pub fn words(ids: &[u32]) -> String {
    let tok = scripted::tokenizer(N_VOCAB).expect("tokenizer");
    tok.decode(ids, false)
}

/// The prompt tokens `messages` become for a scripted model (ChatML, as its catalog entry says).
pub fn chat_prompt(messages: &[lar_types::ChatMessage]) -> Vec<u32> {
    let tok = Arc::new(scripted::tokenizer(N_VOCAB).expect("tokenizer"));
    lar_engine::ModelInfo {
        tokenizer: tok,
        ctx: CTX,
        n_vocab: N_VOCAB,
        template: Some("chatml".into()),
        device: "scripted".into(),
    }
    .chat_tokens(messages, None)
    .expect("chat tokens")
}

/// Waits until `f` holds (or panics after 5 s).
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
