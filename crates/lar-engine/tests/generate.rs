//! The engine on the real models: greedy generation equals llama.cpp's (tests/golden/*.json), batching several
//! sequences gives each the tokens it gets alone, and the limits (stop strings, max tokens, context) hold.

use lar_engine::{EngineConfig, EngineHandle, Error, Event, Request};
use lar_testdata as testdata;
use lar_types::{FinishReason, SamplingParams};

fn config() -> EngineConfig {
    EngineConfig {
        ctx: Some(1024),
        threads: 2,
        ..Default::default()
    }
}

fn engine(file: &str) -> EngineHandle {
    lar_engine::load(&testdata::model(file), &config()).unwrap()
}

use testdata::{golden, golden_ids as ids};

/// Greedy 64 tokens must equal llama.cpp's. Where float reordering flips a token, that is allowed only at a
/// near-tie: llama.cpp's top-2 logits within `TIE`, and Lar chose llama.cpp's second token or sees llama.cpp's
/// token within `TIE` of its own choice. The rest of the sequence then follows another history and is not compared.
/// (Scale of the noise: llama.cpp itself, evaluating the same 32-token sequence as one batch or token by token,
/// moves these logits by up to 1.0; with flash attention on it diverges from itself in 3 of the 5 SmolLM2 prompts.)
const TIE: f32 = 0.75;

fn events(
    e: &EngineHandle,
    prompt: Vec<u32>,
    params: SamplingParams,
) -> Vec<lar_types::TokenEvent> {
    e.submit(Request::new(prompt, params))
        .unwrap()
        .filter_map(|ev| match ev {
            Event::Token(t) => Some(t),
            Event::Done(_) => None,
        })
        .collect()
}

fn greedy_matches(file: &str, golden_name: &str) {
    let e = engine(file);
    let g = golden(golden_name);
    let (mut exact, mut agreed) = (0, 0);
    for case in g["greedy"].as_array().unwrap() {
        let want = ids(&case["tokens"]);
        let top2 = case["top2"].as_array().unwrap();
        let params = SamplingParams {
            ignore_eos: true,
            top_logprobs: 8,
            ..SamplingParams::greedy(64)
        };
        let got = events(&e, ids(&case["prompt_ids"]), params);
        assert_eq!(got.len(), 64);
        match got.iter().zip(&want).position(|(a, b)| a.token != *b) {
            None => {
                exact += 1;
                agreed += 64;
            }
            Some(i) => {
                agreed += i;
                let t = top2[i].as_array().unwrap();
                let llama_gap = (t[0][1].as_f64().unwrap() - t[1][1].as_f64().unwrap()) as f32;
                let llama_second = t[1][0].as_u64().unwrap() as u32;
                let ours = &got[i];
                let lar_gap = ours
                    .top_logprobs
                    .iter()
                    .find(|c| c.token == want[i])
                    .zip(ours.logprob)
                    .map_or(f32::INFINITY, |(c, lp)| lp - c.logprob);
                eprintln!(
                    "{file}: {:?} diverges at step {i}: llama.cpp gap {llama_gap:.3}, Lar gap {lar_gap:.3}",
                    case["prompt"]
                );
                assert!(
                    llama_gap <= TIE && (ours.token == llama_second || lar_gap <= TIE),
                    "{file}: step {i} of {:?}: Lar {} vs llama.cpp {} (gaps {llama_gap}, {lar_gap})",
                    case["prompt"],
                    ours.token,
                    want[i]
                );
            }
        }
    }
    eprintln!(
        "{file}: {exact}/5 prompts identical over 64 tokens; {agreed}/320 tokens before any divergence"
    );
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    greedy_matches(testdata::SMOLLM2, "smollm2.json");
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    greedy_matches(testdata::GEMMA3, "gemma3.json");
}

#[test]
fn batched_sequences_get_the_same_tokens_as_alone() {
    let e = engine(testdata::SMOLLM2);
    let prompts: Vec<Vec<u32>> = [
        "The capital of France is",
        "def fibonacci(n):",
        "Once upon a time",
    ]
    .iter()
    .map(|p| e.tokenizer().encode(p, true, false))
    .collect();
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(24)
    };
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            e.generate(p.clone(), params.clone(), |_| true)
                .unwrap()
                .tokens
        })
        .collect();
    // The core driven step by step (not on its thread), so all three are admitted in the same step.
    let file =
        std::sync::Arc::new(lar_models::open_model(&testdata::model(testdata::SMOLLM2)).unwrap());
    let (mut core, _) = lar_engine::load::build(file, &config()).unwrap();
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| {
            core.submit(Request::new(p.clone(), params.clone()))
                .unwrap()
        })
        .collect();
    let mut steps = 0;
    while core.has_work() {
        core.step();
        steps += 1;
    }
    // Batched: one prefill step for all three, then 23 shared decode steps.
    assert_eq!(steps, 24);
    for (a, s) in alone.iter().zip(streams) {
        let got: Vec<u32> = s
            .filter_map(|ev| match ev {
                Event::Token(t) => Some(t.token),
                Event::Done(_) => None,
            })
            .collect();
        assert_eq!(a, &got);
    }
}

