//! Anthropic's Messages API through `oneshot` on scripted models: the message is the greedy continuation of the
//! prompt the system and messages render to, the event stream comes in Anthropic's order and adds up to the same
//! text, stop sequences are reported as such, `count_tokens` counts the same prompt, tool results must answer a
//! call, errors come in Anthropic's shape, and `x-api-key` is a key.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use lar_engine::scripted::continuation;
use lar_server::{ManagerConfig, ServerConfig};
use lar_types::{ChatMessage, Role};
use serde_json::{Value, json};

fn body(extra: Value) -> Value {
    let mut b = json!({"model": "scripted", "max_tokens": 6, "temperature": 0, "system": "w3 w4",
                       "messages": [{"role": "user", "content": "w7 w8"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

fn prompt() -> Vec<u32> {
    chat_prompt(&[
        ChatMessage::new(Role::System, "w3 w4"),
        ChatMessage::new(Role::User, "w7 w8"),
    ])
}

#[tokio::test]
async fn a_message_whole_and_streamed() {
    let t = app();
    t.load("scripted").await;
    let want = words(&continuation(&prompt(), 6, N_VOCAB));
    let a = post_json(&t.router, "/v1/messages", &body(json!({}))).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().unwrap().starts_with("msg"));
    assert_eq!(v["content"], json!([{"type": "text", "text": want}]));
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["input_tokens"], prompt().len());
    assert_eq!(v["usage"]["output_tokens"], 6);

    let a = post_json(&t.router, "/v1/messages", &body(json!({"stream": true}))).await;
    assert_eq!(a.status, 200);
    let ev = events(&a.text());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        &["message_start", "ping", "content_block_start"],
        "{names:?}"
    );
    assert_eq!(
        &names[names.len() - 3..],
        &["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(
        ev.iter().all(|(n, d)| d["type"] == n.as_str()),
        "each event's data names it"
    );
    assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], prompt().len());
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            assert_eq!(d["index"], 0);
            d["delta"]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, want);
    let delta = &ev[ev.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens");
    assert_eq!(delta["usage"]["output_tokens"], 6);

    // A stop sequence: the text ends before it, and the answer says which.
    let words_out: Vec<&str> = want.split_inclusive(' ').collect();
    let stop = words_out[2].trim().to_string();
    let a = post_json(
        &t.router,
        "/v1/messages",
        &body(json!({"stop_sequences": ["w999", stop]})),
    )
    .await;
    let v = a.json();
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], stop);
    assert!(!v["content"][0]["text"].as_str().unwrap().contains(&stop));

    let a = post_json(&t.router, "/v1/messages/count_tokens", &body(json!({}))).await;
    assert_eq!(a.json(), json!({"input_tokens": prompt().len()}));
}

#[tokio::test]
async fn errors_in_anthropics_shape() {
    let t = app();
    let cases = [
        (json!({"max_tokens": null}), 400, "max_tokens"),
        (json!({"messages": []}), 400, "messages"),
        (
            json!({"messages": [{"role": "system", "content": "x"}]}),
            400,
            "role",
        ),
        (json!({"model": "nope"}), 404, "nope"),
        (
            json!({"thinking": {"type": "enabled", "budget_tokens": 100}}),
            400,
            "thinking",
        ),
        (json!({"temperature": "hot"}), 400, "temperature"),
        (json!({"surprise": 1}), 400, "surprise"),
        (
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            400,
            "web_search",
        ),
        (json!({"tools": [{"name": "f"}]}), 400, "input_schema"),
        (json!({"tool_choice": {"type": "any"}}), 400, "tool_choice"),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "1"}]}]}),
            400,
            "no earlier tool_use block has the id 'x'",
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            400,
            "image",
        ),
    ];
    for (extra, status, needle) in cases {
        let a = post_json(&t.router, "/v1/messages", &body(extra.clone())).await;
        assert_eq!(a.status, status, "{extra}: {}", a.text());
        let v = a.json();
        assert_eq!(v["type"], "error", "{v}");
        let want = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(v["error"]["type"], want, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{extra}: {v}"
        );
    }
    let a = post(&t.router, "/v1/messages", "{not json").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["type"], "error");
    // A tool round trip in the history is read: the call, then its result.
    let history = json!({"messages": [
        {"role": "user", "content": "w7"},
        {"role": "assistant", "content": [{"type": "text", "text": "w9"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "w11"}]}]},
    ]});
    let a = post_json(&t.router, "/v1/messages", &body(history)).await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn x_api_key_is_a_key() {
    let t = app_with(
        ManagerConfig::default(),
        ServerConfig {
            api_keys: vec!["sekrit".into()],
            ..Default::default()
        },
    );
    let a = post_json(&t.router, "/v1/messages", &body(json!({}))).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["type"], "authentication_error");
    let req = Request::post("/v1/messages")
        .header("content-type", "application/json")
        .header("x-api-key", "sekrit")
        .header("anthropic-version", "2023-06-01")
        .body(Body::from(body(json!({})).to_string()))
        .unwrap();
    let a = send(&t.router, req).await;
    assert_eq!(a.status, 200, "{}", a.text());
}
