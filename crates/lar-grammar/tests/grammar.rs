//! Constrained decoding on a real vocabulary (Qwen2.5-Coder's, 151k tokens): random walks, where every token is
//! drawn at temperature 1 from random logits under the grammar's mask, must always give text that matches the
//! constraint; constructs the grammar engine cannot enforce are refused by name.

mod common;

use std::sync::Arc;

use common::{N_LOGITS, tokenizer, vocab};
use lar_engine::sampler::LogitsProcessor;
use lar_grammar::{Constraint, Error, Grammar, Vocabulary};
use serde_json::{Value, json};

/// One random walk under `g` (see `common::walk`).
fn walk(g: &Grammar, seed: u64, max: usize) -> (String, bool) {
    common::walk(Box::new(g.mask()), &[], seed, max)
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "kind": {"enum": ["invoice", "receipt", "contract"]},
            "amount": {"type": "number", "minimum": 0, "maximum": 1000},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
            "due": {"type": "object", "properties": {"day": {"type": "integer", "minimum": 1, "maximum": 31}},
                    "required": ["day"], "additionalProperties": false},
            "paid": {"type": "boolean"}
        },
        "required": ["name", "kind", "amount", "due"],
        "additionalProperties": false
    })
}

/// The checks `jsonschema` would make for [`schema`], by hand.
fn check(v: &Value, seed: u64) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("seed {seed}: not an object: {v}"));
    for k in o.keys() {
        assert!(
            ["name", "kind", "amount", "count", "tags", "due", "paid"].contains(&k.as_str()),
            "seed {seed}: unexpected key {k}"
        );
    }
    let name = o["name"].as_str().expect("name is a string");
    assert!(
        name.chars().count() <= 12,
        "seed {seed}: name too long: {name:?}"
    );
    assert!(["invoice", "receipt", "contract"].contains(&o["kind"].as_str().unwrap_or("")));
    let amount = o["amount"].as_f64().expect("amount is a number");
    assert!(
        (0.0..=1000.0).contains(&amount),
        "seed {seed}: amount {amount}"
    );
    if let Some(c) = o.get("count") {
        let c = c
            .as_i64()
            .unwrap_or_else(|| panic!("seed {seed}: count {c} is not an integer"));
        assert!((1..=9).contains(&c));
    }
    if let Some(t) = o.get("tags") {
        let t = t.as_array().expect("tags is an array");
        assert!(t.len() <= 3);
        assert!(
            t.iter()
                .all(|s| s.as_str().is_some_and(|s| s.chars().count() <= 6))
        );
    }
    let due = o["due"].as_object().expect("due is an object");
    assert_eq!(due.len(), 1, "seed {seed}: {due:?}");
    let day = due["day"].as_i64().expect("day is an integer");
    assert!((1..=31).contains(&day));
    if let Some(p) = o.get("paid") {
        assert!(p.is_boolean());
    }
}

