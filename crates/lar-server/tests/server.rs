//! What every route shares: API keys, `/health` while loading, `/metrics`, the queue limit, clients that vanish
//! mid-stream, and a real socket with clients that open connections and send nothing.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::*;
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn keyed() -> TestApp {
    app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec!["secret-key-1".into(), "secret-key-2".into()],
            ..Default::default()
        },
    )
}

#[tokio::test]
async fn with_a_key_every_route_but_health_needs_it() {
    let t = keyed();
    assert_eq!(get(&t.router, "/health").await.status, 200);
    let a = get(&t.router, "/v1/models").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");
    let a = get(&t.router, "/api/tags").await;
    assert_eq!(a.status, 401);
    assert!(a.json()["error"].is_string(), "Ollama's shape");
    assert_eq!(get(&t.router, "/metrics").await.status, 401);
    assert_eq!(get(&t.router, "/no/such/route").await.status, 401);
    let with = |h: &str, v: &str| {
        Request::get("/v1/models")
            .header(h, v)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&t.router, with("authorization", "Bearer secret-key-2"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&t.router, with("x-api-key", "secret-key-1"))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&t.router, with("authorization", "Bearer secret-key-3"))
            .await
            .status,
        401
    );
    assert_eq!(
        send(&t.router, with("authorization", "secret-key-1"))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn health_is_503_until_the_models_named_at_start_load() {
    let t = app();
    t.state.preload(vec!["slowload".into()]);
    let a = get(&t.router, "/health").await;
    assert_eq!(a.status, 503, "{}", a.text());
    eventually("the preload", || {
        t.state.ready.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    assert_eq!(get(&t.router, "/health").await.status, 200);
    assert_eq!(t.state.manager.loaded().len(), 1);
}

#[tokio::test]
async fn a_full_queue_answers_503_at_once() {
    let t = app_with(
        ManagerConfig {
            parallel: 1,
            max_queue: 1,
            ..Default::default()
        },
        ServerConfig::default(),
    );
    t.state.preload(vec!["slow".into()]);
    eventually("the preload", || {
        t.state.ready.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    let long = json!({"model": "slow", "prompt": [5, 6], "max_tokens": 100, "temperature": 0});
    let r1 = tokio::spawn({
        let r = t.router.clone();
        let b = long.clone();
        async move { post_json(&r, "/v1/completions", &b).await }
    });
    let r2 = tokio::spawn({
        let r = t.router.clone();
        let b = long.clone();
        async move { post_json(&r, "/v1/completions", &b).await }
    });
    let m = t.state.manager.clone();
    eventually("two requests in", || {
        m.loaded().first().is_some_and(|l| l.active() == 2)
    })
    .await;
    let started = std::time::Instant::now();
    let a = post_json(&t.router, "/v1/completions", &long).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["code"], "queue_full");
    assert!(a.headers.contains_key("retry-after"));
    let a = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "slow", "prompt": "w5", "raw": true}),
    )
    .await;
    assert_eq!(a.status, 503);
    assert!(a.json()["error"].as_str().unwrap().contains("busy"));
    for r in [r1, r2] {
        let a = r.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["usage"]["completion_tokens"], 100);
    }
}

/// A client that reads a few chunks of a stream and hangs up: its sequence is cancelled and its blocks go back,
/// as `/metrics` shows.
#[tokio::test]
async fn clients_that_vanish_mid_stream_free_their_blocks() {
    let t = app();
    t.state.preload(vec!["slow".into()]);
    eventually("the preload", || {
        t.state.ready.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut bodies = Vec::new();
    for i in 0..4 {
        let req = Request::post("/v1/chat/completions")
            .body(Body::from(
                json!({"model": "slow", "messages": [{"role": "user", "content": format!("w{}", 5 + i)}],
                       "max_tokens": 200, "stream": true})
                .to_string(),
            ))
            .unwrap();
        let resp = t.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        // Read until at least one token chunk came.
        let mut seen = 0;
        while seen < 3 {
            let f = body.frame().await.unwrap().unwrap();
            if f.data_ref().is_some() {
                seen += 1;
            }
        }
        bodies.push(body);
    }
    let metrics = get(&t.router, "/metrics").await.text();
    let used = gauge(&metrics, "lar_kv_blocks_used");
    assert!(used > 0.0, "{metrics}");
    assert_eq!(gauge(&metrics, "lar_requests_running"), 4.0);
    drop(bodies);
    let r = t.router.clone();
    for _ in 0..300 {
        let m = get(&r, "/metrics").await.text();
        if gauge(&m, "lar_kv_blocks_used") == 0.0 && gauge(&m, "lar_requests_running") == 0.0 {
            assert_eq!(gauge(&m, "lar_engine_requests_cancelled_total"), 4.0);
            assert!(
                m.contains("lar_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 4"),
                "{m}"
            );
            assert!(m.contains("lar_time_to_first_token_seconds_bucket"), "{m}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "blocks were not returned: {}",
        get(&r, "/metrics").await.text()
    );
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// On a real socket: 500 connections that send nothing do not stop a normal request, and are closed once the
/// header timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_block_a_real_request() {
    let t = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = lar_server::ServeConfig {
        header_timeout: Duration::from_millis(500),
    };
    tokio::spawn(lar_server::serve(
        listener,
        t.router.clone(),
        cfg,
        std::future::pending(),
    ));
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = json!({"model": "scripted", "prompt": "w5", "raw": true, "stream": false, "options": {"num_predict": 2}}).to_string();
    let req = format!(
        "POST /api/generate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered in time")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"done\":true"), "{out}");
    // The silent ones are closed by the server: a read returns 0 bytes (or a reset).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut closed = 0;
    for c in idle.iter_mut().take(20) {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(_)) => closed += 1, // a 408 answer before closing also counts
            Err(_) => {}
        }
    }
    assert_eq!(closed, 20, "silent connections stayed open");
}

