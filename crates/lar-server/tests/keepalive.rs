//! Streams keep proxies from cutting them while nothing comes (a long prefill, a queue): on the scripted `slow`
//! model (20 ms a pass) with `stream_keepalive` at 5 ms, an SSE stream (OpenAI, Anthropic) carries `: keep-alive`
//! comments before its first token and an Ollama NDJSON stream spaces before its first line, each still parsed
//! whole by a client; with the default (10 s) the same requests carry none, so the setting is what sends them.

mod common;

use std::time::Duration;

use common::{app_with, post_json};
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::{Value, json};

async fn app(every: Option<Duration>) -> common::TestApp {
    let mut cfg = ServerConfig::default();
    if let Some(d) = every {
        cfg.stream_keepalive = d;
    }
    let t = app_with(ManagerConfig::default(), cfg);
    t.load("slow").await;
    t
}

/// Where the first keep-alive comment and the first content token come in an SSE body (by line).
fn sse_order(text: &str, content: impl Fn(&Value) -> bool) -> (Option<usize>, Option<usize>) {
    let lines: Vec<&str> = text.lines().collect();
    let ka = lines.iter().position(|l| *l == ": keep-alive");
    let first = lines.iter().position(|l| {
        l.strip_prefix("data: ")
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .is_some_and(|v| content(&v))
    });
    (ka, first)
}

fn openai_content(v: &Value) -> bool {
    v["choices"][0]["delta"]["content"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
}

fn anthropic_content(v: &Value) -> bool {
    v["type"] == "content_block_delta"
}

#[tokio::test]
async fn sse_streams_send_keep_alives_before_the_first_token() {
    let chat = json!({"model": "slow", "messages": [{"role": "user", "content": "w1 w2 w3"}],
                      "max_tokens": 4, "temperature": 0, "stream": true});
    let msgs = json!({"model": "slow", "messages": [{"role": "user", "content": "w1 w2 w3"}],
                      "max_tokens": 4, "temperature": 0, "stream": true});
    let t = app(Some(Duration::from_millis(5))).await;
    let a = post_json(&t.router, "/v1/chat/completions", &chat).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (ka, first) = sse_order(&a.text(), openai_content);
    assert!(
        matches!((ka, first), (Some(k), Some(f)) if k < f),
        "keep-alive {ka:?}, first token {first:?}:\n{}",
        a.text()
    );
    // The client's view is unchanged: the payloads still end with [DONE].
    assert_eq!(a.sse().last().map(String::as_str), Some("[DONE]"));

    let a = post_json(&t.router, "/v1/messages", &msgs).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let (ka, first) = sse_order(&a.text(), anthropic_content);
    assert!(
        matches!((ka, first), (Some(k), Some(f)) if k < f),
        "keep-alive {ka:?}, first token {first:?}:\n{}",
        a.text()
    );

    let quiet = app(None).await;
    for (path, body) in [("/v1/chat/completions", &chat), ("/v1/messages", &msgs)] {
        let a = post_json(&quiet.router, path, body).await;
        assert!(
            !a.text().contains(": keep-alive"),
            "{path} sent a keep-alive within 10 s"
        );
    }
}

#[tokio::test]
async fn ndjson_streams_send_spaces_before_the_first_line() {
    let body = json!({"model": "slow", "messages": [{"role": "user", "content": "w1 w2 w3"}],
                      "options": {"num_predict": 4, "temperature": 0}});
    let t = app(Some(Duration::from_millis(5))).await;
    let a = post_json(&t.router, "/api/chat", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let text = a.text();
    assert!(text.starts_with(' '), "no keep-alive first: {text:?}");
    let lines = a.ndjson();
    assert_eq!(lines.last().map(|l| l["done"].clone()), Some(json!(true)));
    assert!(
        lines.iter().all(|l| l.is_object()),
        "every line a whole object"
    );

    let quiet = app(None).await;
    let a = post_json(&quiet.router, "/api/chat", &body).await;
    assert!(
        a.text().starts_with('{'),
        "a space within 10 s: {:?}",
        a.text()
    );
}