#[test]
fn random_walks_under_a_schema_always_validate() {
    let g = vocab()
        .compile(&Constraint::schema(schema()).expect("schema"))
        .expect("compiles");
    for seed in 1..=50 {
        let (text, ended) = walk(&g, seed, 400);
        assert!(ended, "seed {seed}: no end after 400 tokens: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
        check(&v, seed);
    }
}

#[test]
fn any_json_object() {
    let g = vocab().compile(&Constraint::JsonObject).expect("compiles");
    for seed in 1..=10 {
        let (text, ended) = walk(&g, seed, 300);
        if ended {
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
            assert!(v.is_object(), "{text}");
        } else {
            // Cut short, it is still the start of an object.
            assert!(text.starts_with('{'), "{text}");
        }
    }
}

#[test]
fn regular_expressions_and_lark_grammars() {
    let g = vocab()
        .compile(&Constraint::Regex(r"(yes|no), [0-9]{3}-[A-Z]{2}".into()))
        .expect("compiles");
    let re = |s: &str| {
        let (a, b) = s.split_once(", ").unwrap_or(("", ""));
        (a == "yes" || a == "no")
            && b.len() == 6
            && b[..3].bytes().all(|c| c.is_ascii_digit())
            && &b[3..4] == "-"
            && b[4..].bytes().all(|c| c.is_ascii_uppercase())
    };
    for seed in 1..=20 {
        let (text, ended) = walk(&g, seed, 50);
        assert!(ended && re(&text), "seed {seed}: {text:?}");
    }
    let lark = r#"
        start: "Answer: " choice " (" %json {"type": "integer", "minimum": 0, "maximum": 99} ")"
        choice: "A" | "B" | "C"
    "#;
    let g = vocab()
        .compile(&Constraint::Lark(lark.into()))
        .expect("compiles");
    for seed in 1..=20 {
        let (text, ended) = walk(&g, seed, 50);
        assert!(ended, "seed {seed}: {text:?}");
        let rest = text.strip_prefix("Answer: ").expect(&text);
        assert!(["A (", "B (", "C ("].contains(&&rest[..3]), "{text}");
        let n: i64 = rest[3..rest.len() - 1].parse().expect(&text);
        assert!((0..=99).contains(&n) && rest.ends_with(')'), "{text}");
    }
}

#[test]
fn what_cannot_be_enforced_is_refused_by_name() {
    let cases = [
        (json!({"type": "array", "uniqueItems": true}), "uniqueItems"),
        (json!({"not": {"type": "string"}}), "not"),
        (
            json!({"if": {"type": "string"}, "then": {"maxLength": 3}}),
            "if",
        ),
        (
            json!({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}),
            "oneOf",
        ),
        (json!({"type": "string", "pattern": "(unclosed"}), "pattern"),
    ];
    for (schema, construct) in cases {
        let c = Constraint::schema(schema.clone()).expect("an object");
        match vocab().compile(&c) {
            Err(Error::Unsupported(msg)) => {
                assert!(
                    msg.contains(construct) || msg.to_lowercase().contains("regex"),
                    "{schema}: {msg}"
                )
            }
            Err(e) => panic!("{schema}: wrong error {e}"),
            Ok(_) => panic!("{schema} compiled"),
        }
    }
    assert!(matches!(
        Constraint::schema(json!(false)),
        Err(Error::Unsupported(_))
    ));
    assert!(
        matches!(Constraint::schema(json!([1])), Err(Error::Unsupported(m)) if m.contains("an array"))
    );
    assert!(matches!(
        Constraint::schema(json!(true)),
        Ok(Constraint::JsonSchema(_))
    ));
    for bad in ["start: (", "start: undefined_rule"] {
        assert!(
            matches!(
                vocab().compile(&Constraint::Lark(bad.into())),
                Err(Error::Unsupported(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        vocab().compile(&Constraint::Regex("(".into())),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn a_finished_grammar_leaves_only_the_end() {
    let g = vocab()
        .compile(&Constraint::Regex("ok".into()))
        .expect("compiles");
    let mut m = g.mask();
    let ok = tokenizer().encode("ok", false, false);
    assert_eq!(ok.len(), 1, "'ok' is one token in Qwen's vocabulary");
    m.accept(ok[0]);
    assert!(m.is_accepting());
    let mut logits = vec![1.0f32; N_LOGITS];
    m.process(&[], &mut logits);
    let open: Vec<usize> = (0..N_LOGITS).filter(|&i| logits[i].is_finite()).collect();
    let eog: Vec<usize> = vocab().eog().iter().map(|&t| t as usize).collect();
    assert!(
        !open.is_empty() && open.iter().all(|t| eog.contains(t)),
        "{open:?} vs {eog:?}"
    );
    // A token the grammar does not allow, forced anyway, is a failure the engine reports.
    let mut m = g.mask();
    m.accept(tokenizer().encode("no", false, false)[0]);
    assert!(m.failed().is_some());
}

/// A word vocabulary without byte fallback (the scripted models'): masks are exact, and a format none of its
/// tokens can start is refused when it is compiled.
#[test]
fn a_small_word_vocabulary() {
    let tok = Arc::new(lar_engine::scripted::tokenizer(64).expect("tokenizer"));
    let v = Vocabulary::new(tok, 64).expect("vocabulary");
    let g = v
        .compile(&Constraint::Regex("( w[12][0-9]){2}".into()))
        .expect("compiles");
    let mut m = g.mask();
    let mut logits = vec![0.0f32; 64];
    m.process(&[], &mut logits);
    let open: Vec<usize> = (0..64).filter(|&i| logits[i].is_finite()).collect();
    assert_eq!(
        open,
        (10..30).collect::<Vec<_>>(),
        "exactly ' w10' ... ' w29'"
    );
    let r = v.compile(&Constraint::JsonObject).map(|_| ());
    assert!(
        matches!(&r, Err(Error::Unsupported(m)) if m.contains("vocabulary")),
        "{r:?}"
    );
}
