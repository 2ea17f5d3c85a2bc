//! The knowledge-base agent loop on the `say` models, whose answers are known: the user's message scripts the
//! search call, and a document in the knowledge base scripts the answer (the search results are the next round's
//! prompt, so the last `<say>` is the document's). Whole and streamed requests must give the same answer: every
//! round's text, the thinking, the searches and the sources; a client's own function call ends the loop in both.
//! (The scripts are in plain-text files: Markdown's reader drops the `<say>` tags as HTML.)

mod common;

use std::collections::HashMap;

use common::kbs::{make_kb, temp};
use common::*;
use lar_server::kb::KbServing;
use lar_server::{ManagerConfig, ServerConfig};
use serde_json::{Value, json};

const ANSWER: &str = "Tomatoes grow by the south wall [1].";

fn agent_app(tag: &str) -> TestApp {
    let d = temp(tag);
    let notes = d.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(
        notes.join("garden.txt"),
        format!("Tomatoes grow by the south wall. <say>{ANSWER}</say>\n"),
    )
    .unwrap();
    std::fs::write(
        notes.join("boiler.md"),
        "# Boiler\n\nThe pressure is 1.5 bar.\n",
    )
    .unwrap();
    let deep = d.join("deep");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(
        deep.join("plan.txt"),
        "The plan. <say><think>\nFound it.</think>\n\nBy the south wall [1].</say>\n",
    )
    .unwrap();
    let root = d.join("kb");
    let e = lar_server::testing::SumEmbedder;
    make_kb(&root, "notes", "embed", &e, &notes);
    make_kb(&root, "deep", "embed", &e, &deep);
    app_with(
        ManagerConfig::default(),
        ServerConfig {
            kb: KbServing {
                root: Some(root),
                grants: HashMap::new(),
                default_model: None,
                threads: 1,
            },
            ..Default::default()
        },
    )
}

fn search_call(query: &str) -> String {
    format!(
        "<tool_call>\n{{\"name\": \"search_knowledge_base\", \"arguments\": {{\"query\": \"{query}\"}}}}\n</tool_call>"
    )
}

/// The answer whole, and the same request streamed added up into the same shape (its search chunks checked
/// against the searches of its last chunk).
async fn both(t: &TestApp, body: Value) -> (Value, Value) {
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let whole = a.json();

    let mut body = body;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let data = a.sse();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (mut content, mut reasoning, mut calls) =
        (String::new(), String::new(), Vec::<Value>::new());
    let (mut searched, mut last) = (Vec::new(), None);
    for c in &chunks {
        if let Some(s) = c.get("knowledge_base_search") {
            searched.push(s.clone());
        }
        let Some(ch) = c["choices"].get(0) else {
            assert!(c["usage"]["total_tokens"].as_u64().unwrap() > 0, "{c}");
            continue;
        };
        let d = &ch["delta"];
        content += d["content"].as_str().unwrap_or_default();
        reasoning += d["reasoning_content"].as_str().unwrap_or_default();
        for f in d["tool_calls"].as_array().into_iter().flatten() {
            let i = f["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push(json!({"id": f["id"], "type": "function",
                    "function": {"name": f["function"]["name"], "arguments": ""}}));
            } else {
                let a = calls[i]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_string()
                    + f["function"]["arguments"].as_str().unwrap();
                calls[i]["function"]["arguments"] = json!(a);
            }
        }
        if !ch["finish_reason"].is_null() {
            last = Some(c.clone());
        }
    }
    let last = last.expect("no chunk with a finish reason");
    assert_eq!(json!(searched), last["knowledge_base_searches"]);
    let mut message = json!({"role": "assistant", "content": content});
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
        message["reasoning"] = json!(reasoning);
    }
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
        if content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    let streamed = json!({"message": message, "finish_reason": last["choices"][0]["finish_reason"],
        "sources": last["sources"], "knowledge_base_searches": last["knowledge_base_searches"]});
    let whole = json!({"message": whole["choices"][0]["message"], "finish_reason": whole["choices"][0]["finish_reason"],
        "sources": whole["sources"], "knowledge_base_searches": whole["knowledge_base_searches"]});
    (whole, streamed)
}

