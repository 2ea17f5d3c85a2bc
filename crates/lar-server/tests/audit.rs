//! `lar serve --audit`: every generation, whole or streamed, on any route, is one record in the audit log with the
//! request's route and id, the key's fingerprint (never the key), the model, the parameters, the prompt's and
//! the answer's sha256 (and with `--audit-text` the texts themselves, exactly the answer the client got), token
//! counts and how it ended. Without `--audit-text`, no text.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use common::*;
use lar_lab::audit::{AuditLog, Filter, key_fingerprint, sha256_hex};
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::{Value, json};

async fn post_with_key(t: &TestApp, path: &str, body: &Value) -> Answer {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer k-one")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(&t.router, req).await
}

fn app_auditing(dir: &std::path::Path, text: bool) -> (TestApp, Arc<AuditLog>) {
    let log = Arc::new(AuditLog::open_home(dir).unwrap());
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec!["k-one".into()],
            audit: Some(log.clone()),
            audit_text: text,
            ..ServerConfig::default()
        },
    );
    (t, log)
}

#[tokio::test]
async fn every_generation_is_recorded_with_its_route_key_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (t, log) = app_auditing(dir.path(), true);
    let chat = json!({"model": "say", "messages": [{"role": "user", "content": "<say>Hello audit</say>"}],
                      "temperature": 0.3, "seed": 7});
    let a = post_with_key(&t, "/v1/chat/completions", &chat).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let answer = a.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answer, "Hello audit");
    let id = a.headers["x-request-id"].to_str().unwrap().to_string();
    let streamed = json!({"model": "say", "prompt": "<say>Bye</say>", "stream": true});
    let b = post_with_key(&t, "/api/generate", &streamed).await;
    assert_eq!(b.status, 200, "{}", b.text());
    let said: String = b
        .ndjson()
        .iter()
        .filter_map(|l| l["response"].as_str().map(str::to_string))
        .collect();
    assert_eq!(said, "Bye");

    let r = log.query(&Filter::default()).unwrap();
    assert_eq!(r.len(), 2, "{r:?}");
    let (c, g) = (&r[0], &r[1]);
    assert_eq!(c.source, "serve");
    assert_eq!(c.route.as_deref(), Some("/v1/chat/completions"));
    assert_eq!(c.request_id.as_deref(), Some(id.as_str()));
    assert_eq!(c.key, Some(key_fingerprint("k-one")));
    assert!(
        !format!("{r:?}").contains("k-one"),
        "the key itself is never written"
    );
    assert_eq!(c.model, "say:latest");
    assert!(c.model_sha256.as_deref().is_some_and(|s| !s.is_empty()));
    assert!((c.params["temperature"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    assert_eq!(c.params["seed"], 7);
    assert_eq!(c.output.as_deref(), Some(answer.as_str()));
    assert_eq!(c.output_sha256, sha256_hex(answer.as_bytes()));
    let prompt = c.prompt.as_deref().unwrap();
    assert!(prompt.contains("<say>Hello audit</say>"), "{prompt}");
    assert_eq!(c.prompt_sha256, sha256_hex(prompt.as_bytes()));
    assert!(c.prompt_tokens > 0);
    assert_eq!(c.completion_tokens, "Hello audit".chars().count());
    assert_eq!(c.finish, "stop");
    assert_eq!(g.route.as_deref(), Some("/api/generate"));
    assert_eq!(g.output.as_deref(), Some("Bye"));
    // Only this key's, and only since a time.
    let mine = log
        .query(&Filter {
            key: Some("k-one".into()),
            since: Some(c.time),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(mine.len(), 2);
}

#[tokio::test]
async fn without_audit_text_only_the_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let (t, log) = app_auditing(dir.path(), false);
    let chat =
        json!({"model": "say", "messages": [{"role": "user", "content": "<say>Private</say>"}]});
    let a = post_with_key(&t, "/v1/chat/completions", &chat).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = log.query(&Filter::default()).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].prompt.as_deref(), r[0].output.as_deref()),
        (None, None)
    );
    assert_eq!(r[0].output_sha256, sha256_hex(b"Private"));
}
