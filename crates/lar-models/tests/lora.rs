//! LoRA adapters in the forward pass, on SmolLM2 (a Llama, so Q and K rows are permuted between the forms) and
//! Qwen2.5-Coder (no permutation) with the random adapter of `lar_testdata::lora::golden_lora`:
//! - against llama.cpp running the same GGUF adapter (tests/golden/lora-*.json, made by
//!   scripts/make-lora-goldens.py), with the stated tolerances of tests/golden.rs, while the bare model is far
//!   from those logits (so the adapter is what is being compared);
//! - the PEFT form and the GGUF form give the same logits, bit for bit;
//! - a batch mixing the adapter, the bare base and the adapter at half strength gives each sequence what it gets
//!   alone; strength 0 is the bare model exactly.

use std::sync::Arc;

use lar_models::lora::Lora;
use lar_models::lora_files::LoraAdapter;
use lar_models::{KvStore, LoraSlot, Model, SeqBatch, ThreadPool, open_model};
use lar_testdata as testdata;

fn model(file: &str) -> Model {
    Model::from_gguf(Arc::new(open_model(&testdata::model(file)).unwrap())).unwrap()
}

/// The model with the golden adapter written to `dir` in both forms and read back from `form` (a path in it).
fn with_adapter(file: &str, dir: &std::path::Path, form: &str) -> Model {
    let mut m = model(file);
    let untied = m.file.tensor("output.weight").is_some();
    let strength = testdata::lora::golden_strength(&m.hp.arch);
    testdata::lora::golden_lora(&m.hp, untied, strength)
        .write_dir(dir, &m.hp)
        .unwrap();
    let adapter = LoraAdapter::open(&dir.join(form), &m.hp).unwrap();
    let lora = Lora::new("golden", &adapter, m.hp.n_layers).unwrap();
    assert_eq!(m.add_lora(lora), 0);
    m
}

/// Logits of every position of `ids` for each sequence spec `(lora, ids)`, all in one batch.
fn batch_logits(m: &Model, seqs: &[(Option<LoraSlot>, &[u32])]) -> Vec<Vec<Vec<f32>>> {
    let bs = 16;
    let mut tables = Vec::new();
    let mut next = 0u32;
    for (_, ids) in seqs {
        let n = ids.len().div_ceil(bs) as u32;
        tables.push((next..next + n).collect::<Vec<u32>>());
        next += n;
    }
    let mut kv = KvStore::new(bs, m.hp.n_layers, m.hp.kv_dim(), next as usize);
    let pool = ThreadPool::new(2);
    let batch: Vec<SeqBatch> = seqs
        .iter()
        .zip(&tables)
        .map(|((lora, ids), table)| SeqBatch {
            tokens: ids,
            pos: 0,
            block_table: table,
            logits_from: Some(0),
            lora: *lora,
        })
        .collect();
    m.forward(&batch, &mut kv, &pool)
        .unwrap()
        .into_iter()
        .map(|rows| {
            rows.chunks_exact(m.hp.n_vocab)
                .map(<[f32]>::to_vec)
                .collect()
        })
        .collect()
}

fn golden_ids(name: &str, n: usize) -> Vec<u32> {
    let g = testdata::golden(name);
    testdata::golden_ids(&g["forced"]["ids"])[..n].to_vec()
}

const FULL: Option<LoraSlot> = Some(LoraSlot { id: 0, scale: 1.0 });

#[test]
fn peft_and_gguf_forms_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let ids = golden_ids("smollm2.json", 48);
    let peft = with_adapter(testdata::SMOLLM2, dir.path(), "adapter_config.json");
    let gguf = with_adapter(testdata::SMOLLM2, dir.path(), "adapter.gguf");
    let a = batch_logits(&peft, &[(FULL, &ids)]);
    let b = batch_logits(&gguf, &[(FULL, &ids)]);
    assert_eq!(a, b);
}

