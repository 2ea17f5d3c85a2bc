//! The Ollama routes through `oneshot` on scripted models: NDJSON and whole answers, the final line's counts,
//! `context` continuation, loading and unloading with empty prompts and `keep_alive`, tags/ps/show/delete/copy, and
//! errors in Ollama's shape.

mod common;

use common::*;
use lar_engine::scripted::continuation;
use lar_types::{ChatMessage, Role};
use serde_json::json;

#[tokio::test]
async fn root_and_version() {
    let t = app();
    let a = get(&t.router, "/").await;
    assert_eq!(a.text(), "Ollama is running");
    let a = send(
        &t.router,
        axum::http::Request::head("/")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(get(&t.router, "/api/version").await.json()["version"].is_string());
}

#[tokio::test]
async fn chat_streams_ndjson_and_ends_with_counts() {
    let t = app();
    let body = json!({
        "model": "scripted", "messages": [{"role": "user", "content": "w9"}],
        "options": {"num_predict": 4, "temperature": 0},
    });
    // Ollama's routes wait for the load.
    let a = post_json(&t.router, "/api/chat", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.headers["content-type"], "application/x-ndjson");
    let lines = a.ndjson();
    let (last, pieces) = lines.split_last().unwrap();
    let text: String = pieces
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect::<String>()
        + last["message"]["content"].as_str().unwrap();
    let prompt = chat_prompt(&[ChatMessage::new(Role::User, "w9")]);
    assert_eq!(text, words(&continuation(&prompt, 4, N_VOCAB)));
    assert!(pieces.iter().all(|l| l["done"] == false));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 4);
    assert_eq!(last["prompt_eval_count"], prompt.len());
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(last[k].is_u64(), "{k}: {last}");
    }
    assert!(last["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        last["load_duration"].as_u64() > Some(0),
        "this request waited for the load"
    );
    // stream: false gives one object with the whole text; the model was loaded already.
    let mut b = body.clone();
    b["stream"] = json!(false);
    let v = post_json(&t.router, "/api/chat", &b).await.json();
    assert_eq!(v["message"]["content"], text);
    assert_eq!(v["done"], true);
    assert_eq!(v["load_duration"], 0, "no load this time: {v}");
}

#[tokio::test]
async fn generate_continues_from_context() {
    let t = app();
    let a = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "scripted", "prompt": "w5 w6", "raw": true, "stream": false,
                "options": {"num_predict": 3, "temperature": 0}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let ctx: Vec<u32> = v["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let (prompt, answer) = ctx.split_at(ctx.len() - 3);
    assert_eq!(answer, continuation(prompt, 3, N_VOCAB));
    assert_eq!(v["response"], words(answer));
    // Going on from the context: the answer continues the whole sequence.
    let v = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "scripted", "prompt": "w8", "raw": true, "context": ctx, "stream": false,
                "options": {"num_predict": 2, "temperature": 0}}),
    )
    .await
    .json();
    let ctx2: Vec<u32> = v["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(&ctx2[..ctx.len()], &ctx[..]);
    let (p2, a2) = ctx2.split_at(ctx2.len() - 2);
    assert_eq!(a2, continuation(p2, 2, N_VOCAB));
}

#[tokio::test]
async fn empty_prompts_load_and_keep_alive_zero_unloads() {
    let t = app();
    let v = post_json(&t.router, "/api/generate", &json!({"model": "scripted"}))
        .await
        .json();
    assert_eq!(v["done_reason"], "load");
    let ps = get(&t.router, "/api/ps").await.json();
    let m = &ps["models"][0];
    assert_eq!(m["name"], "scripted:latest");
    assert_eq!(m["context_length"], CTX);
    assert!(m["expires_at"].as_str().unwrap().ends_with('Z'));
    let v = post_json(
        &t.router,
        "/api/chat",
        &json!({"model": "scripted", "messages": [], "keep_alive": 0}),
    )
    .await
    .json();
    assert_eq!(v["done_reason"], "unload");
    assert_eq!(get(&t.router, "/api/ps").await.json()["models"], json!([]));
    // keep_alive 0 on a real request: unloaded when it ends.
    let a = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "scripted", "prompt": "w5", "raw": true, "keep_alive": "0s", "stream": false,
                "options": {"num_predict": 1}}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(get(&t.router, "/api/ps").await.json()["models"], json!([]));
    // A bad keep_alive is named.
    let a = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "scripted", "keep_alive": "5 parsecs"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"].as_str().unwrap().contains("keep_alive"));
}

