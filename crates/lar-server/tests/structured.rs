//! Structured output through the API on scripted models. The scripted vocabulary is words (` w3` ... ` w63`), so a
//! choice or a regular expression over words is something it can be held to: every sequence, of every request
//! shape, streamed or not, must match it, where the unconstrained model would have said something else. A
//! format its vocabulary cannot write is refused, never answered unconstrained; bad formats are 400s.

mod common;

use common::*;
use serde_json::{Value, json};

fn chat(extra: Value) -> Value {
    let mut body = json!({
        "model": "scripted",
        "messages": [{"role": "user", "content": "w5 w6"}],
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": 7,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn three_words(s: &str) -> bool {
    let w: Vec<&str> = s.split(' ').collect();
    w.len() == 4
        && w[0].is_empty()
        && w[1..]
            .iter()
            .all(|x| x.len() == 3 && x.starts_with('w') && (b'1'..=b'2').contains(&x.as_bytes()[1]))
}

#[tokio::test]
async fn every_choice_of_every_shape_matches_the_constraint() {
    let t = app();
    let choice = json!({"structured_outputs": {"choice": [" w9 w10", " w7"]}, "n": 6});
    let a = post_json(&t.router, "/v1/chat/completions", &chat(choice.clone())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let texts: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 6);
    assert!(
        texts.iter().all(|t| [" w9 w10", " w7"].contains(t)),
        "{texts:?}"
    );
    assert!(
        v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["finish_reason"] == "stop")
    );

    // Streamed, the pieces of each choice add up to a match too.
    let mut body = chat(json!({"structured_outputs": {"regex": "( w[12][0-9]){3}"}, "n": 3}));
    body["stream"] = json!(true);
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut per = vec![String::new(); 3];
    for d in a.sse().iter().filter(|d| d.as_str() != "[DONE]") {
        let c: Value = serde_json::from_str(d).unwrap();
        for ch in c["choices"].as_array().unwrap() {
            let i = ch["index"].as_u64().unwrap() as usize;
            per[i].push_str(ch["delta"]["content"].as_str().unwrap_or(""));
        }
    }
    assert!(per.iter().all(|s| three_words(s)), "{per:?}");

    // OpenAI completions and Ollama's generate take it as well.
    let a = post_json(
        &t.router,
        "/v1/completions",
        &json!({"model": "scripted", "prompt": "w4", "max_tokens": 12, "temperature": 1.0, "seed": 1,
                "structured_outputs": {"regex": "( w[12][0-9]){3}"}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(three_words(
        a.json()["choices"][0]["text"].as_str().unwrap()
    ));

    // Greedy and unconstrained, the model says something else: the constraint did the work.
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat(json!({"temperature": 0})),
    )
    .await;
    let free = a.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !three_words(&free) && free != " w7" && free != " w9 w10",
        "{free}"
    );
}

#[tokio::test]
async fn a_format_the_vocabulary_cannot_write_is_refused_not_ignored() {
    let t = app();
    // No scripted token contains '{'.
    let a = post_json(
        &t.router,
        "/api/chat",
        &json!({"model": "scripted", "messages": [{"role": "user", "content": "w5"}], "format": "json",
                "stream": false}),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(
        a.text().contains("no token of this model's vocabulary"),
        "{}",
        a.text()
    );
    let a = post_json(&t.router, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(a.status, 200, "the server goes on: {}", a.text());
}

#[tokio::test]
async fn bad_formats_are_400s_that_name_the_field() {
    let t = app();
    let cases = [
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
            "response_format.json_schema.name",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": "a string"}}}),
            "response_format.json_schema.schema",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
                   "schema": {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}}}}),
            "response_format",
        ),
        (
            json!({"structured_outputs": {"regex": "(", "choice": ["a"]}}),
            "structured_outputs",
        ),
        (
            json!({"structured_outputs": {"regex": "(unclosed"}}),
            "structured_outputs",
        ),
        (
            json!({"structured_outputs": {"grammar": "start: nope"}}),
            "structured_outputs",
        ),
        (
            json!({"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "a"}}),
            "structured_outputs",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"description": "no name"}}]}),
            "tools[0].function.name",
        ),
        (json!({"tools": [{"type": "retrieval"}]}), "tools[0].type"),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",
                   "properties": {"x": {"type": "array", "uniqueItems": true}}}}}]}),
            "tools",
        ),
    ];
    for (extra, param) in cases {
        let a = post_json(&t.router, "/v1/chat/completions", &chat(extra.clone())).await;
        assert_eq!(a.status, 400, "{extra}: {}", a.text());
        let e = a.json();
        assert_eq!(e["error"]["param"], param, "{extra}: {e}");
    }
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat(
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
              "schema": {"type": "array", "uniqueItems": true}}}}),
        ),
    )
    .await;
    assert!(
        a.text().contains("uniqueItems"),
        "the construct is named: {}",
        a.text()
    );
    // Tool messages must answer a call that was made; calls' arguments must be JSON.
    let msgs = json!([
        {"role": "user", "content": "w5"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c2", "content": "w9"},
    ]);
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat(json!({"messages": msgs})),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["param"], "messages[2].tool_call_id");
    let mut bad = msgs.clone();
    bad[1]["tool_calls"][0]["function"]["arguments"] = json!("{a: 1");
    bad[2]["tool_call_id"] = json!("c1");
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat(json!({"messages": bad})),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("arguments is not JSON"), "{}", a.text());
    for format in [json!("yaml"), json!(3), json!(false)] {
        let a = post_json(
            &t.router,
            "/api/generate",
            &json!({"model": "scripted", "prompt": "w5", "format": format, "stream": false}),
        )
        .await;
        assert_eq!(a.status, 400, "{format}: {}", a.text());
    }
    let a = post_json(&t.router, "/v1/chat/completions", &chat(json!({}))).await;
    assert_eq!(a.status, 200, "healthy after: {}", a.text());
}

/// A format that dead-ends on this vocabulary mid-answer (` w{d}` is allowed as the start of ` w{d}N`, but no
/// token starts with a digit): the client is told why, in every shape, and it is never a 500.
#[tokio::test]
async fn a_format_that_dead_ends_is_explained_not_a_500() {
    let t = app();
    t.load("scripted").await;
    // Greedy picks the model's own next token when the grammar allows it: choose a digit it does not start with.
    let p = chat_prompt(&[lar_types::ChatMessage::new(lar_types::Role::User, "w5 w6")]);
    let first = words(&lar_engine::scripted::continuation(&p, 1, N_VOCAB));
    let d = (3..=5)
        .find(|d| !first.starts_with(&format!(" w{d}")))
        .unwrap();
    let regex = format!(" w{d}[0-9]");
    let body = chat(json!({"temperature": 0, "structured_outputs": {"regex": regex}}));
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(
        a.text().contains("could not complete the requested format"),
        "{}",
        a.text()
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let a = post_json(&t.router, "/v1/chat/completions", &streamed).await;
    assert!(
        a.text().contains("could not complete the requested format"),
        "{}",
        a.text()
    );
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "scripted", "input": [{"role": "user", "content": "w5 w6"}], "temperature": 0,
                "text": {"format": {"type": "json_object"}}}),
    )
    .await;
    assert_eq!(a.status, 400, "refused when compiled: {}", a.text());
}
