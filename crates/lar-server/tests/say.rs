//! Tool calls and thinking parsed from exact model output through the server. The `say` models answer with the
//! script a test gives them (`<say>...</say>` in a message), one character per token, with the templates and
//! control tokens of each family (Hermes/Qwen, Llama 3, Mistral, a Qwen3-like thinker), so the parsers, the lazy
//! grammars (which must let a valid call through unchanged) and every route's streaming see what a real model of
//! that family sends, split at every character. Each answer is checked whole and streamed, and the two must agree.

mod common;

use common::*;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                "days": {"type": "integer"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time", "description": "Time in a zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}},
    ])
}

const PARIS: &str = r#"{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}"#;
const CET: &str = r#"{"name": "get_time", "arguments": {"zone": "CET"}}"#;

fn weather() -> (String, Value) {
    ("get_weather".into(), json!({"city": "Paris", "days": 3}))
}
fn time() -> (String, Value) {
    ("get_time".into(), json!({"zone": "CET"}))
}

/// An OpenAI answer, from the whole response or added up from its stream.
#[derive(Debug, PartialEq)]
struct Reply {
    content: String,
    reasoning: String,
    calls: Vec<(String, Value)>,
    finish: String,
}

fn user(script: &str) -> Value {
    json!([{"role": "user", "content": format!("<say>{script}</say>")}])
}

/// The chat answer to `messages` with `extra` fields, whole and streamed; they must be the same.
async fn chat(t: &TestApp, model: &str, messages: Value, extra: Value) -> Reply {
    let mut body = json!({"model": model, "messages": messages, "max_tokens": 200});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let m = &v["choices"][0]["message"];
    let whole = Reply {
        content: m["content"].as_str().unwrap_or_default().to_string(),
        reasoning: m["reasoning_content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        calls: m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                assert_eq!(c["type"], "function");
                assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
                let args = c["function"]["arguments"].as_str().unwrap();
                (
                    c["function"]["name"].as_str().unwrap().to_string(),
                    serde_json::from_str(args).unwrap_or_else(|e| panic!("{args}: {e}")),
                )
            })
            .collect(),
        finish: v["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string(),
    };

    body["stream"] = json!(true);
    let a = post_json(&t.router, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut streamed = Reply {
        content: String::new(),
        reasoning: String::new(),
        calls: Vec::new(),
        finish: String::new(),
    };
    let mut args: Vec<String> = Vec::new();
    for d in a.sse().iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap();
        let Some(c) = v["choices"].get(0) else {
            continue;
        };
        let delta = &c["delta"];
        streamed.content += delta["content"].as_str().unwrap_or_default();
        streamed.reasoning += delta["reasoning_content"].as_str().unwrap_or_default();
        for tc in delta["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == args.len() {
                // The first fragment: id, type, name and empty arguments.
                assert!(tc["id"].as_str().is_some_and(|s| !s.is_empty()), "{tc}");
                assert_eq!(tc["type"], "function", "{tc}");
                assert_eq!(tc["function"]["arguments"], "", "{tc}");
                streamed
                    .calls
                    .push((tc["function"]["name"].as_str().unwrap().into(), json!(null)));
                args.push(String::new());
            } else {
                assert!(i < args.len(), "index {i} skipped ahead: {tc}");
                args[i] += tc["function"]["arguments"].as_str().unwrap_or_default();
            }
        }
        if let Some(f) = c["finish_reason"].as_str() {
            streamed.finish = f.to_string();
        }
    }
    for (c, a) in streamed.calls.iter_mut().zip(&args) {
        c.1 = serde_json::from_str(a).unwrap_or_else(|e| panic!("streamed arguments {a}: {e}"));
    }
    assert_eq!(whole, streamed, "whole and streamed answers differ");
    whole
}

fn reply(content: &str, calls: Vec<(String, Value)>) -> Reply {
    Reply {
        content: content.into(),
        reasoning: String::new(),
        finish: if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
        .into(),
        calls,
    }
}

