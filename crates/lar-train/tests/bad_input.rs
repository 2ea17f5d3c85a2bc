//! What training refuses, with what is wrong: unknown targets, projections a model fuses (Phi-3's QKV), ranks out of
//! range, settings that make no run, a checkpoint made with other settings or data, a data line of the wrong shape.

use std::sync::Arc;

use lar_kernels::pool::ThreadPool;
use lar_models::Model;
use lar_train::adapter::parse_targets;
use lar_train::data::Encoder;
use lar_train::trainer::{Config, Trainer};
use lar_train::{Adapter, Net};

fn tiny(arch: &str) -> Model {
    let g = lar_models::Gguf::from_bytes(lar_testdata::tiny_model(arch)).expect("tiny model");
    Model::from_gguf(Arc::new(g)).expect("loads")
}

fn err<T>(r: lar_train::Result<T>) -> String {
    match r {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_targets_ranks_and_settings_are_refused() {
    assert_eq!(
        parse_targets("all").expect("all"),
        (0..7).collect::<Vec<_>>()
    );
    assert_eq!(
        parse_targets("v, q_proj ,down").expect("list"),
        vec![0, 2, 6]
    );
    assert!(err(parse_targets("q,lm_head")).contains("unknown LoRA target 'lm_head'"));
    assert!(err(parse_targets(" , ")).contains("no LoRA targets"));
    let phi = tiny("phi3");
    assert!(err(Adapter::new(&phi.hp, 4, 8.0, &[0], 1)).contains("fused"));
    assert!(err(Adapter::new(&phi.hp, 4, 8.0, &[5], 1)).contains("fused"));
    assert!(
        Adapter::new(&phi.hp, 4, 8.0, &[3, 6], 1).is_ok(),
        "o and down are not fused"
    );
    let llama = tiny("llama");
    assert!(err(Adapter::new(&llama.hp, 0, 8.0, &[0], 1)).contains("rank 0"));
    assert!(err(Adapter::new(&llama.hp, 4, f32::NAN, &[0], 1)).contains("alpha"));
    for (cfg, want) in [
        (
            Config {
                dropout: 1.0,
                ..Config::default()
            },
            "--dropout",
        ),
        (
            Config {
                lr: -1.0,
                ..Config::default()
            },
            "--lr",
        ),
        (
            Config {
                eval_split: 1.0,
                ..Config::default()
            },
            "--eval-split",
        ),
        (
            Config {
                batch_tokens: 0,
                ..Config::default()
            },
            "--batch-tokens",
        ),
        (
            Config {
                steps: Some(0),
                ..Config::default()
            },
            "nothing to do",
        ),
    ] {
        assert!(err(cfg.check()).contains(want), "{want}");
    }
}

#[test]
fn a_checkpoint_of_other_settings_or_data_is_refused() {
    let model = tiny("llama");
    let tok = lar_tokenizer::Tokenizer::from_gguf(&model.file).expect("tokenizer");
    let enc = Encoder::new(&tok, None).expect("encoder");
    let data: String = (0..8)
        .map(|i| format!("{{\"prompt\": \"a{i}\", \"completion\": \"b{i}\"}}\n"))
        .collect();
    let (examples, _) = enc.read(&data, 64).expect("data");
    let pool = ThreadPool::new(2);
    let cfg = Config {
        rank: 4,
        steps: Some(2),
        batch_tokens: 32,
        ..Config::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tr =
        Trainer::new(Net::new(&model, &pool), cfg.clone(), examples.clone()).expect("trainer");
    tr.step().expect("step");
    tr.save_checkpoint(dir.path(), "abc", serde_json::json!({}))
        .expect("saved");
    let mut same =
        Trainer::new(Net::new(&model, &pool), cfg.clone(), examples.clone()).expect("trainer");
    same.resume(dir.path(), "abc").expect("resumes");
    assert_eq!(same.step, 1);
    assert!(same.adapter == tr.adapter && same.moments == tr.moments);
    let mut other =
        Trainer::new(Net::new(&model, &pool), cfg.clone(), examples.clone()).expect("trainer");
    assert!(err(other.resume(dir.path(), "def")).contains("other data"));
    let cfg8 = Config { rank: 8, ..cfg };
    let mut other = Trainer::new(Net::new(&model, &pool), cfg8, examples).expect("trainer");
    assert!(
        err(other.resume(dir.path(), "abc")).contains("does not match"),
        "a rank-8 run from a rank-4 checkpoint"
    );
    // A line of the wrong shape names its line.
    assert!(
        err(enc.read("{\"text\": \"ok\"}\n[1, 2]\n", 64))
            .contains("data line 2: expected a JSON object")
    );
    assert!(err(enc.read("{\"messages\": []}\n", 64)).contains("\"messages\" is empty"));
    assert!(
        err(enc.read(
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n",
            64
        ))
        .contains("no chat template")
    );
}
