//! Tool-call grammars on Qwen2.5-Coder's vocabulary: random walks under the mask (random logits at temperature 1)
//! always give calls that parse and name an offered tool with arguments of the right shape, forced from the
//! start (`required`, a named tool), or in `auto` once the model has written the opening marker or a leading `{`.

mod common;

use common::{N_LOGITS, tokenizer, vocab};
use lar_grammar::tools::{Piece, ToolChoice, ToolFormat, ToolGrammar, ToolParser};
use lar_types::{Tool, ToolCall};
use serde_json::{Value, json};

fn tools() -> Vec<Tool> {
    vec![
        Tool {
            name: "get_weather".into(),
            description: Some("Weather in a city".into()),
            parameters: json!({"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}),
        },
        Tool {
            name: "add".into(),
            description: None,
            parameters: json!({"type": "object", "properties": {
                "a": {"type": "integer", "minimum": -99, "maximum": 99},
                "b": {"type": "integer", "minimum": -99, "maximum": 99}}, "required": ["a", "b"]}),
        },
    ]
}

fn valid(c: &ToolCall) -> bool {
    let a = c.arguments.as_object().expect("arguments are an object");
    match c.name.as_str() {
        "get_weather" => {
            a.get("city")
                .and_then(Value::as_str)
                .is_some_and(|s| s.chars().count() <= 12)
                && a.keys().all(|k| k == "city" || k == "unit")
                && a.get("unit")
                    .is_none_or(|u| u == "celsius" || u == "fahrenheit")
        }
        // (`-0` is an integer too; serde_json reads it as a float.)
        "add" => {
            let int = |v: &Value| {
                v.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() <= 99.0)
            };
            a.len() == 2 && int(&a["a"]) && int(&a["b"])
        }
        _ => false,
    }
}

fn walk(
    p: Box<dyn lar_engine::sampler::LogitsProcessor>,
    prefix: &[u32],
    seed: u64,
) -> (String, bool) {
    common::walk(p, prefix, seed, 300)
}

fn calls(format: ToolFormat, text: &str) -> (String, Vec<ToolCall>) {
    let mut p = ToolParser::new(format, "c");
    let mut pieces = p.push(text);
    pieces.extend(p.finish());
    let mut t = String::new();
    let mut c = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(s) => t.push_str(&s),
            Piece::Call(call) => c.push(call),
        }
    }
    (t, c)
}

#[test]
fn forced_calls_always_parse_and_match_their_tool() {
    let tools = tools();
    for (choice, parallel) in [
        (ToolChoice::Required, true),
        (ToolChoice::Required, false),
        (ToolChoice::Function("add".into()), true),
    ] {
        let g = ToolGrammar::new(vocab(), ToolFormat::Hermes, &tools, &choice, parallel)
            .expect("compiles")
            .expect("a grammar");
        for seed in 1..=12 {
            let (text, ended) = walk(g.mask(), &[], seed);
            assert!(ended, "{choice:?} seed {seed}: {text}");
            let (rest, calls) = calls(ToolFormat::Hermes, &text);
            assert!(
                rest.is_empty() && !calls.is_empty(),
                "{choice:?} seed {seed}: {text:?}"
            );
            assert!(parallel || calls.len() == 1, "{text}");
            assert!(calls.iter().all(valid), "{choice:?} seed {seed}: {calls:?}");
            if let ToolChoice::Function(n) = &choice {
                assert!(calls.iter().all(|c| &c.name == n), "{calls:?}");
            }
        }
    }
}

#[test]
fn auto_is_free_until_a_call_starts_then_the_call_is_held_to_its_schema() {
    let tools = tools();
    let g = ToolGrammar::new(vocab(), ToolFormat::Hermes, &tools, &ToolChoice::Auto, true)
        .expect("compiles")
        .expect("a grammar");
    let tok = tokenizer();
    // Before any marker, nothing is masked.
    let mut m = g.mask();
    let mut logits = vec![0.5f32; N_LOGITS];
    m.process(&[], &mut logits);
    assert!(logits.iter().all(|l| *l == 0.5));
    let starts = [
        tok.encode("Let me look that up.\n<tool_call>", false, true),
        tok.encode("<tool_call>\n", false, true),
        tok.encode("\n{\"", false, true),
        // A code model's way: the call in a JSON code block.
        tok.encode("```json\n", false, true),
    ];
    for prefix in &starts {
        for seed in 1..=8 {
            let (text, ended) = walk(g.mask(), prefix, seed);
            assert!(ended, "seed {seed}: {text}");
            let (_, calls) = calls(ToolFormat::Hermes, &text);
            assert!(
                !calls.is_empty() && calls.iter().all(valid),
                "seed {seed}: {text:?}"
            );
        }
    }
}

#[test]
fn other_families_forced() {
    let tools = tools();
    for format in [ToolFormat::Llama3, ToolFormat::Mistral, ToolFormat::Generic] {
        let g = ToolGrammar::new(vocab(), format, &tools, &ToolChoice::Required, true)
            .expect("compiles")
            .expect("a grammar");
        for seed in 1..=6 {
            let (text, ended) = walk(g.mask(), &[], seed);
            assert!(ended, "{format:?} seed {seed}: {text}");
            let (rest, calls) = calls(format, &text);
            assert!(rest.trim().is_empty(), "{format:?}: {text:?}");
            assert!(
                !calls.is_empty() && calls.iter().all(valid),
                "{format:?} seed {seed}: {text:?}"
            );
        }
    }
    assert!(
        ToolGrammar::new(vocab(), ToolFormat::Hermes, &tools, &ToolChoice::None, true)
            .expect("ok")
            .is_none()
    );
    let bad = [Tool {
        name: "f".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"x": {"not": {}}}}),
    }];
    assert!(
        ToolGrammar::new(
            vocab(),
            ToolFormat::Hermes,
            &bad,
            &ToolChoice::Required,
            true
        )
        .is_err()
    );
}
