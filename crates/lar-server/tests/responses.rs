//! OpenAI's Responses API on scripted models: the output text is the greedy continuation of the conversation, a
//! stored response is continued by `previous_response_id` (its whole conversation rendered again), read back and
//! deleted; `store: false` stores nothing; the event stream adds up to the same text; bad items are 400s.

mod common;

use common::*;
use lar_engine::scripted::continuation;
use lar_types::{ChatMessage, Role};
use serde_json::{Value, json};

fn events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn create_continue_read_delete() {
    let t = app();
    t.load("scripted").await;
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "scripted", "input": "w7 w8", "instructions": "w3", "max_output_tokens": 5, "temperature": 0}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r1 = a.json();
    let p1 = chat_prompt(&[
        ChatMessage::new(Role::System, "w3"),
        ChatMessage::new(Role::User, "w7 w8"),
    ]);
    let out1 = words(&continuation(&p1, 5, N_VOCAB));
    assert_eq!(r1["object"], "response");
    assert_eq!(r1["status"], "incomplete");
    assert_eq!(r1["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(r1["output"][0]["type"], "message");
    assert_eq!(r1["output"][0]["content"][0]["text"], out1);
    assert_eq!(r1["usage"]["input_tokens"], p1.len());
    assert_eq!(r1["usage"]["output_tokens"], 5);
    assert_eq!(r1["instructions"], "w3");
    let id = r1["id"].as_str().unwrap().to_string();

    // Continued: the earlier turn and its answer come first (the instructions do not carry over).
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "scripted", "input": [{"role": "user", "content": [{"type": "input_text", "text": "w9"}]}],
                "previous_response_id": id, "max_output_tokens": 4, "temperature": 0, "store": false}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r2 = a.json();
    let p2 = chat_prompt(&[
        ChatMessage::new(Role::User, "w7 w8"),
        ChatMessage::new(Role::Assistant, out1.clone()),
        ChatMessage::new(Role::User, "w9"),
    ]);
    assert_eq!(
        r2["output"][0]["content"][0]["text"],
        words(&continuation(&p2, 4, N_VOCAB))
    );
    assert_eq!(r2["usage"]["input_tokens"], p2.len());
    assert_eq!(r2["previous_response_id"], id.as_str());
    // store: false kept nothing; the first is there to read, then deleted.
    let a = get(
        &t.router,
        &format!("/v1/responses/{}", r2["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = get(&t.router, &format!("/v1/responses/{id}")).await;
    assert_eq!(a.json()["output"], r1["output"]);
    let del = axum::http::Request::delete(format!("/v1/responses/{id}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&t.router, del).await.json()["deleted"], true);
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "scripted", "input": "w9", "previous_response_id": id}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(a.json()["error"]["param"], "previous_response_id");
}

#[tokio::test]
async fn the_event_stream_adds_up() {
    let t = app();
    t.load("scripted").await;
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "scripted", "input": "w5", "max_output_tokens": 6, "temperature": 0, "stream": true}),
    )
    .await;
    assert_eq!(a.status, 200);
    let ev = events(&a.text());
    let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..4],
        &[
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(
        &types[types.len() - 4..],
        &[
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete"
        ]
    );
    let seqs: Vec<u64> = ev
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..ev.len() as u64).collect::<Vec<_>>());
    let deltas: String = ev
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    let want = words(&continuation(
        &chat_prompt(&[ChatMessage::new(Role::User, "w5")]),
        6,
        N_VOCAB,
    ));
    assert_eq!(deltas, want);
    let last = ev.last().unwrap();
    assert_eq!(last["response"]["output"][0]["content"][0]["text"], want);
    let id = last["response"]["id"].as_str().unwrap();
    assert_eq!(
        get(&t.router, &format!("/v1/responses/{id}")).await.status,
        200,
        "stored"
    );
}

#[tokio::test]
async fn bad_requests() {
    let t = app();
    let cases = [
        (json!({"model": "scripted"}), "input"),
        (json!({"model": "scripted", "input": 5}), "input"),
        (
            json!({"model": "scripted", "input": [{"type": "function_call_output", "call_id": "c9", "output": "x"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "scripted", "input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{x"}]}),
            "input[0].arguments",
        ),
        (
            json!({"model": "scripted", "input": [{"type": "web_search_call", "id": "ws_1"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "scripted", "input": [{"type": "reasoning", "summary": []}]}),
            "input",
        ),
        (
            json!({"model": "scripted", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
            "input[0].content[0]",
        ),
        (
            json!({"model": "scripted", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "scripted", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "scripted", "input": "x", "reasoning": {"effort": "high"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "scripted", "input": "x", "text": {"format": {"type": "json_object"}}}),
            "text.format",
        ),
        (
            json!({"model": "scripted", "input": "x", "what": 1}),
            "what",
        ),
    ];
    for (body, param) in cases {
        let a = post_json(&t.router, "/v1/responses", &body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.json()["error"]["param"], param, "{body}: {}", a.text());
    }
}
