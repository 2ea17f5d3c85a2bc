//! A fine-tune that must teach SmolLM2 something it does not know, within a CI budget: a fixed answer format
//! (`Item: lamp. Count: 42.` → `#42-lamp#`). Exact match of greedy answers on held-out examples (words never seen
//! in training) goes from near zero on the base model to at least 90% with the trained adapter, run by the engine's
//! own forward pass (the adapter written in both forms and read back, as `lar run --lora` reads it).
//! Also: the same step from the same state gives the same weights, and the data's loss spans are the assistant's
//! turns.

use std::sync::Arc;

use lar_models::lora::Lora;
use lar_models::lora_files::LoraAdapter;
use lar_models::{KvStore, LoraSlot, Model, SeqBatch, ThreadPool};
use lar_tokenizer::Tokenizer;
use lar_train::data::{Encoder, Example};
use lar_train::trainer::{Config, Trainer};
use lar_train::{Adapter, Net};

const TRAIN_WORDS: [&str; 32] = [
    "apple", "river", "stone", "cloud", "tiger", "paper", "glass", "honey", "maple", "storm",
    "piano", "candle", "forest", "rocket", "silver", "garden", "window", "marble", "pepper",
    "falcon", "button", "castle", "meadow", "violin", "anchor", "copper", "desert", "lantern",
    "orange", "pillow", "saddle", "thunder",
];
const HELD_OUT_WORDS: [&str; 10] = [
    "lamp", "bridge", "carpet", "dolphin", "engine", "feather", "harbor", "island", "jacket",
    "kettle",
];

/// A short system message (SmolLM2's template otherwise adds its own, longer one to every example).
const SYSTEM: &str = "Answer briefly.";

fn line(word: &str, n: usize, answer: bool) -> String {
    let user = format!("Item: {word}. Count: {n}.");
    if answer {
        serde_json::json!({"messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": format!("#{n}-{word}#")},
        ]})
        .to_string()
    } else {
        user
    }
}

fn smollm2() -> Model {
    let path = lar_testdata::model(lar_testdata::SMOLLM2);
    Model::from_gguf(Arc::new(lar_models::open_model(&path).expect("SmolLM2"))).expect("loads")
}

fn template(m: &Model) -> String {
    m.file
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .expect("SmolLM2 has a chat template")
        .to_string()
}

/// Greedy answers to each prompt, all in one batch, until the end of the turn (at most `max_new` tokens).
fn answers(
    m: &Model,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    lora: Option<LoraSlot>,
) -> Vec<String> {
    let pool = ThreadPool::new(2);
    let bs = 16;
    let max_new = 16;
    let tables: Vec<Vec<u32>> = {
        let mut next = 0u32;
        prompts
            .iter()
            .map(|p| {
                let n = (p.len() + max_new).div_ceil(bs) as u32;
                next += n;
                (next - n..next).collect()
            })
            .collect()
    };
    let blocks = tables.iter().map(Vec::len).sum();
    let mut kv = KvStore::new(bs, m.hp.n_layers, m.hp.kv_dim(), blocks);
    let mut seqs: Vec<Vec<u32>> = prompts.to_vec();
    let mut done = vec![false; prompts.len()];
    let mut fed = vec![0usize; prompts.len()];
    for _ in 0..max_new {
        let live: Vec<usize> = (0..seqs.len()).filter(|&i| !done[i]).collect();
        if live.is_empty() {
            break;
        }
        let batch: Vec<SeqBatch> = live
            .iter()
            .map(|&i| SeqBatch {
                tokens: &seqs[i][fed[i]..],
                pos: fed[i],
                block_table: &tables[i],
                logits_from: None,
                lora,
            })
            .collect();
        let logits = m.forward(&batch, &mut kv, &pool).expect("forward");
        for (&i, row) in live.iter().zip(&logits) {
            fed[i] = seqs[i].len();
            let next = lar_testdata::argmax(row) as u32;
            if tok.is_eog(next) {
                done[i] = true;
            } else {
                seqs[i].push(next);
            }
        }
    }
    seqs.iter()
        .zip(prompts)
        .map(|(s, p)| tok.decode(&s[p.len()..], false).trim().to_string())
        .collect()
}

/// The prompt tokens of a user message, with the generation prompt open (as `lar run` makes them).
fn prompt(tok: &Tokenizer, tmpl: &str, user: &str) -> Vec<u32> {
    let t = lar_tokenizer::ChatTemplate::new(tmpl).expect("template");
    let msgs = [
        lar_types::ChatMessage::new(lar_types::Role::System, SYSTEM),
        lar_types::ChatMessage::new(lar_types::Role::User, user),
    ];
    let text = t.render(&msgs, true, "", "").expect("renders");
    tok.encode(&text, false, true)
}

fn exact(got: &[String], want: &[String]) -> f32 {
    got.iter().zip(want).filter(|(a, b)| a == b).count() as f32 / want.len() as f32
}

