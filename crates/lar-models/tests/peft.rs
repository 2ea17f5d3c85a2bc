//! LoRA adapters against PEFT + transformers (tests/golden/peft-smollm2.json, made by scripts/make-peft-goldens.py),
//! on SmolLM2's Hugging Face directory (BF16 weights; Q and K rows in Hugging Face's order, so any permutation
//! slip shows):
//! - the bare model against transformers in float32;
//! - Lar's golden adapter, written by Lar in PEFT's form and loaded by `peft.PeftModel`, against Lar with the same
//!   files: PEFT reads what Lar writes as Lar means it;
//! - an adapter PEFT made and saved (tests/golden/peft-smollm2-adapter: rank 4, rsLoRA, three layers only, BF16
//!   tensors): Lar reads what PEFT writes.
//!
//! Both sides compute in float32 from the same BF16 weights, so they differ only by summation order. Stated
//! tolerances, at each of the 256 positions over transformers' top-8: top-1 agrees wherever transformers' top two
//! are more than 0.05 apart, and the mean |logit diff| is under 0.01, while each adapter moves the logits at least
//! 20 times as far (so the adapter is what is being compared).

use std::path::Path;
use std::sync::Arc;

use lar_models::lora::Lora;
use lar_models::lora_files::LoraAdapter;
use lar_models::{KvStore, LoraSlot, Model, SeqBatch, ThreadPool, open_model};
use lar_testdata as testdata;

const MAX_DIFF: f32 = 0.01;
const GAP: f32 = 0.05;

fn model() -> Model {
    let file = open_model(&testdata::model(testdata::SMOLLM2_HF)).expect("SmolLM2's HF directory");
    Model::from_gguf(Arc::new(file)).expect("model")
}

/// Logits at every position of `ids`, with the model's adapter 0 at full strength or none.
fn logits(m: &Model, ids: &[u32], adapted: bool) -> Vec<Vec<f32>> {
    let bs = 16;
    let table: Vec<u32> = (0..ids.len().div_ceil(bs) as u32).collect();
    let mut kv = KvStore::new(bs, m.hp.n_layers, m.hp.kv_dim(), table.len());
    let b = SeqBatch {
        tokens: ids,
        pos: 0,
        block_table: &table,
        logits_from: Some(0),
        lora: adapted.then_some(LoraSlot { id: 0, scale: 1.0 }),
    };
    let out = m
        .forward(&[b], &mut kv, &ThreadPool::new(2))
        .unwrap()
        .remove(0);
    out.chunks_exact(m.hp.n_vocab)
        .map(<[f32]>::to_vec)
        .collect()
}

/// (top-1 agreement, mean |logit diff| over the golden's top-8, positions with a clear top-1 that disagree).
fn score(rows: &[Vec<f32>], top8: &[Vec<(u32, f32)>]) -> (f64, f32, Vec<usize>) {
    let (mut agree, mut diff, mut clear_flips) = (0usize, 0f64, Vec::new());
    for (i, (row, top)) in rows.iter().zip(top8).enumerate() {
        if testdata::argmax(row) == top[0].0 as usize {
            agree += 1;
        } else if top[0].1 - top[1].1 > GAP {
            clear_flips.push(i);
        }
        diff += top
            .iter()
            .map(|&(id, l)| (row[id as usize] - l).abs() as f64)
            .sum::<f64>()
            / top.len() as f64;
    }
    let n = rows.len() as f64;
    (agree as f64 / n, (diff / n) as f32, clear_flips)
}

/// The adapter's identity as make-peft-goldens.py takes it: the sha256 of its weights file (what the logits depend
/// on; PEFT's own config differs from Lar's in keys that do not matter here).
fn sha256_weights(dir: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `m` with the PEFT adapter in `dir` against the golden's `key` entry, and the bare model far from it.
fn against_peft(m: &mut Model, dir: &Path, key: &str) {
    let g = testdata::golden("peft-smollm2.json");
    assert_eq!(
        sha256_weights(dir),
        g[key]["adapter_sha256"].as_str().unwrap(),
        "the adapter is not the one the golden was made with (rerun scripts/make-peft-goldens.py)"
    );
    let adapter = LoraAdapter::open(dir, &m.hp).expect("PEFT adapter");
    assert_eq!(
        m.add_lora(Lora::new(key, &adapter, m.hp.n_layers).unwrap()),
        0
    );
    let ids = testdata::golden_ids(&g["ids"]);
    let top8 = testdata::golden_top8(&g[key]["top8"]);
    let (agree, diff, flips) = score(&logits(m, &ids, true), &top8);
    let (bare_agree, bare_diff, _) = score(&logits(m, &ids, false), &top8);
    eprintln!(
        "{key}: adapted top-1 {agree:.4} |diff| {diff:.5} clear flips {flips:?}; bare top-1 {bare_agree:.3} \
         |diff| {bare_diff:.3}"
    );
    assert!(
        flips.is_empty(),
        "top-1 differs at clear positions {flips:?}"
    );
    assert!(diff < MAX_DIFF, "mean |logit diff| {diff} >= {MAX_DIFF}");
    assert!(
        bare_diff > 20.0 * MAX_DIFF,
        "the bare model should be far from the adapted golden: |diff| {bare_diff}"
    );
}

#[test]
fn the_bare_hf_model_matches_transformers() {
    let g = testdata::golden("peft-smollm2.json");
    let ids = testdata::golden_ids(&g["ids"]);
    let top8 = testdata::golden_top8(&g["bare"]);
    let (agree, diff, flips) = score(&logits(&model(), &ids, false), &top8);
    eprintln!("bare: top-1 {agree:.4} |diff| {diff:.5} clear flips {flips:?}");
    assert!(
        flips.is_empty(),
        "top-1 differs at clear positions {flips:?}"
    );
    assert!(diff < MAX_DIFF, "mean |logit diff| {diff} >= {MAX_DIFF}");
}

#[test]
fn peft_reads_the_adapter_lar_writes() {
    let mut m = model();
    let dir = tempfile::tempdir().unwrap();
    let adapter =
        testdata::lora::golden_lora(&m.hp, false, testdata::lora::golden_strength(&m.hp.arch));
    adapter.write_dir(dir.path(), &m.hp).unwrap();
    std::fs::remove_file(dir.path().join("adapter.gguf")).unwrap();
    against_peft(&mut m, dir.path(), "lar");
}

#[test]
fn lar_reads_the_adapter_peft_writes() {
    let dir = testdata::golden_dir().join("peft-smollm2-adapter");
    against_peft(&mut model(), &dir, "peft");
}
