//! llama-server's helpers on a scripted model: `/tokenize` gives the tokenizer's ids (with pieces when asked),
//! `/detokenize` turns them back, `/apply-template` gives the prompt text a chat request would get; the model may
//! be left out while exactly one chat model is loaded.

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
