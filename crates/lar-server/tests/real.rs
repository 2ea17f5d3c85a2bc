//! The server on real models from a real store (SmolLM2-135M, Gemma 3 270M, Qwen2.5-Coder-0.5B): answers equal the
//! engine's own greedy output, the default chat model answers a plain question right, and a bounded load on a
//! real socket (32 streaming clients x 4 requests of mixed lengths) gives every stream the text of its request run
//! alone, then 16 clients that hang up mid-stream give their KV blocks back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lar_server::manager::Wait;
use lar_server::{AppState, Manager, ManagerConfig, ServerConfig, StoreCatalog};
use lar_store::{ModelName, Store};
use lar_testdata as testdata;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A store with the three chat models and the embedder, and an app on it with `parallel` sequences per model.
fn real_app(tag: &str, parallel: usize) -> (AppState, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("lar-server-real-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = Store::open(&root).unwrap();
    for (file, name) in [
        (testdata::SMOLLM2, "smollm2"),
        (testdata::GEMMA3, "gemma3"),
        (testdata::QWEN_CODER, "qwen2.5-coder"),
    ] {
        store
            .import(
                &testdata::model(file),
                &ModelName::parse(name).unwrap(),
                &|_, _, _| {},
            )
            .unwrap();
    }
    let engine = lar_engine::EngineConfig {
        threads: 2,
        parallel,
        max_seqs: parallel,
        ctx: Some(1024),
        ..Default::default()
    };
    let catalog = Arc::new(StoreCatalog::new(store, engine));
    let manager = Manager::new(
        catalog,
        ManagerConfig {
            parallel,
            max_queue: 256,
            ..Default::default()
        },
    );
    (AppState::new(manager, ServerConfig::default()), root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_equal_the_engines_own_greedy_output() {
    let (st, root) = real_app("greedy", 2);
    let router = lar_server::app(st.clone());
    let lease = st
        .manager
        .get("smollm2", &Default::default(), None, Wait::Yes)
        .await
        .unwrap();
    let lar_server::catalog::Runner::Chat(h) = lease.model.runner.clone() else {
        panic!("a chat model")
    };
    drop(lease);
    let msgs = [lar_types::ChatMessage::new(
        lar_types::Role::User,
        "Name three colors.",
    )];
    let prompt = h.chat_tokens(&msgs, None).unwrap();
    let want = tokio::task::spawn_blocking(move || {
        h.generate(prompt, lar_types::SamplingParams::greedy(24), |_| true)
    })
    .await
    .unwrap()
    .unwrap();
    let a = common::post_json(
        &router,
        "/v1/chat/completions",
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "Name three colors."}],
                "max_tokens": 24, "temperature": 0}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["choices"][0]["message"]["content"], want.text);
    // The default chat model answers a plain question right (SmolLM2 said "El Salvador").
    let a = common::post_json(
        &router,
        "/api/chat",
        &json!({"model": "qwen2.5-coder", "stream": false, "options": {"temperature": 0, "num_predict": 20},
                "messages": [{"role": "user", "content": "What is the capital of Spain? One word."}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let text = a.json()["message"]["content"].as_str().unwrap().to_string();
    assert!(text.contains("Madrid"), "{text}");
    // Gemma 3 through the Ollama API, streamed.
    let a = common::post_json(
        &router,
        "/api/generate",
        &json!({"model": "gemma3", "prompt": "Say hello.", "options": {"temperature": 0, "num_predict": 8}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let lines = a.ndjson();
    assert_eq!(lines.last().unwrap()["done"], true);
    assert!(lines.len() > 2);
    let _ = std::fs::remove_dir_all(root);
}

/// POSTs `body` on a fresh connection and reads the whole answer (status, body).
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &Value) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let b = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
        b.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    (
        status,
        text.split("\r\n\r\n")
            .skip(1)
            .collect::<Vec<_>>()
            .join("\r\n\r\n"),
    )
}

/// The content of an SSE chat stream (chunked transfer framing and all): the deltas joined.
fn sse_text(body: &str) -> String {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

fn vm_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_every_stream_gets_its_own_greedy_text() {
    let (st, root) = real_app("load", 8);
    drop(
        st.manager
            .get("smollm2", &Default::default(), None, Wait::Yes)
            .await
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(lar_server::serve(
        listener,
        lar_server::app(st.clone()),
        Default::default(),
        std::future::pending(),
    ));
    let request = |i: usize| {
        let topics = ["the sea", "a cat", "winter", "bread"];
        let lengths = [4, 8, 16, 24];
        json!({"model": "smollm2", "temperature": 0, "stream": true,
               "max_tokens": lengths[i % 4],
               "messages": [{"role": "user", "content": format!("Write about {}.", topics[i / 4 % 4])}]})
    };
    // Each distinct request alone first.
    let mut alone = Vec::new();
    for i in 0..16 {
        let (status, body) = http_post(addr, "/v1/chat/completions", &request(i)).await;
        assert_eq!(status, 200, "{body}");
        alone.push(sse_text(&body));
        assert!(!alone[i].is_empty());
    }
    let size = st.manager.loaded()[0].size;
    let rss_before = vm_rss();
    // 32 clients, 4 requests each, all streaming at once.
    let mut clients = Vec::new();
    for c in 0..32 {
        clients.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for k in 0..4 {
                let i = (c * 4 + k) % 16;
                let (status, body) = http_post(addr, "/v1/chat/completions", &request(i)).await;
                got.push((i, status, sse_text(&body), body.contains("[DONE]")));
            }
            got
        }));
    }
    let mut peak = rss_before;
    let mut results = Vec::new();
    for c in clients {
        peak = peak.max(vm_rss());
        results.extend(c.await.unwrap());
    }
    for (i, status, text, done) in results {
        assert_eq!(status, 200);
        assert!(done, "request {i} did not end with [DONE]");
        assert_eq!(
            text, alone[i],
            "request {i}: batched text differs from alone"
        );
    }
    // The whole server process grew by less than the load the planner sized (weights + KV + buffers) + 60 MB.
    let grew = peak.saturating_sub(rss_before);
    assert!(
        grew < size + (60 << 20),
        "RSS grew {grew} bytes; planned {size}"
    );
    // 16 clients hang up mid-stream: their blocks go back to the pool.
    let mut open = Vec::new();
    for i in 0..16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut b = request(i);
        b["max_tokens"] = json!(400);
        let b = b.to_string();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{b}",
            b.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await.unwrap();
        open.push(s);
    }
    let router = lar_server::app(st.clone());
    for _ in 0..200 {
        let m = common::get(&router, "/metrics").await.text();
        if gauge(&m, "lar_requests_running") + gauge(&m, "lar_requests_waiting") >= 16.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(open);
    for _ in 0..600 {
        let m = common::get(&router, "/metrics").await.text();
        let used = gauge(&m, "lar_kv_blocks_used");
        let running = gauge(&m, "lar_requests_running") + gauge(&m, "lar_requests_waiting");
        if used == 0.0 && running == 0.0 {
            assert_eq!(
                gauge(&m, "lar_engine_requests_cancelled_total"),
                16.0,
                "{m}"
            );
            let _ = std::fs::remove_dir_all(root);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("blocks not returned after clients hung up");
}

fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
