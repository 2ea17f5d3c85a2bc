//! qwen2, qwen3, phi3 (and llama) on tiny random-weight models written by our own GGUF writer
//! (`testdata::tiny_model`), against llama.cpp's logits for the same bytes (tests/golden/tiny-*.json, made by
//! scripts/make-goldens.py). F32 weights, so the only differences are summation order and llama.cpp's f16 KV cache:
//! every logit must be within `TOL` of llama.cpp's, and the argmax must agree at every position.
//! The same models written as Hugging Face directories (`testdata::write_hf_dir`: checkpoint names, Llama's Q/K in
//! checkpoint order, config.json, F32 in two shards) must give the same logits within `TOL`. (BF16 and F16
//! directories are tested on the real models, against llama.cpp running the same rounded weights.)

use std::sync::Arc;

use lar_models::{Gguf, KvStore, Model, SeqBatch, ThreadPool};
use lar_testdata as testdata;
use sha2::{Digest, Sha256};

/// Largest allowed |logit difference| (logits of these models are of order 1-10; measured: at most 0.0054).
const TOL: f32 = 0.01;

fn check(arch: &str) {
    check_as(arch, None, TOL);
}

/// `hf`: run the model from a Hugging Face directory of this dtype and shard count instead of the GGUF bytes.
fn check_as(arch: &str, hf: Option<(&str, usize)>, tol: f32) {
    let bytes = testdata::tiny_model(arch);
    let golden = testdata::golden(&format!("tiny-{arch}.json"));
    assert_eq!(
        format!("{:x}", Sha256::digest(&bytes)),
        golden["sha256"].as_str().unwrap(),
        "tiny {arch} model bytes changed: regenerate goldens"
    );
    let gguf = Gguf::from_bytes(bytes).unwrap();
    let model = match hf {
        None => Model::from_gguf(Arc::new(gguf)).unwrap(),
        Some((dtype, shards)) => {
            let dir = std::env::temp_dir()
                .join(format!("lar-tiny-hf-{arch}-{dtype}-{}", std::process::id()));
            testdata::write_hf_dir(&gguf, &dir, dtype, shards).unwrap();
            let m = Model::from_gguf(Arc::new(lar_models::open_model(&dir).unwrap()));
            std::fs::remove_dir_all(&dir).unwrap();
            m.unwrap()
        }
    };
    assert_eq!(model.hp.arch, arch);
    let ids = testdata::golden_ids(&golden["ids"]);
    let mut kv = KvStore::new(16, model.hp.n_layers, model.hp.kv_dim(), 4);
    let table = [0, 1, 2, 3];
    let pool = ThreadPool::new(2);
    // Prefill 10, then one token at a time: both paths against the same reference.
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let out = model
        .forward(
            &[SeqBatch {
                tokens: &ids[..10],
                pos: 0,
                block_table: &table,
                logits_from: Some(0),
                lora: None,
            }],
            &mut kv,
            &pool,
        )
        .unwrap();
    rows.extend(out[0].chunks_exact(model.hp.n_vocab).map(|c| c.to_vec()));
    for p in 10..ids.len() {
        let out = model
            .forward(
                &[SeqBatch {
                    tokens: &ids[p..p + 1],
                    pos: p,
                    block_table: &table,
                    logits_from: None,
                    lora: None,
                }],
                &mut kv,
                &pool,
            )
            .unwrap();
        rows.push(out[0].clone());
    }
    let max_diff = testdata::max_diff_vs_golden(&rows, &golden, arch);
    eprintln!("{arch} {hf:?}: max |logit diff| vs llama.cpp {max_diff:.5}");
    assert!(
        max_diff <= tol,
        "{arch} {hf:?}: max |logit diff| {max_diff} > {tol}"
    );
}

#[test]
fn tiny_llama_matches_llama_cpp() {
    check("llama");
}

#[test]
fn tiny_qwen2_matches_llama_cpp() {
    check("qwen2");
}

#[test]
fn tiny_qwen3_matches_llama_cpp() {
    check("qwen3");
}

#[test]
fn tiny_phi3_matches_llama_cpp() {
    check("phi3");
}

#[test]
fn tiny_models_from_hugging_face_directories_match_llama_cpp() {
    for arch in testdata::TINY_ARCHS {
        check_as(arch, Some(("F32", 2)), TOL);
    }
}