/// Ids differ between two runs: the calls' are compared by name and arguments.
fn without_ids(mut v: Value) -> Value {
    for c in v["message"]["tool_calls"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        c["id"] = json!("-");
    }
    v
}

#[tokio::test]
async fn the_loop_searches_then_answers_from_the_document_whole_and_streamed() {
    let t = agent_app("say-agent");
    let body = json!({"model": "say", "max_tokens": 200,
        "messages": [{"role": "user", "content": format!("<say>Let me look.\n{}</say>", search_call("tomatoes"))}],
        "tools": [{"type": "knowledge_base", "knowledge_base": "notes"}]});
    let (whole, streamed) = both(&t, body).await;
    assert_eq!(whole, streamed);
    let content = whole["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("Let me look."), "{whole}");
    assert!(content.ends_with(ANSWER), "{whole}");
    assert_eq!(whole["finish_reason"], "stop");
    let searches = whole["knowledge_base_searches"].as_array().unwrap();
    assert_eq!(searches.len(), 1, "{whole}");
    assert_eq!(
        (&searches[0]["knowledge_base"], &searches[0]["query"]),
        (&json!("notes"), &json!("tomatoes"))
    );
    let paths: Vec<&str> = whole["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(searches[0]["results"], json!(paths.len()), "{whole}");
    assert!(paths.iter().any(|p| p.ends_with("garden.txt")), "{paths:?}");
}

#[tokio::test]
async fn a_thinking_model_thinks_in_every_round() {
    let t = agent_app("say-agent-think");
    let script = format!("<think>\nSearch first.</think>\n\n{}", search_call("plan"));
    let body = json!({"model": "say-thinker", "max_tokens": 200,
        "messages": [{"role": "user", "content": format!("<say>{script}</say>")}],
        "tools": [{"type": "knowledge_base", "knowledge_base": "deep"}]});
    let (whole, streamed) = both(&t, body).await;
    assert_eq!(whole, streamed);
    let thinking = whole["message"]["reasoning_content"].as_str().unwrap();
    assert!(
        thinking.contains("Search first.") && thinking.contains("Found it."),
        "{whole}"
    );
    assert_eq!(
        whole["message"]["content"].as_str().unwrap().trim(),
        "By the south wall [1]."
    );
}

#[tokio::test]
async fn a_call_of_the_clients_own_function_ends_the_loop() {
    let t = agent_app("say-agent-own");
    let own = r#"<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>"#;
    let body = json!({"model": "say", "max_tokens": 200,
        "messages": [{"role": "user", "content": format!("<say>{own}</say>")}],
        "tools": [{"type": "knowledge_base", "knowledge_base": "notes"},
            {"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]});
    let (whole, streamed) = both(&t, body).await;
    assert_eq!(without_ids(whole.clone()), without_ids(streamed));
    assert_eq!(whole["finish_reason"], "tool_calls");
    let call = &whole["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(whole["knowledge_base_searches"], json!([]));
}

#[tokio::test]
async fn grounded_answers_say_which_sources_they_cite_streamed_too() {
    let t = agent_app("say-cited");
    let ask = "<say>They grow by the south wall [1].</say> Where do tomatoes grow?";
    let body = json!({"model": "kb:notes@say", "max_tokens": 100,
        "messages": [{"role": "user", "content": ask}]});
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "They grow by the south wall [1].", "{v}");
    assert_eq!(
        (&m["cited"], &m["citations_added"]),
        (&json!([1]), &json!(false))
    );

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let a = post_json(&t.router, "/v1/chat/completions", &streamed).await;
    let last: Value = a
        .sse()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .find(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    assert_eq!(last["cited"], json!([1]), "{last}");
    assert_eq!(last["sources"], v["sources"]);

    for stream in [false, true] {
        let mut o = json!({"model": "kb:notes@say", "stream": stream,
            "messages": [{"role": "user", "content": ask}]});
        o["options"] = json!({"num_predict": 100});
        let a = post_json(&t.router, "/api/chat", &o).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let lines = a.ndjson();
        let last = lines.last().unwrap();
        assert_eq!(last["cited"], json!([1]), "stream {stream}: {last}");
        assert_eq!(last["sources"], v["sources"]);
    }
}
