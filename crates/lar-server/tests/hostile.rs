//! Hostile bodies on every route: valid requests mutated at random (a field removed, replaced by a value of another
//! type, an extreme number, a huge or odd string, deep nesting; an unknown field added), thousands of them from a
//! fixed seed. None may get a 500 or take the server down; each gets a JSON answer; a normal request works after.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::*;
use lar_testdata::Rng;
use serde_json::{Value, json};

fn odd_value(r: &mut Rng) -> Value {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let choices = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(0.5),
        json!(""),
        json!("x".repeat(5000)),
        json!("\u{0}\u{ffff}<|im_start|>system"),
        json!([]),
        json!({}),
        json!([1, "a", null]),
        json!({"role": "user"}),
        deep,
    ];
    choices[r.below(choices.len())].clone()
}

fn mutate(v: &Value, r: &mut Rng) -> Value {
    let mut v = v.clone();
    let Value::Object(m) = &mut v else { return v };
    let keys: Vec<String> = m.keys().cloned().collect();
    for _ in 0..1 + r.below(3) {
        match r.below(5) {
            0 if !keys.is_empty() => {
                m.remove(&keys[r.below(keys.len())]);
            }
            1 | 2 if !keys.is_empty() => {
                let k = &keys[r.below(keys.len())];
                m.insert(k.clone(), odd_value(r));
            }
            3 => {
                // Inside a nested object or array: the first message, or options.
                for k in ["messages", "options", "input", "prompt"] {
                    match m.get_mut(k) {
                        Some(Value::Array(a)) if !a.is_empty() => {
                            let i = r.below(a.len());
                            a[i] = match &a[i] {
                                Value::Object(_) => mutate(&a[i], r),
                                _ => odd_value(r),
                            };
                        }
                        Some(o @ Value::Object(_)) => *o = mutate(o, r),
                        _ => {}
                    }
                }
            }
            _ => {
                m.insert(format!("field{}", r.below(100)), odd_value(r));
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_hostile_bodies_never_get_a_500() {
    let t = app();
    let seeds: Vec<(&str, Value)> = vec![
        (
            "/v1/chat/completions",
            json!({"model": "scripted", "messages": [{"role": "user", "content": "w5"}],
            "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "stop": ["x"], "n": 2, "logprobs": true,
            "top_logprobs": 2, "seed": 1, "logit_bias": {"5": 1}, "stream": false}),
        ),
        (
            "/v1/completions",
            json!({"model": "scripted", "prompt": [5, 6, 7], "max_tokens": 3, "echo": true,
            "logprobs": 1, "n": 1}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "embed", "input": ["a b", "c"], "encoding_format": "float"}),
        ),
        (
            "/api/chat",
            json!({"model": "scripted", "messages": [{"role": "user", "content": "w5"}], "stream": false,
            "options": {"num_predict": 3, "temperature": 0.1, "num_ctx": 128, "stop": ["w9"]}, "keep_alive": "5m"}),
        ),
        (
            "/api/generate",
            json!({"model": "scripted", "prompt": "w5", "raw": true, "stream": false,
            "context": [5, 6], "options": {"num_predict": 3, "seed": 3}}),
        ),
        (
            "/api/embed",
            json!({"model": "embed", "input": ["a", "b c"]}),
        ),
        ("/api/embeddings", json!({"model": "embed", "prompt": "a"})),
        ("/api/show", json!({"model": "scripted"})),
        (
            "/api/copy",
            json!({"source": "scripted", "destination": "other"}),
        ),
        (
            "/api/pull",
            json!({"model": "pypi:nothing", "stream": false}),
        ),
    ];
    let mut r = Rng(0x5eed_1a2b_3c4d_5e6f);
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..300 {
        for (path, seed) in &seeds {
            let body = if round == 0 {
                seed.clone()
            } else {
                mutate(seed, &mut r)
            };
            let req = Request::post(*path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            let a = send(&t.router, req).await;
            let s = a.status.as_u16();
            *statuses.entry(s).or_insert(0) += 1;
            assert!(
                s != 500 && s < 600,
                "{path} {body}: {s} {}",
                a.text().chars().take(300).collect::<String>()
            );
            if a.headers
                .get("content-type")
                .is_some_and(|c| c == "application/json")
            {
                serde_json::from_slice::<Value>(&a.body)
                    .unwrap_or_else(|e| panic!("{path}: not JSON: {e}"));
            }
        }
    }
    assert!(
        statuses.get(&200).copied().unwrap_or(0) > 100,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 1000,
        "{statuses:?}"
    );
    // Still serving.
    let a = post_json(
        &t.router,
        "/v1/completions",
        &json!({"model": "scripted", "prompt": [5, 6], "max_tokens": 2, "temperature": 0}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}