#[tokio::test]
async fn hermes_calls_text_and_lookalikes() {
    let t = app();
    let offer = json!({"tools": tools()});
    let one = format!("<tool_call>\n{PARIS}\n</tool_call>");
    assert_eq!(
        chat(&t, "say", user(&one), offer.clone()).await,
        reply("", vec![weather()])
    );
    // Forced, the grammar holds from the first token and lets the same call through.
    let forced = json!({"tools": tools(), "tool_choice": "required"});
    assert_eq!(
        chat(&t, "say", user(&one), forced).await,
        reply("", vec![weather()])
    );
    let two = format!(
        "Checking both.\n<tool_call>\n{PARIS}\n</tool_call>\n<tool_call>\n{CET}\n</tool_call>"
    );
    let r = chat(&t, "say", user(&two), offer.clone()).await;
    assert_eq!(r.content.trim(), "Checking both.");
    assert_eq!(r.calls, vec![weather(), time()]);
    // Text that only looks like markup stays text, every character of it.
    let text = "Use a < b, <tool> or </tool_call without a call: {\"name\": 1}.";
    assert_eq!(
        chat(&t, "say", user(text), offer.clone()).await,
        reply(text, vec![])
    );
    // Without tools the markup is the answer's text.
    let r = chat(&t, "say", user(&one), json!({})).await;
    assert_eq!(r.content, one);
}

#[tokio::test]
async fn llama3_calls_after_the_python_tag_or_alone() {
    let t = app();
    let offer = json!({"tools": tools()});
    let tagged =
        r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}"#;
    assert_eq!(
        chat(&t, "say-llama3", user(tagged), offer.clone()).await,
        reply("", vec![weather()])
    );
    let bare = r#"{"name": "get_time", "parameters": {"zone": "CET"}}"#;
    assert_eq!(
        chat(&t, "say-llama3", user(bare), offer.clone()).await,
        reply("", vec![time()])
    );
    let forced = json!({"tools": tools(), "tool_choice": {"type": "function", "function": {"name": "get_time"}}});
    assert_eq!(
        chat(&t, "say-llama3", user(bare), forced).await,
        reply("", vec![time()])
    );
    let text = "It is {sunny} today.";
    assert_eq!(
        chat(&t, "say-llama3", user(text), offer).await,
        reply(text, vec![])
    );
}

#[tokio::test]
async fn mistral_calls_after_its_control_token() {
    let t = app();
    let offer = json!({"tools": tools()});
    // `[TOOL_CALLS]` is a control token: the engine shows no control token, so the route must reveal this one.
    let both = format!("[TOOL_CALLS][{PARIS}, {CET}]");
    assert_eq!(
        chat(&t, "say-mistral", user(&both), offer.clone()).await,
        reply("", vec![weather(), time()])
    );
    let forced = json!({"tools": tools(), "tool_choice": "required"});
    assert_eq!(
        chat(&t, "say-mistral", user(&both), forced).await,
        reply("", vec![weather(), time()])
    );
    let text = "[1, 2] is a list.";
    assert_eq!(
        chat(&t, "say-mistral", user(text), offer).await,
        reply(text, vec![])
    );
}

#[tokio::test]
async fn a_tool_result_round_trip_in_every_family() {
    let t = app();
    for (model, call) in [
        ("say", format!("<tool_call>\n{PARIS}\n</tool_call>")),
        (
            "say-llama3",
            r#"<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris", "days": 3}}"#
                .into(),
        ),
        ("say-mistral", format!("[TOOL_CALLS][{PARIS}]")),
    ] {
        let offer = json!({"tools": tools()});
        let mut msgs = user(&call);
        let r = chat(&t, model, msgs.clone(), offer.clone()).await;
        assert_eq!(r.calls, vec![weather()], "{model}");
        msgs.as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 3}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "<say>Sunny, 21 C, in Paris.</say>"}),
        ]);
        assert_eq!(
            chat(&t, model, msgs, offer).await,
            reply("Sunny, 21 C, in Paris.", vec![]),
            "{model}"
        );
    }
}

#[tokio::test]
async fn thinking_then_a_call_or_a_schema() {
    let t = app();
    let call = format!("<think>\nParis? Look it up.</think>\n\n<tool_call>\n{PARIS}\n</tool_call>");
    let r = chat(&t, "say-thinker", user(&call), json!({"tools": tools()})).await;
    assert_eq!(r.reasoning.trim(), "Paris? Look it up.");
    assert_eq!(r.calls, vec![weather()]);
    assert_eq!(r.content.trim(), "");
    // The schema holds after the thinking, not in it: the thinking is free text.
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let format = json!({"response_format": {"type": "json_schema",
        "json_schema": {"name": "place", "strict": true, "schema": schema}}});
    let r = chat(
        &t,
        "say-thinker",
        user("<think>\nOne field: {city}.</think>\n\n{\"city\": \"Paris\"}"),
        format,
    )
    .await;
    assert_eq!(r.reasoning.trim(), "One field: {city}.");
    assert_eq!(
        serde_json::from_str::<Value>(&r.content).unwrap(),
        json!({"city": "Paris"})
    );
    // Asked not to think, the template closes the thinking: the whole script is the answer.
    let r = chat(
        &t,
        "say-thinker",
        user("Paris."),
        json!({"reasoning_effort": "none"}),
    )
    .await;
    assert_eq!((r.reasoning.as_str(), r.content.as_str()), ("", "Paris."));
}

