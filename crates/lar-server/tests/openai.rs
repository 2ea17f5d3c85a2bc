//! The OpenAI routes through `oneshot`, on scripted models whose every answer is known: the text of a greedy
//! completion is `scripted::continuation` of the prompt, so a lost, repeated or reordered token fails a test.

mod common;

use common::*;
use lar_engine::scripted::{continuation, next_token};
use lar_types::{ChatMessage, Role};
use serde_json::json;

#[tokio::test]
async fn models_are_listed_and_found_by_id() {
    let t = app();
    let a = get(&t.router, "/v1/models").await;
    assert_eq!(a.status, 200);
    let ids: Vec<String> = a.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"scripted:latest".to_string()), "{ids:?}");
    let a = get(&t.router, "/v1/models/scripted:latest").await;
    assert_eq!(a.json()["id"], "scripted:latest");
    let a = get(&t.router, "/v1/models/nope").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn a_chat_answer_is_the_greedy_continuation_with_usage() {
    let t = app_with(
        lar_server::ManagerConfig {
            load_wait: std::time::Duration::from_millis(50),
            ..Default::default()
        },
        Default::default(),
    );
    let msgs = [ChatMessage::new(Role::User, "w5 w6")];
    let prompt = chat_prompt(&msgs);
    let want = words(&continuation(&prompt, 6, N_VOCAB));
    let body = json!({
        "model": "slowload",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "w5 w6"}]}],
        "max_tokens": 6, "temperature": 0, "user": "someone", "metadata": {"a": "b"},
    });
    // The first request starts the load and is told to come back (as llama-server does).
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.headers["retry-after"], "2");
    assert_eq!(a.json()["error"]["code"], "model_loading");
    eventually("the load", || !t.state.manager.loaded().is_empty()).await;
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], want);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());
    assert_eq!(v["usage"]["completion_tokens"], 6);
    assert_eq!(v["usage"]["total_tokens"], prompt.len() + 6);
    assert!(a.headers.contains_key("x-request-id"));
    // The same prompt again: its full blocks come from the prefix cache.
    let v = post_json(&t.router, "/v1/chat/completions", &body)
        .await
        .json();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap();
    assert_eq!(cached as usize, (prompt.len() - 1) / 4 * 4);
    assert_eq!(v["choices"][0]["message"]["content"], want);
}

#[tokio::test]
async fn a_streamed_chat_sends_the_same_text_then_usage_then_done() {
    let t = app();
    let body = json!({
        "model": "scripted", "messages": [{"role": "user", "content": "w7"}],
        "max_tokens": 5, "temperature": 0, "n": 2,
        "stream": true, "stream_options": {"include_usage": true},
    });
    let a = loop {
        let a = post_json(&t.router, "/v1/chat/completions", &body).await;
        if a.status != 503 {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(a.status, 200);
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = a.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], 10);
    let prompt = chat_prompt(&[ChatMessage::new(Role::User, "w7")]);
    let want = words(&continuation(&prompt, 5, N_VOCAB));
    for i in 0..2 {
        let mine: Vec<&serde_json::Value> = rest
            .iter()
            .filter(|c| c["choices"][0]["index"] == i)
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, want, "choice {i}");
        assert_eq!(
            mine.last().unwrap()["choices"][0]["finish_reason"],
            "length"
        );
        assert!(mine.iter().all(|c| c["usage"].is_null()));
    }
}