#[test]
fn a_fine_tune_teaches_smollm2_a_format_it_did_not_know() {
    let base = smollm2();
    let tok = Tokenizer::from_gguf(&base.file).expect("tokenizer");
    let tmpl = template(&base);
    let enc = Encoder::new(&tok, Some(&tmpl)).expect("encoder");
    let mut data = String::new();
    for (i, w) in TRAIN_WORDS.iter().enumerate() {
        for k in 0..5 {
            data += &line(w, (i * 7 + k * 13) % 97 + 1, true);
            data.push('\n');
        }
    }
    let (examples, skipped) = enc.read(&data, 256).expect("data");
    assert_eq!(examples.len(), 160);
    assert!(skipped.too_long.is_empty() && skipped.no_loss.is_empty());
    // The loss is on the assistant's turn only: its tokens decode to the answer and the turn's end.
    let ex: &Example = &examples[0];
    let trained: Vec<u32> = ex
        .tokens
        .iter()
        .zip(&ex.loss)
        .filter(|(_, l)| **l)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(tok.decode(&trained, true), "#1-apple#<|im_end|>\n");

    let held: Vec<(String, usize)> = HELD_OUT_WORDS
        .iter()
        .enumerate()
        .flat_map(|(i, w)| [(w.to_string(), i * 11 + 3), (w.to_string(), i * 5 + 60)])
        .collect();
    let prompts: Vec<Vec<u32>> = held
        .iter()
        .map(|(w, n)| prompt(&tok, &tmpl, &line(w, *n, false)))
        .collect();
    let want: Vec<String> = held.iter().map(|(w, n)| format!("#{n}-{w}#")).collect();
    let before = exact(&answers(&base, &tok, &prompts, None), &want);
    assert!(
        before <= 0.1,
        "the base model already answers in the format: {before}"
    );

    let pool = ThreadPool::new(2);
    let cfg = Config {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        epochs: 1,
        lr: 2e-3,
        warmup: 2,
        batch_tokens: 512,
        eval_split: 0.0,
        ..Config::default()
    };
    let t0 = std::time::Instant::now();
    let mut tr = Trainer::new(Net::new(&base, &pool), cfg, examples).expect("trainer");
    let mut tokens = 0;
    let mut first = None;
    let mut last = 0.0;
    while !tr.is_done() {
        let log = tr.step().expect("step");
        tokens += log.tokens;
        first.get_or_insert(log.loss);
        last = log.loss;
        eprintln!(
            "step {} loss {:.3} ({:.0} s)",
            log.step,
            log.loss,
            t0.elapsed().as_secs_f32()
        );
    }
    let secs = t0.elapsed().as_secs_f32();
    eprintln!(
        "{} steps, loss {:.3} -> {last:.3}, {:.0} tokens/s",
        tr.total_steps(),
        first.unwrap_or(0.0),
        tokens as f32 / secs
    );
    let dir = tempfile::tempdir().expect("tempdir");
    tr.adapter
        .to_lora(&base.hp, None)
        .write_dir(dir.path(), &base.hp)
        .expect("writes");
    for form in ["adapter_config.json", "adapter.gguf"] {
        let mut m = smollm2();
        let read = LoraAdapter::open(&dir.path().join(form), &m.hp).expect("reads back");
        m.add_lora(Lora::new("toy", &read, m.hp.n_layers).expect("binds"));
        let got = answers(&m, &tok, &prompts, Some(LoraSlot { id: 0, scale: 1.0 }));
        let after = exact(&got, &want);
        assert!(
            after >= 0.9,
            "{form}: exact match {after} after training: {got:?}"
        );
    }
}

#[test]
fn the_same_step_from_the_same_state_gives_the_same_weights() {
    let base = smollm2();
    let tok = Tokenizer::from_gguf(&base.file).expect("tokenizer");
    let enc = Encoder::new(&tok, None).expect("encoder");
    let data: String = (0..12)
        .map(|i| format!("{{\"prompt\": \"Say {i}:\", \"completion\": \" {i} {i} {i}\"}}\n"))
        .collect();
    let (examples, _) = enc.read(&data, 64).expect("data");
    let pool = ThreadPool::new(2);
    let cfg = Config {
        rank: 4,
        steps: Some(3),
        batch_tokens: 64,
        lr: 1e-3,
        ..Config::default()
    };
    let run = || {
        let mut tr =
            Trainer::new(Net::new(&base, &pool), cfg.clone(), examples.clone()).expect("trainer");
        let losses: Vec<f32> = (0..3).map(|_| tr.step().expect("step").loss).collect();
        (tr.adapter, losses)
    };
    let (a, la) = run();
    let (b, lb) = run();
    assert_eq!(la, lb);
    assert!(a == b, "two runs from the same seed differ");
    let fresh = Adapter::new(&base.hp, 4, cfg.alpha, &cfg.targets, cfg.seed).expect("adapter");
    assert!(a != fresh, "training changed nothing");
}