#[tokio::test]
async fn ollama_calls_as_objects_and_thinking() {
    let t = app();
    for (model, script) in [
        ("say", format!("<tool_call>\n{PARIS}\n</tool_call>")),
        ("say-mistral", format!("[TOOL_CALLS][{PARIS}]")),
    ] {
        let body =
            json!({"model": model, "messages": user(&script), "tools": tools(), "stream": false});
        let a = post_json(&t.router, "/api/chat", &body).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let m = &a.json()["message"];
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather", "{m}");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            weather().1,
            "{m}"
        );
        let mut body = body;
        body["stream"] = json!(true);
        let lines = post_json(&t.router, "/api/chat", &body).await.ndjson();
        let calls: Vec<&Value> = lines
            .iter()
            .flat_map(|l| l["message"]["tool_calls"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(calls.len(), 1, "{lines:?}");
        assert_eq!(calls[0]["function"]["arguments"], weather().1);
        let text: String = lines
            .iter()
            .map(|l| l["message"]["content"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(text.trim(), "", "{model}");
    }
    let body = json!({"model": "say-thinker", "messages": user("<think>\nHm.</think>\n\nYes."),
        "think": true, "stream": false});
    let a = post_json(&t.router, "/api/chat", &body).await;
    let m = &a.json()["message"];
    assert_eq!(
        (
            m["thinking"].as_str().unwrap().trim(),
            m["content"].as_str().unwrap().trim()
        ),
        ("Hm.", "Yes.")
    );
}

#[tokio::test]
async fn anthropic_tool_use_and_thinking_blocks() {
    let t = app();
    let script =
        format!("<think>\nNeed data.</think>\n\nLet me see.\n<tool_call>\n{PARIS}\n</tool_call>");
    let body = json!({"model": "say-thinker", "max_tokens": 200, "messages": user(&script),
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [{"name": "get_weather", "input_schema": tools()[0]["function"]["parameters"]}]});
    let a = post_json(&t.router, "/v1/messages", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"], "{v}");
    assert_eq!(
        v["content"][0]["thinking"].as_str().unwrap().trim(),
        "Need data."
    );
    assert_eq!(
        v["content"][1]["text"].as_str().unwrap().trim(),
        "Let me see."
    );
    assert_eq!(v["content"][2]["name"], "get_weather");
    assert_eq!(v["content"][2]["input"], weather().1);
    assert_eq!(v["stop_reason"], "tool_use");

    let mut body = body;
    body["stream"] = json!(true);
    let ev = events(&post_json(&t.router, "/v1/messages", &body).await.text());
    let (mut thinking, mut json_text) = (String::new(), String::new());
    for (_, d) in ev.iter().filter(|(n, _)| n == "content_block_delta") {
        thinking += d["delta"]["thinking"].as_str().unwrap_or_default();
        json_text += d["delta"]["partial_json"].as_str().unwrap_or_default();
    }
    assert_eq!(thinking.trim(), "Need data.");
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        weather().1
    );
    let stop = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(stop.1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn responses_function_calls_whole_and_streamed() {
    let t = app();
    let script = format!("[TOOL_CALLS][{PARIS}]");
    let body = json!({"model": "say-mistral", "input": format!("<say>{script}</say>"),
        "tools": [{"type": "function", "name": "get_weather",
            "parameters": tools()[0]["function"]["parameters"]}]});
    let a = post_json(&t.router, "/v1/responses", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .unwrap_or_else(|| panic!("no call in {v}"));
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, weather().1);

    let mut body = body;
    body["stream"] = json!(true);
    let ev = events(&post_json(&t.router, "/v1/responses", &body).await.text());
    let streamed: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&streamed).unwrap(),
        weather().1
    );
}
