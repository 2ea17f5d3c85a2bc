//! Reasoning models through the API, on the scripted `thinker` model (its template opens `<think>` for the model,
//! or writes an empty thinking block when `enable_thinking` is false, as Qwen3's does): its words are thinking
//! until the close marker, so they go to `reasoning_content` (OpenAI, streamed and whole) and `message.thinking`
//! (Ollama), exactly the text the same prompt gives as a raw completion; asked not to think it answers in
//! `content`; a model whose template knows no thinking refuses `think` and `reasoning_effort` rather than ignore
//! them.

mod common;

use common::*;
use serde_json::{Value, json};

const Q: &str = "w5 w6";

fn chat(model: &str, extra: Value) -> Value {
    let mut b =
        json!({"model": model, "messages": [{"role": "user", "content": Q}], "max_tokens": 8});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// The greedy text of the thinker's chat prompt, as a raw completion of the rendered template.
async fn raw_answer(t: &TestApp, thinking: bool) -> String {
    let body = if thinking {
        json!({"model": "thinker", "messages": [{"role": "user", "content": Q}]})
    } else {
        json!({"model": "thinker", "messages": [{"role": "user", "content": Q}],
                "chat_template_kwargs": {"enable_thinking": false}})
    };
    let a = post_json(&t.router, "/apply-template", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let prompt = a.json()["prompt"].as_str().unwrap().to_string();
    assert!(
        prompt.ends_with(if thinking {
            "<think>\n"
        } else {
            "</think>\n\n"
        }),
        "{prompt:?}"
    );
    let a = post_json(
        &t.router,
        "/v1/completions",
        &json!({"model": "thinker", "prompt": prompt, "max_tokens": 8}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["choices"][0]["text"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn thinking_goes_to_reasoning_content_and_thinking() {
    let t = app();
    let thought = raw_answer(&t, true).await;
    let thought = thought.trim();
    assert!(!thought.is_empty());

    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat("thinker", json!({})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let m = &a.json()["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], thought, "{m}");
    assert_eq!(m["reasoning"], thought);
    assert_eq!(m["content"], "", "no close marker: all of it was thinking");

    // Streamed: reasoning deltas add up to the same, and no content text.
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat("thinker", json!({"stream": true})),
    )
    .await;
    let (mut r, mut c) = (String::new(), String::new());
    for d in a.sse().iter().filter(|d| d.as_str() != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        let delta = &v["choices"][0]["delta"];
        r.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        c.push_str(delta["content"].as_str().unwrap_or(""));
    }
    assert_eq!((r.as_str(), c.as_str()), (thought, ""));

    // Ollama: message.thinking, whole and streamed.
    let body = json!({"model": "thinker", "messages": [{"role": "user", "content": Q}], "options": {"num_predict": 8}});
    let mut whole = body.clone();
    whole["stream"] = json!(false);
    let a = post_json(&t.router, "/api/chat", &whole).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["message"]["thinking"], thought, "{}", a.text());
    let a = post_json(&t.router, "/api/chat", &body).await;
    let lines = a.ndjson();
    let streamed: String = lines
        .iter()
        .map(|l| l["message"]["thinking"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(streamed, thought);

    // /api/generate: `thinking` beside `response`.
    let g =
        json!({"model": "thinker", "prompt": Q, "stream": false, "options": {"num_predict": 8}});
    let a = post_json(&t.router, "/api/generate", &g).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        (a.json()["thinking"].as_str(), a.json()["response"].as_str()),
        (Some(thought), Some(""))
    );
    let mut off = g.clone();
    off["think"] = json!(false);
    let a = post_json(&t.router, "/api/generate", &off).await;
    assert_eq!(
        a.json()["response"],
        raw_answer(&t, false).await.as_str(),
        "{}",
        a.text()
    );
    let mut raw = g.clone();
    raw["raw"] = json!(true);
    raw["think"] = json!(true);
    let a = post_json(&t.router, "/api/generate", &raw).await;
    assert_eq!(a.status, 400, "{}", a.text());
}

#[tokio::test]
async fn anthropic_thinking_blocks() {
    let t = app();
    let thought = raw_answer(&t, true).await;
    let thought = thought.trim();
    let answer = raw_answer(&t, false).await;
    let msg = |extra: Value| {
        let mut b = json!({"model": "thinker", "max_tokens": 8, "messages": [{"role": "user", "content": Q}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let a = post_json(
        &t.router,
        "/v1/messages",
        &msg(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["content"],
        json!([{"type": "thinking", "thinking": thought, "signature": ""}])
    );
    // Streamed: a thinking block of thinking_delta events.
    let a = post_json(
        &t.router,
        "/v1/messages",
        &msg(json!({"stream": true, "thinking": {"type": "enabled", "budget_tokens": 1024}})),
    )
    .await;
    let events: Vec<Value> = a
        .sse()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let start = events
        .iter()
        .find(|e| e["type"] == "content_block_start")
        .unwrap();
    assert_eq!(start["content_block"]["type"], "thinking");
    let streamed: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "thinking_delta")
        .map(|e| e["delta"]["thinking"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed, thought);
    assert!(events.iter().any(|e| e["type"] == "content_block_stop"));
    // Disabled: a text block with the answer.
    let a = post_json(
        &t.router,
        "/v1/messages",
        &msg(json!({"thinking": {"type": "disabled"}})),
    )
    .await;
    assert_eq!(
        a.json()["content"],
        json!([{"type": "text", "text": answer}]),
        "{}",
        a.text()
    );
    for (bad, says) in [
        (json!({"type": "enabled"}), "budget_tokens"),
        (json!({"type": "sometimes"}), "thinking.type"),
        (
            json!({"type": "enabled", "budget_tokens": 10, "x": 1}),
            "thinking.x",
        ),
    ] {
        let a = post_json(&t.router, "/v1/messages", &msg(json!({"thinking": bad}))).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text());
        assert!(a.text().contains(says), "{bad}: {}", a.text());
    }
}

#[tokio::test]
async fn asked_not_to_think_it_answers_in_content() {
    let t = app();
    let answer = raw_answer(&t, false).await;
    for extra in [
        json!({"reasoning_effort": "none"}),
        json!({"chat_template_kwargs": {"enable_thinking": false}}),
    ] {
        let a = post_json(&t.router, "/v1/chat/completions", &chat("thinker", extra)).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let m = &a.json()["choices"][0]["message"];
        assert_eq!(m["content"], answer, "{m}");
        assert!(m.get("reasoning_content").is_none(), "{m}");
    }
    let a = post_json(
        &t.router,
        "/api/chat",
        &json!({"model": "thinker", "messages": [{"role": "user", "content": Q}], "think": false, "stream": false,
                "options": {"num_predict": 8}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["message"]["content"], answer);
    assert!(a.json()["message"].get("thinking").is_none());
}

#[tokio::test]
async fn a_model_that_does_not_think_says_so() {
    let t = app();
    for (path, body, says) in [
        (
            "/v1/chat/completions",
            chat("scripted", json!({"reasoning_effort": "high"})),
            "does not think",
        ),
        (
            "/v1/chat/completions",
            chat("scripted", json!({"reasoning_effort": "extreme"})),
            "none, minimal, low",
        ),
        (
            "/v1/chat/completions",
            chat("scripted", json!({"reasoning_effort": 3})),
            "must be a string",
        ),
        (
            "/v1/chat/completions",
            chat(
                "thinker",
                json!({"chat_template_kwargs": {"enable_thinking": false, "x": 1}}),
            ),
            "chat_template_kwargs.x is not supported",
        ),
        (
            "/v1/chat/completions",
            chat(
                "thinker",
                json!({"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": false}}),
            ),
            "not both",
        ),
        (
            "/api/chat",
            json!({"model": "scripted", "messages": [{"role": "user", "content": Q}], "think": true}),
            "does not think",
        ),
        (
            "/api/generate",
            json!({"model": "scripted", "prompt": Q, "think": true}),
            "does not think",
        ),
    ] {
        let a = post_json(&t.router, path, &body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert!(a.text().contains(says), "{body}: {}", a.text());
    }
    // Not thinking is something every model can do.
    let a = post_json(
        &t.router,
        "/v1/chat/completions",
        &chat("scripted", json!({"reasoning_effort": "none"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = post_json(
        &t.router,
        "/api/chat",
        &json!({"model": "scripted", "messages": [{"role": "user", "content": Q}], "think": false, "stream": false}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn responses_give_thinking_as_a_reasoning_item() {
    let t = app();
    let input = "<say><think>\nThe capital, so Paris.</think>\n\nParis.</say>";
    let body = json!({"model": "say-thinker", "input": input, "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"]});
    let a = post_json(&t.router, "/v1/responses", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = a.json();
    let out = r["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "{r}");
    assert_eq!(out[0]["type"], "reasoning");
    assert_eq!(out[0]["content"][0]["type"], "reasoning_text");
    assert_eq!(
        out[0]["content"][0]["text"].as_str().unwrap().trim(),
        "The capital, so Paris."
    );
    assert_eq!(out[1]["type"], "message");
    assert_eq!(
        out[1]["content"][0]["text"].as_str().unwrap().trim(),
        "Paris."
    );
    let reasoning_tokens = r["usage"]["output_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap();
    assert!(
        reasoning_tokens >= "The capital, so Paris.".len() as u64 / 2,
        "{r}"
    );

    // Streamed: a reasoning item whose deltas add up to the same thinking, then the message.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let ev = events(
        &post_json(&t.router, "/v1/responses", &streamed)
            .await
            .text(),
    );
    let thinking: String = ev
        .iter()
        .filter(|(n, _)| n == "response.reasoning_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(thinking.trim(), "The capital, so Paris.");
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text.trim(), "Paris.");
    let added: Vec<&str> = ev
        .iter()
        .filter(|(n, _)| n == "response.output_item.added")
        .map(|(_, d)| d["item"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["reasoning", "message"]);
    let done = &ev.last().unwrap().1["response"];
    assert_eq!(
        done["output"][0]["content"][0]["text"],
        out[0]["content"][0]["text"]
    );

    // Continued with the reasoning item sent back (as Codex does): accepted, left out of the prompt.
    let next = json!({"model": "say-thinker", "input": [
        {"type": "message", "role": "user", "content": input},
        out[0].clone(), out[1].clone(),
        {"type": "message", "role": "user", "content": "<say><think>\nAgain.</think>\n\nStill Paris.</say>"}]});
    let a = post_json(&t.router, "/v1/responses", &next).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let r = a.json();
    assert_eq!(
        r["output"][1]["content"][0]["text"]
            .as_str()
            .unwrap()
            .trim(),
        "Still Paris."
    );

    // Effort none: the template closes the thinking, so the whole script is the answer and no item reasons.
    let a = post_json(
        &t.router,
        "/v1/responses",
        &json!({"model": "say-thinker", "input": "<say>Paris.</say>", "reasoning": {"effort": "none"}}),
    )
    .await;
    let r = a.json();
    assert_eq!(r["output"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["output"][0]["content"][0]["text"], "Paris.");

    // A model that cannot think refuses an effort rather than ignore it; bad shapes are named.
    for (body, param) in [
        (
            json!({"model": "say", "input": "x", "reasoning": {"effort": "high"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "say-thinker", "input": "x", "reasoning": {"effort": "max"}}),
            "reasoning.effort",
        ),
        (
            json!({"model": "say-thinker", "input": "x", "reasoning": "high"}),
            "reasoning",
        ),
        (
            json!({"model": "say-thinker", "input": "x", "reasoning": {"budget": 5}}),
            "reasoning.budget",
        ),
        (
            json!({"model": "say-thinker", "input": "x", "include": ["file_search_call.results"]}),
            "include[0]",
        ),
    ] {
        let a = post_json(&t.router, "/v1/responses", &body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.json()["error"]["param"], param, "{}", a.text());
    }
}
