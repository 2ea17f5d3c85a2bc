//! llama-server's helpers on a scripted model: `/tokenize` gives the tokenizer's ids (with pieces when asked),
//! `/detokenize` turns them back, `/apply-template` gives the prompt text a chat request would get; the model may
//! be left out while exactly one chat model is loaded. vLLM's forms of the same paths (`prompt`,
//! `add_special_tokens`; `/detokenize`'s `prompt`) and its `/tokenizer_info`, which lm-evaluation-harness reads.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn tokenize_detokenize_and_apply_template() {
    let t = app();
    // Nothing loaded: the model must be named.
    let a = post_json(&t.router, "/tokenize", &json!({"content": "w5 w6"})).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("name the model")
    );
    t.load("scripted").await;
    // The scripted tokenizer's own ids (its word vocabulary has no pieces to merge text into, so they are
    // unknowns: the route must give exactly what the model's tokenizer gives).
    let tok = lar_engine::scripted::tokenizer(N_VOCAB).unwrap();
    let a = post_json(&t.router, "/tokenize", &json!({"content": "w5 w6"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["tokens"], json!(tok.encode("w5 w6", false, true)));
    let a = post_json(
        &t.router,
        "/tokenize",
        &json!({"model": "scripted", "content": "<s>w5", "with_pieces": true, "add_special": true}),
    )
    .await;
    let want: Vec<serde_json::Value> = tok
        .encode("<s>w5", true, true)
        .iter()
        .map(|&id| json!({"id": id, "piece": tok.decode(&[id], true)}))
        .collect();
    assert_eq!(a.json()["tokens"], json!(want));
    assert_eq!(want[0]["piece"], "<s>", "a control token, parsed");
    let a = post_json(&t.router, "/detokenize", &json!({"tokens": [5, 6, 9]})).await;
    assert_eq!(a.json()["content"], " w5 w6 w9");
    let a = post_json(&t.router, "/detokenize", &json!({"tokens": [5, 999]})).await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("999")
    );
    let a = post_json(&t.router, "/detokenize", &json!({"tokens": [-1]})).await;
    assert_eq!(a.status, 400);
    let a = post_json(
        &t.router,
        "/apply-template",
        &json!({"messages": [{"role": "system", "content": "w3"}, {"role": "user", "content": "w7"}]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        a.json()["prompt"],
        "<|im_start|>system\nw3<|im_end|>\n<|im_start|>user\nw7<|im_end|>\n<|im_start|>assistant\n"
    );
    // With tools, a template that knows none gets them in its system message.
    let a = post_json(
        &t.router,
        "/apply-template",
        &json!({"messages": [{"role": "user", "content": "w7"}],
                "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}),
    )
    .await;
    let p = a.json()["prompt"].as_str().unwrap().to_string();
    assert!(
        p.starts_with("<|im_start|>system\n# Tools") && p.contains("get_weather"),
        "{p}"
    );
    let a = post_json(&t.router, "/tokenize", &json!({"content": 5})).await;
    assert_eq!(a.status, 400);
    assert!(a.json()["error"]["param"] == "content");
    let a = post_json(&t.router, "/tokenize", &json!({"content": "x", "extra": 1})).await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn vllm_tokenize_and_tokenizer_info() {
    let t = app();
    let a = get(&t.router, "/tokenizer_info").await;
    assert_eq!(a.status, 400, "nothing loaded: {}", a.text());
    t.load("scripted").await;
    let tok = lar_engine::scripted::tokenizer(N_VOCAB).unwrap();
    // vLLM adds special tokens unless told not to, and parses them in the text.
    let a = post_json(&t.router, "/tokenize", &json!({"prompt": "w5 w6"})).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let with = tok.encode("w5 w6", true, true);
    assert_eq!(v["tokens"], json!(with));
    assert_eq!(v["count"], with.len());
    assert_eq!(v["max_model_len"], CTX);
    assert!(v["token_strs"].is_null());
    let a = post_json(
        &t.router,
        "/tokenize",
        &json!({"prompt": "w5</s>", "add_special_tokens": false, "return_token_strs": true}),
    )
    .await;
    let v = a.json();
    assert_eq!(v["tokens"], json!(tok.encode("w5</s>", false, true)));
    assert_eq!(v["token_strs"].as_array().unwrap().last().unwrap(), "</s>");
    // The text comes back under both names.
    let a = post_json(&t.router, "/detokenize", &json!({"tokens": [5, 6]})).await;
    assert_eq!(a.json()["prompt"], a.json()["content"]);
    let a = get(&t.router, "/tokenizer_info").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(
        (v["bos_token"].as_str(), v["eos_token"].as_str()),
        (Some("<s>"), Some("</s>"))
    );
    assert_eq!(v["model_max_length"], CTX);
    assert_eq!(v["model"], "scripted:latest");
    let a = get(&t.router, "/tokenizer_info?model=scripted").await;
    assert_eq!(a.status, 200);
    // Refusals: the wrong type, a field of the other dialect, an unknown query parameter.
    for body in [
        json!({"prompt": 5}),
        json!({"prompt": "x", "with_pieces": true}),
        json!({"prompt": "x", "messages": []}),
    ] {
        let a = post_json(&t.router, "/tokenize", &body).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text());
    }
    let a = get(&t.router, "/tokenizer_info?modle=scripted").await;
    assert_eq!(a.status, 400);
    assert!(a.text().contains("modle"), "{}", a.text());
    // Given twice, with a name that is not one (invalid UTF-8 decodes to U+FFFD): 400s in the API's JSON shape.
    for (q, says) in [
        ("model=scripted&model=other", "twice"),
        ("model=%FF", "not a model name"),
    ] {
        let a = get(&t.router, &format!("/tokenizer_info?{q}")).await;
        assert_eq!(a.status, 400, "{q}");
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{q}: {}",
            a.text()
        );
    }
}
