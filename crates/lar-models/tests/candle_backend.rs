//! The candle backend (the forward pass that runs on CUDA with `--features cuda`) on candle's CPU device, so CI checks
//! it without a GPU: the tiny random-weight models of every architecture against llama.cpp's logits (the goldens of
//! tests/tiny_archs.rs), two sequences at once in scattered cache blocks, and clear errors for devices this build
//! cannot open or batches it cannot run. The real models (Q4_1; Q4_K/Q5_0/Q6_K/Q8_0, Gemma 3's sliding windows) are
//! held to llama.cpp's teacher-forced logits in tests/golden.rs. lar-models builds the backend with its `candle`
//! feature, which the workspace turns on through lar-engine: `cargo test --workspace`, or `-p lar-models --features
//! candle`.
#![cfg(feature = "candle")]

use std::sync::Arc;

use lar_models::candle_backend::{CandleModel, device};
use lar_models::{Gguf, Model, SeqBatch};
use lar_testdata as testdata;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Prefill of `split` tokens then one token at a time, for two sequences side by side (the second a copy of the
/// first, so both must give the same logits), in blocks of 4 positions taken out of order from a shared cache.
/// Returns the first sequence's logits per position.
fn run_two(cm: &mut CandleModel, ids: &[u32], split: usize) -> Vec<Vec<f32>> {
    let nv = cm.hp.n_vocab;
    let blocks = ids.len().div_ceil(4);
    let table_a: Vec<u32> = (0..blocks as u32).map(|b| 2 * b + 1).rev().collect();
    let table_b: Vec<u32> = (0..blocks as u32).map(|b| 2 * b).collect();
    let mut rows = Vec::new();
    let mut step = |tokens: &[u32], pos: usize, all: bool| {
        let out = cm
            .forward(&[
                SeqBatch {
                    tokens,
                    pos,
                    block_table: &table_a,
                    logits_from: all.then_some(0),
                    lora: None,
                },
                SeqBatch {
                    tokens,
                    pos,
                    block_table: &table_b,
                    logits_from: all.then_some(0),
                    lora: None,
                },
            ])
            .unwrap();
        assert!(
            max_diff(&out[0], &out[1]) < 1e-4,
            "the two copies differ at {pos}"
        );
        out[0]
            .chunks_exact(nv)
            .map(|c| c.to_vec())
            .collect::<Vec<_>>()
    };
    rows.extend(step(&ids[..split], 0, true));
    for p in split..ids.len() {
        rows.extend(step(&ids[p..p + 1], p, false));
    }
    rows
}

#[test]
fn tiny_models_on_candle_cpu_match_llama_cpp() {
    for arch in testdata::TINY_ARCHS {
        let golden = testdata::golden(&format!("tiny-{arch}.json"));
        let model = Model::from_gguf(Arc::new(
            Gguf::from_bytes(testdata::tiny_model(arch)).unwrap(),
        ))
        .unwrap();
        let ids = testdata::golden_ids(&golden["ids"]);
        let mut cm = CandleModel::new(&model, device("cpu").unwrap(), 4, 2 * ids.len()).unwrap();
        let rows = run_two(&mut cm, &ids, 10);
        let worst = testdata::max_diff_vs_golden(&rows, &golden, arch);
        eprintln!("{arch}: max |logit diff| vs llama.cpp {worst:.5}");
        // As tests/tiny_archs.rs holds our CPU engine (F32 weights: only summation order and llama.cpp's f16 KV).
        assert!(worst <= 0.01, "{arch}: {worst}");
    }
}

#[test]
fn devices_this_build_cannot_open_are_clear_errors() {
    let e = device("tpu").unwrap_err().to_string();
    assert!(e.contains("unknown device 'tpu'"), "{e}");
    let e = device("cuda:x").unwrap_err().to_string();
    assert!(e.contains("bad CUDA device"), "{e}");
    if !cfg!(feature = "cuda") {
        let e = device("cuda").unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let model = Model::from_gguf(Arc::new(
        Gguf::from_bytes(testdata::tiny_model("llama")).unwrap(),
    ))
    .unwrap();
    let mut cm = CandleModel::new(&model, device("cpu").unwrap(), 4, 2).unwrap();
    let sb = |tokens, table| SeqBatch {
        tokens,
        pos: 0,
        block_table: table,
        logits_from: None,
        lora: None,
    };
    let e = cm.forward(&[sb(&[1; 9], &[0, 1])]).unwrap_err().to_string();
    assert!(e.contains("block table covers 8 positions"), "{e}");
    let e = cm.forward(&[sb(&[1], &[5])]).unwrap_err().to_string();
    assert!(e.contains("beyond the cache's 2 blocks"), "{e}");
    let e = cm.forward(&[sb(&[9999], &[0])]).unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
}