#[test]
fn stop_strings_max_tokens_and_context_are_enforced() {
    let e = engine(testdata::SMOLLM2);
    let prompt = e.tokenizer().encode("Count: 1, 2, 3, 4,", true, false);
    let full = e
        .generate(prompt.clone(), SamplingParams::greedy(16), |_| true)
        .unwrap();
    assert_eq!(full.reason, FinishReason::Length);
    assert_eq!(full.stats.completion_tokens, 16);
    // Stop at the first comma the model writes: the text must end right before it.
    let stop = SamplingParams {
        stop: vec![",".into()],
        ..SamplingParams::greedy(16)
    };
    let cut = e.generate(prompt.clone(), stop, |_| true).unwrap();
    assert_eq!(cut.reason, FinishReason::Stop);
    assert!(!cut.text.contains(','));
    assert!(
        full.text.starts_with(&cut.text),
        "{:?} vs {:?}",
        cut.text,
        full.text
    );
    // A prompt longer than the context is refused, not truncated.
    let long: Vec<u32> = prompt.iter().cycle().take(2000).copied().collect();
    match e.generate(long, SamplingParams::greedy(4), |_| true) {
        Err(Error::PromptTooLong {
            tokens: 2000,
            ctx: 1024,
        }) => {}
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
}

#[test]
fn same_seed_same_text() {
    let e = engine(testdata::SMOLLM2);
    let prompt = e
        .tokenizer()
        .encode("Write a short poem about the sea.", true, false);
    let p = SamplingParams {
        seed: Some(1234),
        temperature: 1.5,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        max_tokens: 24,
        ..Default::default()
    };
    let a = e.generate(prompt.clone(), p.clone(), |_| true).unwrap();
    let b = e.generate(prompt.clone(), p.clone(), |_| true).unwrap();
    assert_eq!(a.tokens, b.tokens);
    let c = e
        .generate(
            prompt,
            SamplingParams {
                seed: Some(99),
                ..p
            },
            |_| true,
        )
        .unwrap();
    assert_ne!(a.tokens, c.tokens);
}

#[test]
fn chat_template_of_the_model_is_used() {
    use lar_types::{ChatMessage, Role};
    let e = engine(testdata::SMOLLM2);
    let ids = e
        .chat_tokens(&[ChatMessage::new(Role::User, "Hi")], None)
        .unwrap();
    let text = e.tokenizer().decode(&ids, true);
    assert!(text.starts_with("<|im_start|>system\n"), "{text}");
    assert!(
        text.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{text}"
    );
    // Gemma 3's GGUF ships no template: a clear error unless one is named.
    let g = engine(testdata::GEMMA3);
    assert!(matches!(
        g.chat_tokens(&[ChatMessage::new(Role::User, "Hi")], None),
        Err(Error::NoTemplate)
    ));
    let ids = g
        .chat_tokens(&[ChatMessage::new(Role::User, "Hi")], Some("gemma"))
        .unwrap();
    assert_eq!(
        g.tokenizer().decode(&ids, true),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
}

#[test]
fn a_long_conversation_drops_its_oldest_turns_to_fit() {
    use lar_types::{ChatMessage, Role};
    let cfg = EngineConfig {
        ctx: Some(256),
        threads: 2,
        ..Default::default()
    };
    let e = lar_engine::load(&testdata::model(testdata::SMOLLM2), &cfg).unwrap();
    let mut msgs = vec![ChatMessage::new(Role::System, "You are terse.")];
    for i in 0..12 {
        msgs.push(ChatMessage::new(
            Role::User,
            format!("Question {i}: tell me about the number {i} in some detail."),
        ));
        msgs.push(ChatMessage::new(
            Role::Assistant,
            format!("The number {i} is a number; it comes before {}.", i + 1),
        ));
    }
    msgs.push(ChatMessage::new(Role::User, "Last question: and 99?"));
    let whole = e.chat_tokens(&msgs, None).unwrap().len();
    assert!(
        whole > 256,
        "the whole conversation ({whole} tokens) must overflow the context"
    );
    let (ids, dropped) = e.chat_tokens_fitting(&msgs, None, 64).unwrap();
    assert!(
        dropped > 0 && ids.len() + 64 <= 256,
        "{} tokens after dropping {dropped}",
        ids.len()
    );
    let text = e.tokenizer().decode(&ids, true);
    assert!(text.contains("You are terse."), "the system message stays");
    assert!(
        text.contains("Last question: and 99?"),
        "the newest message stays"
    );
    assert!(!text.contains("Question 0:"), "the oldest turn goes");
}

/// The prefix cache on a real model: the same chat prompt twice gives the same tokens (the kernels give a token the
/// same bits whether its prefix was computed in the same pass or read from cached blocks), and the second time the
/// prompt's full blocks come from the cache.
#[test]
fn a_cached_prefix_gives_the_same_tokens() {
    use lar_types::{ChatMessage, Role};
    let e = engine(testdata::SMOLLM2);
    let ids = e
        .chat_tokens(
            &[
                ChatMessage::new(
                    Role::System,
                    "You are a helpful assistant who answers briefly.",
                ),
                ChatMessage::new(Role::User, "Name three rivers in Spain."),
            ],
            None,
        )
        .unwrap();
    let params = SamplingParams {
        ignore_eos: true,
        ..SamplingParams::greedy(24)
    };
    let first = e.generate(ids.clone(), params.clone(), |_| true).unwrap();
    let second = e.generate(ids.clone(), params, |_| true).unwrap();
    assert_eq!(first.tokens, second.tokens);
    assert_eq!(first.stats.cached_tokens, 0);
    assert_eq!(second.stats.cached_tokens, (ids.len() - 1) / 16 * 16);
    assert!(second.stats.cached_tokens > 0);
}
