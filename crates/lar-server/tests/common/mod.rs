//! What the server's tests share: a catalog of scripted models (the engine loop with a deterministic backend, so
//! every answer is known in advance), an app built on it, and helpers to send requests with `oneshot` and read
//! JSON, SSE and NDJSON answers.
#![allow(dead_code)]

pub mod kbs;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lar_engine::scripted;
pub use lar_server::testing::{CTX, N_VOCAB, ScriptedCatalog};
use lar_server::{AppState, Manager, ManagerConfig, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub catalog: Arc<ScriptedCatalog>,
}

impl TestApp {
    /// Loads `model` and waits for it.
    pub async fn load(&self, model: &str) {
        let lease = self
            .state
            .manager
            .get(
                model,
                &Default::default(),
                None,
                lar_server::manager::Wait::Yes,
            )
            .await
            .unwrap_or_else(|e| panic!("loading {model}: {e}"));
        drop(lease);
    }
}

pub fn app_with(mcfg: ManagerConfig, scfg: ServerConfig) -> TestApp {
    app_of(ScriptedCatalog::default(), mcfg, scfg)
}

/// The app on `catalog`.
pub fn app_of(catalog: ScriptedCatalog, mcfg: ManagerConfig, scfg: ServerConfig) -> TestApp {
    let catalog = Arc::new(catalog);
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

/// The `event:` names and parsed `data:` of an SSE body (a `data:` that is not JSON, as `[DONE]`, is null).
pub fn events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for l in text.lines() {
        if let Some(n) = l.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            out.push((name.clone(), serde_json::from_str(d).unwrap_or(Value::Null)));
        }
    }
    out
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
        loras: Vec::new(),
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
