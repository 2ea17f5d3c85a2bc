//! What the web UI's route tests share: keys, a keyed app, requests with headers, the CSRF token of a page.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::Request;
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::Value;

use super::{TestApp, app_with, get};

pub const KEY: &str = "ui-key-1";
pub const OTHER: &str = "ui-key-2";

pub fn keyed() -> TestApp {
    app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec![KEY.into(), OTHER.into()],
            ..Default::default()
        },
    )
}

/// The CSRF token a page carries in its `<meta name="lar-csrf">`.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"lar-csrf\" content=\"";
    let at = html.find(marker).expect("a csrf meta") + marker.len();
    html[at..].split('"').next().expect("its value").to_string()
}

pub fn req(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => b.body(Body::empty()),
    }
    .expect("request")
}

pub async fn page_token(t: &TestApp) -> String {
    let a = get(&t.router, "/ui").await;
    assert_eq!(a.status, 200, "{}", a.text());
    csrf_of(&a.text())
}
