//! What a grammar mask costs per token on a real vocabulary (Qwen2.5-Coder's, 151,936 logits): random walks
//! under a JSON schema and under a tool-call grammar, timing the processor's work for each token (computing the
//! mask, applying it to the logits row, advancing the parser). Not a test: a benchmark (see BENCHMARKS.md).
//!
//!     cargo run --release -p lar-grammar --example mask_cost

use std::sync::Arc;
use std::time::Instant;

use lar_engine::sampler::{LogitsProcessor, Sampler};
use lar_grammar::tools::{ToolChoice, ToolFormat, ToolGrammar};
use lar_grammar::{Constraint, Vocabulary};
use lar_testdata::Rng;
use lar_tokenizer::Tokenizer;
use lar_types::{SamplingParams, Tool};
use serde_json::json;

const N_LOGITS: usize = 151_936;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Times `walks` random walks of up to 200 tokens; returns per-token microseconds.
fn time(vocab: &Vocabulary, make: &dyn Fn() -> Box<dyn LogitsProcessor>, walks: u64) -> Vec<f64> {
    let mut us = Vec::new();
    for seed in 1..=walks {
        let mut p = make();
        let mut rng = Rng((seed * 7919) | 1);
        let mut sampler = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(seed),
            ..SamplingParams::default()
        });
        let mut history = Vec::new();
        for _ in 0..200 {
            let mut logits: Vec<f32> = (0..N_LOGITS)
                .map(|_| (rng.below(8000) as f32) / 1000.0 - 4.0)
                .collect();
            for &t in vocab.eog() {
                logits[t as usize] = 6.0;
            }
            let t0 = Instant::now();
            p.process(&history, &mut logits);
            let dt = t0.elapsed();
            let s = sampler.sample(&mut logits, &history);
            let t1 = Instant::now();
            p.accept(s.token);
            us.push((dt + t1.elapsed()).as_secs_f64() * 1e6);
            if vocab.eog().contains(&s.token) || p.failed().is_some() {
                break;
            }
            history.push(s.token);
        }
    }
    us
}

fn main() {
    let g = lar_formats::Gguf::open(&lar_testdata::model(lar_testdata::QWEN_CODER))
        .expect("run scripts/fetch-models.sh");
    let tok = Arc::new(Tokenizer::from_gguf(&g).expect("tokenizer"));
    let t0 = Instant::now();
    let vocab = Vocabulary::new(tok, N_LOGITS).expect("vocabulary");
    println!(
        "vocabulary of {} tokens built in {:.0} ms (once per loaded model)",
        vocab.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let schema = json!({"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40},
        "kind": {"enum": ["invoice", "receipt", "contract"]},
        "amount": {"type": "number"},
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "item": {"type": "string", "maxLength": 30}, "qty": {"type": "integer"}}, "required": ["item", "qty"]},
            "maxItems": 6}},
        "required": ["name", "kind", "amount", "lines"]});
    let t0 = Instant::now();
    let grammar = vocab
        .compile(&Constraint::schema(schema).expect("schema"))
        .expect("compiles");
    println!(
        "schema compiled in {:.1} ms (once per request)",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let tools = vec![Tool {
        name: "get_weather".into(),
        description: None,
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"},
            "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}),
    }];
    let tg = ToolGrammar::new(
        &vocab,
        ToolFormat::Hermes,
        &tools,
        &ToolChoice::Required,
        true,
    )
    .expect("compiles")
    .expect("a grammar");
    println!("\n| grammar | tokens timed | mean | p50 | p99 |\n|---|---|---|---|---|");
    for (name, make) in [
        (
            "JSON schema (nested object, array, enum)",
            &(|| Box::new(grammar.mask()) as Box<dyn LogitsProcessor>)
                as &dyn Fn() -> Box<dyn LogitsProcessor>,
        ),
        ("tool call, forced (Hermes)", &|| tg.mask()),
    ] {
        let mut us = time(&vocab, make, 20);
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        let n = us.len();
        let p50 = pct(&mut us, 0.5);
        let p99 = pct(&mut us, 0.99);
        println!("| {name} | {n} | {mean:.0} µs | {p50:.0} µs | {p99:.0} µs |");
    }
}