#[tokio::test]
async fn idle_models_unload_after_keep_alive_and_lru_makes_room() {
    let t = app_with(
        ManagerConfig {
            keep_alive: lar_server::KeepAlive::For(Duration::from_millis(1500)),
            max_loaded: 2,
            ..Default::default()
        },
        ServerConfig::default(),
    );
    t.state.manager.start_sweeper(Duration::from_millis(50));
    let request = |m: &str| json!({"model": m, "prompt": "w5", "raw": true, "stream": false, "options": {"num_predict": 1}});
    post_json(&t.router, "/api/generate", &request("scripted")).await;
    post_json(&t.router, "/api/generate", &request("slow")).await;
    let names = |t: &TestApp| -> Vec<String> {
        t.state
            .manager
            .loaded()
            .iter()
            .map(|m| m.entry.name.clone())
            .collect()
    };
    assert_eq!(names(&t), ["scripted:latest", "slow:latest"]);
    // A third model: the least recently used idle one (scripted) makes room.
    post_json(&t.router, "/api/generate", &request("slowload")).await;
    assert_eq!(names(&t), ["slow:latest", "slowload:latest"]);
    // A request's own keep_alive outlives the server's; the others go when theirs runs out.
    let mut b = request("slow");
    b["keep_alive"] = json!("1h");
    post_json(&t.router, "/api/generate", &b).await;
    let m = t.state.manager.clone();
    eventually("the sweep", || m.loaded().len() == 1).await;
    assert_eq!(names(&t), ["slow:latest"]);
    let ps = get(&t.router, "/api/ps").await.json();
    let expires = ps["models"][0]["expires_at"].as_str().unwrap().to_string();
    assert!(expires > now_plus_minutes(50), "{expires}");
}

/// An RFC 3339 time `m` minutes from now, for comparing with `expires_at` as strings.
fn now_plus_minutes(m: u64) -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    lar_server::ollama::rfc3339(d.as_secs() + m * 60, 0)
}

#[tokio::test]
async fn a_context_beyond_the_models_own_loads_once_and_answers() {
    let t = app();
    let body = json!({"model": "scripted", "messages": [{"role": "user", "content": "w5"}], "stream": false,
                      "options": {"num_ctx": 100000, "num_predict": 2}});
    let a = post_json(&t.router, "/api/chat", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post_json(&t.router, "/api/chat", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // Loaded at the model's own 4 x CTX, once: asking again for more does not reload it.
    assert_eq!(t.catalog.opens.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(t.state.manager.loaded()[0].ctx, 4 * CTX);
}

#[tokio::test]
async fn a_model_loaded_for_a_request_that_never_came_back_still_unloads() {
    let t = app_with(
        ManagerConfig {
            keep_alive: lar_server::KeepAlive::For(Duration::from_millis(300)),
            load_wait: Duration::from_millis(20),
            ..Default::default()
        },
        ServerConfig::default(),
    );
    t.state.manager.start_sweeper(Duration::from_millis(50));
    let body = json!({"model": "slowload", "prompt": [5], "max_tokens": 1});
    assert_eq!(
        post_json(&t.router, "/v1/completions", &body).await.status,
        503
    );
    let m = t.state.manager.clone();
    eventually("the load", || m.loaded().len() == 1).await;
    eventually("the keep-alive", || m.loaded().is_empty()).await;
}
