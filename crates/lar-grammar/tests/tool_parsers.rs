//! Every family's tool-call syntax parsed from exact text, given whole and split at every position (as tokens
//! stream in), with the same result; text that is not a call comes back as text, nothing lost.

use lar_grammar::tools::{Piece, ToolFormat, ToolParser};
use lar_types::ToolCall;
use serde_json::{Value, json};

/// Text and calls from `chunks` given one after another.
fn parse(format: ToolFormat, chunks: &[&str]) -> (String, Vec<ToolCall>) {
    let mut p = ToolParser::new(format, "call");
    let mut pieces = Vec::new();
    for c in chunks {
        pieces.extend(p.push(c));
    }
    pieces.extend(p.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => text.push_str(&t),
            Piece::Call(c) => calls.push(c),
        }
    }
    (text, calls)
}

/// The same result whole, split in two at every character, and one character at a time.
fn check(format: ToolFormat, text: &str, want_text: &str, want: &[(&str, Value)]) {
    let whole = parse(format, &[text]);
    let names: Vec<(&str, &Value)> = whole
        .1
        .iter()
        .map(|c| (c.name.as_str(), &c.arguments))
        .collect();
    let expected: Vec<(&str, &Value)> = want.iter().map(|(n, a)| (*n, a)).collect();
    assert_eq!(whole.0, want_text, "{format:?}: {text:?}");
    assert_eq!(names, expected, "{format:?}: {text:?}");
    let ids: Vec<&str> = whole.1.iter().map(|c| c.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "ids are distinct: {ids:?}");
    for (i, _) in text.char_indices().skip(1) {
        assert_eq!(
            parse(format, &[&text[..i], &text[i..]]),
            whole,
            "{format:?} split at {i}: {text:?}"
        );
    }
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(parse(format, &refs), whole, "{format:?} char by char");
}

#[test]
fn hermes_and_qwen() {
    check(
        ToolFormat::Hermes,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>",
        "",
        &[("get_weather", json!({"city": "Paris", "days": 3}))],
    );
    check(
        ToolFormat::Hermes,
        "Let me check. <tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>",
        "Let me check. ",
        &[("a", json!({})), ("b", json!({"x": [1, 2]}))],
    );
    // Arguments as a JSON string, and a call the model did not close before it ended.
    check(
        ToolFormat::Hermes,
        "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"k\\\": 1}\"}",
        "",
        &[("f", json!({"k": 1}))],
    );
    // Text with a '<' that is not a marker, and text that looks like one but is not.
    check(
        ToolFormat::Hermes,
        "a < b and <tool_x> ok",
        "a < b and <tool_x> ok",
        &[],
    );
    // A call that does not parse is given back as text.
    check(
        ToolFormat::Hermes,
        "<tool_call>\n{not json}\n</tool_call> done",
        "<tool_call>\n{not json}\n</tool_call> done",
        &[],
    );
    // Small models often leave the tags out: a call written bare at the start of the answer still counts.
    check(
        ToolFormat::Hermes,
        "  {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
        "",
        &[("get_weather", json!({"city": "Paris"}))],
    );
    check(
        ToolFormat::Hermes,
        "{\"answer\": 42}",
        "{\"answer\": 42}",
        &[],
    );
    check(
        ToolFormat::Generic,
        "é<tool_call>{\"name\": \"ü\", \"arguments\": {\"t\": \"日本\"}}</tool_call>",
        "é",
        &[("ü", json!({"t": "日本"}))],
    );
}

#[test]
fn llama3() {
    check(
        ToolFormat::Llama3,
        "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
        "",
        &[("get_weather", json!({"city": "Oslo"}))],
    );
    check(
        ToolFormat::Llama3,
        "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"n\": 1}}; {\"name\": \"b\", \"parameters\": {}}",
        "",
        &[("a", json!({"n": 1})), ("b", json!({}))],
    );
    check(
        ToolFormat::Llama3,
        "  The answer is {42}.",
        "  The answer is {42}.",
        &[],
    );
    check(
        ToolFormat::Llama3,
        "{\"not\": \"a call\"}",
        "{\"not\": \"a call\"}",
        &[],
    );
}

#[test]
fn mistral() {
    check(
        ToolFormat::Mistral,
        "[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"id\": \"abc123xyz\"}, {\"name\": \"neg\", \"arguments\": {\"a\": 5}}]",
        "",
        &[("add", json!({"a": 1, "b": 2})), ("neg", json!({"a": 5}))],
    );
    let (_, calls) = parse(
        ToolFormat::Mistral,
        &["[TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}, \"id\": \"abc123xyz\"}]"],
    );
    assert_eq!(calls[0].id, "abc123xyz", "the model's own id is kept");
    check(ToolFormat::Mistral, "Sure: [1, 2]", "Sure: [1, 2]", &[]);
    check(
        ToolFormat::Mistral,
        "[TOOL_CALLS]oops",
        "[TOOL_CALLS]oops",
        &[],
    );
}

#[test]
fn calls_in_a_json_code_block_at_the_start() {
    let call = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    check(
        ToolFormat::Hermes,
        &format!("```json\n{call}\n```"),
        "",
        &[("get_weather", json!({"city": "Paris"}))],
    );
    check(
        ToolFormat::Hermes,
        &format!("```json\n{call}\n{call}\n```"),
        "",
        &[
            ("get_weather", json!({"city": "Paris"})),
            ("get_weather", json!({"city": "Paris"})),
        ],
    );
    // Code blocks that are not calls, and one after other text, stay text.
    for text in [
        "```python\nprint(1)\n```".to_string(),
        "```json\n{\"a\": 1}\n```".to_string(),
        format!("Here it is:\n```json\n{call}\n```"),
        "```json\n{\"name\": \"f\"".to_string(),
    ] {
        check(ToolFormat::Hermes, &text, &text, &[]);
    }
}