#[tokio::test]
async fn completions_echo_the_prompt_with_its_logprobs() {
    let t = app();
    let prompt: Vec<u32> = vec![5, 9, 11, 4, 20, 7];
    // Make one prompt token the one the model predicts, so its logprob is the high one.
    let mut prompt = prompt;
    prompt[3] = next_token(&prompt[..3], N_VOCAB);
    let body = json!({
        "model": "scripted", "prompt": prompt, "max_tokens": 2, "temperature": 0,
        "echo": true, "logprobs": 2,
    });
    t.load("scripted").await;
    let a = post_json(&t.router, "/v1/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let c = &v["choices"][0];
    let answer = continuation(&prompt, 2, N_VOCAB);
    let all: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
    assert_eq!(c["text"], words(&all));
    let lp = &c["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), all.len());
    assert!(lp["token_logprobs"][0].is_null());
    // The scripted logits: 10 for the predicted token, 0 elsewhere.
    let z = (10f32.exp() + (N_VOCAB - 1) as f32).ln();
    for (j, &tok) in all.iter().enumerate().skip(1) {
        let predicted = next_token(&all[..j], N_VOCAB) == tok;
        let want = if predicted { 10.0 - z } else { -z };
        let got = lp["token_logprobs"][j].as_f64().unwrap() as f32;
        assert!((got - want).abs() < 1e-3, "token {j}: {got} vs {want}");
        let top = lp["top_logprobs"][j].as_object().unwrap();
        assert_eq!(top.len(), 2, "{top:?}");
    }
    let offsets: Vec<usize> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap() as usize)
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(v["usage"]["prompt_tokens"], prompt.len());
}

/// A choice that ends on the end-of-turn token lists it last in `logprobs` (its own text, none in `text`), as
/// OpenAI and vLLM do: lm-evaluation-harness scores `token_logprobs[ctxlen:-1]`, taking the last entry for the
/// generated token, so without it the prompt's own last token would be dropped from every score.
#[tokio::test]
async fn the_end_token_is_listed_in_legacy_logprobs() {
    let t = app();
    t.load("scripted").await;
    let prompt: Vec<u32> = vec![5, 9, 11];
    let body = json!({
        "model": "scripted", "prompt": prompt, "max_tokens": 3, "temperature": 0,
        "echo": true, "logprobs": 1, "logit_bias": {"2": 100},
    });
    let a = post_json(&t.router, "/v1/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let c = &a.json()["choices"][0];
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["text"], words(&prompt), "the end token is not text");
    let lp = &c["logprobs"];
    let tokens = lp["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), prompt.len() + 1, "{lp}");
    assert_eq!(tokens[prompt.len()], "</s>");
    let last = lp["token_logprobs"][prompt.len()].as_f64().unwrap();
    assert!(
        last <= 0.0 && last > -1e-3,
        "the biased end token is near certain: {last}"
    );
    assert_eq!(
        lp["top_logprobs"][prompt.len()]["</s>"].as_f64(),
        Some(last)
    );
    // Without echo, the same: the end token is the one entry.
    let mut body = body;
    body["echo"] = json!(false);
    let a = post_json(&t.router, "/v1/completions", &body).await;
    let lp = &a.json()["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"], json!(["</s>"]), "{lp}");
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_shape() {
    let t = app();
    t.load("scripted").await;
    let r = &t.router;
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed", b"{\"model\":".to_vec(), 400, "not valid JSON"),
        ("utf8", b"{\"model\":\"\xff\"}".to_vec(), 400, "not valid UTF-8"),
        ("array", b"[]".to_vec(), 400, "must be a JSON object"),
        (
            "unknown field",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"temprature":1}"#.to_vec(),
            400,
            "unknown field 'temprature'",
        ),
        (
            "wrong type",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#.to_vec(),
            400,
            "temperature",
        ),
        (
            "unknown model",
            br#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            404,
            "not found",
        ),
        (
            "path as model",
            br#"{"model":"../../etc/passwd","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "not a model name",
        ),
        (
            "max_tokens 0",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#.to_vec(),
            400,
            "max_tokens must be at least 1",
        ),
        (
            "huge n",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"n":100000}"#.to_vec(),
            400,
            "n must be at most",
        ),
        (
            "a tool that is not a function",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"tools":[{}]}"#.to_vec(),
            400,
            "tools[0].type must be \"function\"",
        ),
        (
            "images",
            br#"{"model":"scripted","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#.to_vec(),
            400,
            "text only",
        ),
        (
            "temperature out of range",
            br#"{"model":"scripted","messages":[{"role":"user","content":"x"}],"top_p":3}"#.to_vec(),
            400,
            "top_p must be between 0 and 1",
        ),
        (
            "embedding model",
            br#"{"model":"embed","messages":[{"role":"user","content":"x"}]}"#.to_vec(),
            400,
            "embedding model",
        ),
    ];
    for (what, body, status, msg) in cases {
        let mut a = post(r, "/v1/chat/completions", body.clone()).await;
        if a.status == 503 {
            // A model the case loads: once loaded, the answer is the case's.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            a = post(r, "/v1/chat/completions", body).await;
        }
        assert_eq!(a.status, status, "{what}: {}", a.text());
        let e = &a.json()["error"];
        assert!(e["message"].as_str().unwrap().contains(msg), "{what}: {e}");
        assert!(e["type"].is_string(), "{what}");
    }
    // A prompt longer than the context: both numbers named, nothing cut.
    let long = vec![5u32; CTX + 10];
    let a = post_json(
        r,
        "/v1/completions",
        &json!({"model": "scripted", "prompt": long}),
    )
    .await;
    assert_eq!(a.status, 400);
    let m = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        m.contains(&format!("{}", CTX + 10)) && m.contains(&CTX.to_string()),
        "{m}"
    );
    // max_tokens beyond the room left: refused with the figures.
    let a = post_json(
        r,
        "/v1/completions",
        &json!({"model": "scripted", "prompt": [5, 6], "max_tokens": CTX}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["code"], "context_length_exceeded");
    // The server still answers a normal request.
    let a = post_json(
        r,
        "/v1/completions",
        &json!({"model": "scripted", "prompt": [5, 6], "max_tokens": 3, "temperature": 0}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["choices"][0]["text"],
        words(&continuation(&[5, 6], 3, N_VOCAB))
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let t = app_with(
        Default::default(),
        lar_server::ServerConfig {
            body_limit: 1024,
            ..Default::default()
        },
    );
    let big = json!({"model": "scripted", "prompt": "w".repeat(4096)});
    let a = post_json(&t.router, "/v1/completions", &big).await;
    assert_eq!(a.status, 413);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    let a = post_json(&t.router, "/api/generate", &big).await;
    assert_eq!(a.status, 413);
    assert!(
        a.json()["error"].is_string(),
        "Ollama's shape: {}",
        a.text()
    );
}

#[tokio::test]
async fn embeddings_come_as_floats_or_base64() {
    let t = app();
    let body = json!({"model": "embed", "input": ["a b", "ccc"]});
    let a = loop {
        let a = post_json(&t.router, "/v1/embeddings", &body).await;
        if a.status != 503 {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["data"][1]["embedding"], json!([3.0, 297.0, 0.5]));
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    let mut b = body.clone();
    b["encoding_format"] = json!("base64");
    let v = post_json(&t.router, "/v1/embeddings", &b).await.json();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][1]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats, vec![3.0, 297.0, 0.5]);
    // Too long for the model: refused, not cut.
    let a = post_json(
        &t.router,
        "/v1/embeddings",
        &json!({"model": "embed", "input": "a b c d e f g h i j"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    // A chat model cannot embed.
    let mut a = post_json(
        &t.router,
        "/v1/embeddings",
        &json!({"model": "scripted", "input": "x"}),
    )
    .await;
    while a.status == 503 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        a = post_json(
            &t.router,
            "/v1/embeddings",
            &json!({"model": "scripted", "input": "x"}),
        )
        .await;
    }
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn choices_after_the_first_share_its_prompt_blocks() {
    let t = app();
    t.load("scripted").await;
    let prompt: Vec<u32> = (0..21).map(|i| 3 + (i * 7) % 50).collect();
    let body =
        json!({"model": "scripted", "prompt": prompt, "max_tokens": 3, "temperature": 0, "n": 3});
    let v = post_json(&t.router, "/v1/completions", &body).await.json();
    let want = words(&continuation(&prompt, 3, N_VOCAB));
    for i in 0..3 {
        assert_eq!(v["choices"][i]["text"], want, "choice {i}");
    }
    // 21 tokens: five full blocks of 4 computed once, shared by the two other choices.
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
    assert_eq!(v["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn usage_counts_each_prompt_once_and_streams_refuse_echo() {
    let t = app();
    t.load("scripted").await;
    let body = json!({"model": "scripted", "prompt": [[5, 6, 7], [8, 9]], "max_tokens": 2, "n": 2, "temperature": 0});
    let v = post_json(&t.router, "/v1/completions", &body).await.json();
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 8);
    assert_eq!(
        v["choices"][2]["text"],
        words(&continuation(&[8, 9], 2, N_VOCAB))
    );
    for (field, value) in [("echo", json!(true)), ("logprobs", json!(1))] {
        let mut b = json!({"model": "scripted", "prompt": [5], "stream": true});
        b[field] = value;
        let a = post_json(&t.router, "/v1/completions", &b).await;
        assert_eq!(a.status, 400);
        assert_eq!(a.json()["error"]["param"], field);
    }
}