#[test]
fn a_mixed_batch_gives_each_sequence_its_own_logits() {
    let dir = tempfile::tempdir().unwrap();
    let m = with_adapter(testdata::SMOLLM2, dir.path(), "adapter.gguf");
    let ids = golden_ids("smollm2.json", 40);
    let (x, y, z) = (&ids[..40], &ids[3..30], &ids[10..33]);
    let half = Some(LoraSlot { id: 0, scale: 0.5 });
    let mixed = batch_logits(&m, &[(FULL, x), (None, y), (half, z)]);
    let alone = [
        batch_logits(&m, &[(FULL, x)]).remove(0),
        batch_logits(&m, &[(None, y)]).remove(0),
        batch_logits(&m, &[(half, z)]).remove(0),
    ];
    for (s, (got, want)) in mixed.iter().zip(&alone).enumerate() {
        for (p, (g, w)) in got.iter().zip(want).enumerate() {
            let d = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-3, "sequence {s} position {p}: max |diff| {d}");
        }
    }
    // The three really differ: the adapter at full and half strength, and not at all.
    let bare = batch_logits(&m, &[(None, x)]).remove(0);
    let moved = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter()
            .zip(b)
            .map(|(r, s)| r.iter().zip(s).map(|(u, v)| (u - v).abs()).sum::<f32>() / r.len() as f32)
            .sum::<f32>()
            / a.len() as f32
    };
    let half_x = batch_logits(&m, &[(half, x)]).remove(0);
    let (full_d, half_d) = (moved(&alone[0], &bare), moved(&half_x, &bare));
    assert!(
        full_d > 0.2 && half_d > 0.05 && half_d < full_d,
        "{full_d} {half_d}"
    );
    // Strength 0 is the bare model, exactly.
    let zero = batch_logits(&m, &[(Some(LoraSlot { id: 0, scale: 0.0 }), x)]).remove(0);
    assert_eq!(zero, bare);
}

#[test]
fn an_unknown_adapter_id_or_strength_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = with_adapter(testdata::SMOLLM2, dir.path(), "adapter.gguf");
    let ids = [1u32, 2, 3];
    let mut kv = KvStore::new(16, m.hp.n_layers, m.hp.kv_dim(), 1);
    let pool = ThreadPool::new(1);
    for (slot, says) in [
        (LoraSlot { id: 1, scale: 1.0 }, "not loaded"),
        (
            LoraSlot {
                id: 0,
                scale: f32::NAN,
            },
            "not a finite number",
        ),
    ] {
        let b = SeqBatch {
            tokens: &ids,
            pos: 0,
            block_table: &[0],
            logits_from: None,
            lora: Some(slot),
        };
        let e = m.forward(&[b], &mut kv, &pool).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

fn sha256_file(p: &std::path::Path) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(std::fs::read(p).unwrap());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stated tolerances of tests/golden.rs against llama.cpp with the same adapter, and the bare model far off.
fn against_llama_cpp(file: &str, golden: &str) {
    let g = testdata::golden(golden);
    let dir = tempfile::tempdir().unwrap();
    let m = with_adapter(file, dir.path(), "adapter.gguf");
    let sha = sha256_file(&dir.path().join("adapter.gguf"));
    assert_eq!(
        sha,
        g["adapter_sha256"].as_str().unwrap(),
        "the adapter is not the one the golden was made with (rerun scripts/make-lora-goldens.py)"
    );
    let ids = testdata::golden_ids(&g["forced"]["ids"]);
    let top8 = testdata::golden_top8(&g["forced"]["top8"]);
    let score = |rows: &[Vec<f32>]| {
        let (mut agree, mut diff, mut near_tie_ok) = (0usize, 0f64, true);
        for (row, top) in rows.iter().zip(&top8) {
            if testdata::argmax(row) == top[0].0 as usize {
                agree += 1;
            } else if top[0].1 - top[1].1 > 0.75 {
                near_tie_ok = false;
            }
            diff += top
                .iter()
                .map(|&(i, l)| (row[i as usize] - l).abs() as f64)
                .sum::<f64>()
                / 8.0;
        }
        (
            agree as f64 / rows.len() as f64,
            (diff / rows.len() as f64) as f32,
            near_tie_ok,
        )
    };
    let adapted = batch_logits(&m, &[(FULL, &ids)]).remove(0);
    let bare = batch_logits(&m, &[(None, &ids)]).remove(0);
    let (agree, diff, _) = score(&adapted);
    let (bare_agree, bare_diff, _) = score(&bare);
    let noise_agree = g["noise"]["top1_agreement"].as_f64().unwrap();
    let noise_diff = g["noise"]["mean_abs_diff"].as_f64().unwrap() as f32;
    eprintln!(
        "{golden}: adapted top-1 {agree:.3} |diff| {diff:.3}; bare top-1 {bare_agree:.3} |diff| {bare_diff:.3}; \
         llama.cpp noise top-1 {noise_agree:.3} |diff| {noise_diff:.3}"
    );
    assert!(agree >= noise_agree - 0.02, "top-1 agreement {agree}");
    assert!(
        diff <= 1.25 * noise_diff.max(0.05),
        "mean |logit diff| {diff}"
    );
    assert!(
        bare_diff > 4.0 * diff && bare_agree < agree - 0.1,
        "the bare model should be far from the adapted golden: {bare_diff} {bare_agree}"
    );
}

#[test]
fn smollm2_with_an_adapter_matches_llama_cpp() {
    against_llama_cpp(testdata::SMOLLM2, "lora-smollm2.json");
}

#[test]
fn qwen_with_an_adapter_matches_llama_cpp() {
    against_llama_cpp(testdata::QWEN_CODER, "lora-qwen.json");
}