#[tokio::test]
async fn tags_show_delete_copy() {
    let t = app();
    let v = get(&t.router, "/api/tags").await.json();
    let m = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "scripted:latest")
        .unwrap()
        .clone();
    for k in ["model", "size", "digest", "modified_at"] {
        assert!(!m[k].is_null(), "{k}");
    }
    assert_eq!(m["details"]["family"], "scripted");
    let v = post_json(&t.router, "/api/show", &json!({"model": "scripted"}))
        .await
        .json();
    assert_eq!(v["capabilities"], json!(["completion"]));
    assert_eq!(v["model_info"]["general.architecture"], "scripted");
    for k in ["template", "parameters", "details"] {
        assert!(!v[k].is_null(), "{k}");
    }
    let v = post_json(&t.router, "/api/show", &json!({"model": "embed"}))
        .await
        .json();
    assert_eq!(v["capabilities"], json!(["embedding"]));
    let a = post_json(&t.router, "/api/show", &json!({"model": "nope"})).await;
    assert_eq!(a.status, 404);
    assert!(a.json()["error"].as_str().unwrap().contains("not found"));
    let req = axum::http::Request::delete("/api/delete")
        .body(axum::body::Body::from(json!({"model": "nope"}).to_string()))
        .unwrap();
    assert_eq!(send(&t.router, req).await.status, 404);
    let a = post_json(
        &t.router,
        "/api/copy",
        &json!({"source": "scripted", "destination": "../x"}),
    )
    .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn errors_come_in_ollamas_shape() {
    let t = app();
    let cases = [
        (
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            404,
        ),
        (
            json!({"model": "scripted", "messages": [{"role": "user", "content": "x"}], "options": {"mirostat": 2}}),
            400,
        ),
        (
            json!({"model": "scripted", "messages": [{"role": "user", "content": "x"}], "options": {"temprature": 2}}),
            400,
        ),
        (
            json!({"model": "scripted", "messages": [{"role": "user", "content": "x"}], "format": "json"}),
            400,
        ),
        (
            json!({"model": "scripted", "messages": [{"role": "wizard", "content": "x"}]}),
            400,
        ),
        (
            json!({"model": "scripted", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
            400,
        ),
        (json!({"model": "scripted", "messages": "hi"}), 400),
    ];
    for (body, status) in cases {
        let a = post_json(&t.router, "/api/chat", &body).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        assert!(a.json()["error"].is_string(), "{body}: {}", a.text());
    }
    // A prompt over num_ctx: both numbers.
    let a = post_json(
        &t.router,
        "/api/generate",
        &json!({"model": "scripted", "context": vec![5; 40], "raw": true, "options": {"num_ctx": 16}}),
    )
    .await;
    assert_eq!(a.status, 400);
    let m = a.json()["error"].as_str().unwrap().to_string();
    assert!(m.contains("16") && m.contains("40"), "{m}");
}

#[tokio::test]
async fn embed_and_embeddings() {
    let t = app();
    let v = post_json(
        &t.router,
        "/api/embed",
        &json!({"model": "embed", "input": ["a b", "c"]}),
    )
    .await
    .json();
    assert_eq!(
        v["embeddings"],
        json!([[3.0, 227.0, 0.5], [1.0, 99.0, 0.5]])
    );
    assert_eq!(v["prompt_eval_count"], 3);
    let v = post_json(
        &t.router,
        "/api/embeddings",
        &json!({"model": "embed", "prompt": "c"}),
    )
    .await
    .json();
    assert_eq!(v["embedding"], json!([1.0, 99.0, 0.5]));
    let a = post_json(
        &t.router,
        "/api/embed",
        &json!({"model": "scripted", "input": "x"}),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("not an embedding model")
    );
}

/// `logprobs` and `top_logprobs` on both routes: one entry per generated token (its text, bytes and
/// log-probability, the greedy pick the first of its alternatives), the same entries streamed line by line as in
/// the whole answer; none unless asked; a bad ask refused.
#[tokio::test]
async fn logprobs_per_token_streamed_and_whole() {
    let t = app();
    for (route, mut body, text_at) in [
        (
            "/api/generate",
            json!({"model": "scripted", "prompt": "w9"}),
            "/response",
        ),
        (
            "/api/chat",
            json!({"model": "scripted", "messages": [{"role": "user", "content": "w9"}]}),
            "/message/content",
        ),
    ] {
        body["options"] = json!({"num_predict": 4, "temperature": 0});
        let plain = post_json(&t.router, route, &body).await;
        assert!(plain.ndjson().iter().all(|l| l.get("logprobs").is_none()));
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(2);
        let a = post_json(&t.router, route, &body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let streamed: Vec<serde_json::Value> = a
            .ndjson()
            .iter()
            .flat_map(|l| l["logprobs"].as_array().cloned().unwrap_or_default())
            .collect();
        body["stream"] = json!(false);
        let a = post_json(&t.router, route, &body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let v = a.json();
        let whole = v["logprobs"].as_array().expect("logprobs").clone();
        assert_eq!(whole.len(), 4, "{v}");
        assert_eq!(streamed, whole, "{route}");
        let joined: String = whole.iter().map(|e| e["token"].as_str().unwrap()).collect();
        assert_eq!(joined, v.pointer(text_at).unwrap().as_str().unwrap());
        for e in &whole {
            let top = e["top_logprobs"].as_array().unwrap();
            assert_eq!(top.len(), 2, "{e}");
            assert_eq!(
                (&top[0]["token"], &top[0]["logprob"]),
                (&e["token"], &e["logprob"])
            );
            let (a, b) = (
                top[0]["logprob"].as_f64().unwrap(),
                top[1]["logprob"].as_f64().unwrap(),
            );
            assert!(a <= 0.0 && b <= a, "{e}");
            assert_eq!(e["bytes"], json!(e["token"].as_str().unwrap().as_bytes()));
        }
        // Only the tokens' own log-probabilities.
        body["top_logprobs"] = json!(0);
        let v = post_json(&t.router, route, &body).await.json();
        let entries = v["logprobs"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries.iter().all(|e| e.get("top_logprobs").is_none()));
        for (ask, field) in [
            (json!({"top_logprobs": 2}), "top_logprobs"),
            (
                json!({"logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
            ),
            (
                json!({"logprobs": true, "top_logprobs": -1}),
                "top_logprobs",
            ),
            (json!({"logprobs": "yes"}), "logprobs"),
        ] {
            let mut b = body.clone();
            b.as_object_mut().unwrap().remove("logprobs");
            b.as_object_mut().unwrap().remove("top_logprobs");
            b.as_object_mut()
                .unwrap()
                .extend(ask.as_object().unwrap().clone());
            let a = post_json(&t.router, route, &b).await;
            assert_eq!(a.status, 400, "{ask}: {}", a.text());
            assert!(
                a.json()["error"].as_str().unwrap().contains(field),
                "{ask}: {}",
                a.text()
            );
        }
    }
}
