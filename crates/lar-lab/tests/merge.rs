//! `lar merge`'s library: SmolLM2 with the golden random adapter (`lar_testdata::lora::golden_lora`) baked into its
//! weights runs like the base with the adapter applied at run time: baked in F16 or Q8_0, or with the types kept
//! (the adapted tensors then in Q8_0: a 4-bit grid snaps a small delta back onto the base's values, measured here
//! with `--type Q4_1`, which keeps little of the adapter), each far closer to the adapted model than the bare base. Strength 0 writes the base's weights again;
//! an adapter naming a tensor the file lacks (a tied output) is refused and leaves no file.

use std::path::Path;
use std::sync::Arc;

use lar_formats::lora::LoraAdapter;
use lar_lab::mixture::FileType;
use lar_lab::quantize::{Options, quantize};
use lar_models::lora::Lora;
use lar_models::{Gguf, KvStore, LoraSlot, Model, SeqBatch, ThreadPool};
use lar_testdata as testdata;

/// Logits at every position of `ids`, with the model's adapter 0 or without.
fn logits(model: &Model, ids: &[u32], lora: Option<LoraSlot>) -> Vec<Vec<f32>> {
    let n_blocks = ids.len().div_ceil(16);
    let mut kv = KvStore::new(16, model.hp.n_layers, model.hp.kv_dim(), n_blocks);
    let table: Vec<u32> = (0..n_blocks as u32).collect();
    let b = SeqBatch {
        tokens: ids,
        pos: 0,
        block_table: &table,
        logits_from: Some(0),
        lora,
    };
    let out = model
        .forward(&[b], &mut kv, &ThreadPool::new(2))
        .unwrap()
        .remove(0);
    out.chunks_exact(model.hp.n_vocab)
        .map(<[f32]>::to_vec)
        .collect()
}

fn open(path: &Path) -> Model {
    Model::from_gguf(Arc::new(Gguf::open(path).unwrap())).unwrap()
}

/// Mean |logit difference| over all positions and the vocabulary.
fn distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let sum: f32 = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(u, v)| (u - v).abs()).sum::<f32>() / x.len() as f32)
        .sum();
    sum / a.len() as f32
}

/// Share of positions where two runs pick the same top token.
fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let same = a
        .iter()
        .zip(b)
        .filter(|(x, y)| testdata::argmax(x) == testdata::argmax(y))
        .count();
    same as f64 / a.len() as f64
}

#[test]
fn a_merged_model_runs_like_its_adapter() {
    let base_path = testdata::model(testdata::SMOLLM2);
    let dir = tempfile::tempdir().unwrap();
    let mut base = open(&base_path);
    // A gentler adapter than the golden tests' (whose deltas make the model chaotic enough that llama.cpp
    // disagrees with itself on 8% of tokens): a trained adapter moves weights by a little.
    let adapter = testdata::lora::golden_lora(&base.hp, false, 0.15);
    adapter.write_dir(&dir.path().join("a"), &base.hp).unwrap();
    let read = LoraAdapter::open(&dir.path().join("a"), &base.hp).unwrap();
    base.add_lora(Lora::new("a", &read, base.hp.n_layers).unwrap());
    let g = testdata::golden("smollm2.json");
    let ids = testdata::golden_ids(&g["forced"]["ids"])[..128].to_vec();
    let adapted = logits(&base, &ids, Some(LoraSlot { id: 0, scale: 1.0 }));
    let bare = logits(&base, &ids, None);

    let merge = |name: &str, ft: Option<FileType>, scale: f32| {
        let out = dir.path().join(name);
        let o = Options {
            keep_types: ft.is_none(),
            allow_requantize: true,
            lora: Some((read.clone(), scale)),
            ..Options::new(ft.unwrap_or(FileType::F32))
        };
        quantize(&base_path, &out, &o, &mut |_, _, _| {}).unwrap();
        out
    };
    let f16 = logits(
        &open(&merge("f16.gguf", Some(FileType::F16), 1.0)),
        &ids,
        None,
    );
    let q8 = logits(
        &open(&merge("q8_0.gguf", Some(FileType::Q8_0), 1.0)),
        &ids,
        None,
    );
    let kept = logits(&open(&merge("kept.gguf", None, 1.0)), &ids, None);
    let q4 = logits(
        &open(&merge("q4_1.gguf", Some(FileType::Q4_1), 1.0)),
        &ids,
        None,
    );
    let report = |name: &str, l: &[Vec<f32>]| {
        let (a, d) = (agreement(l, &adapted), distance(l, &adapted));
        eprintln!(
            "{name}: top-1 agreement {a:.3}, mean |logit diff| {d:.3} against the adapter at run time"
        );
        (a, d)
    };
    let (a16, d16) = report("F16 merge", &f16);
    let (a8, d8) = report("Q8_0 merge", &q8);
    let (akept, dkept) = report("types kept (adapted tensors Q8_0)", &kept);
    let (a4, d4) = report("Q4_1 merge", &q4);
    let (abare, dbare) = report("bare base", &bare);
    assert!(a16 >= 0.95 && d16 < 0.25 * dbare, "F16 merge {a16} {d16}");
    assert!(a8 >= 0.9 && d8 < 0.4 * dbare, "Q8_0 merge {a8} {d8}");
    assert!(
        akept >= 0.9 && dkept < 0.4 * dbare,
        "types kept {akept} {dkept}"
    );
    assert!(a4 >= abare && d4 < dbare, "Q4_1 merge {a4} {d4}");

    // Strength 0: the adapted tensors written again from the base's own values.
    let zero = merge("zero.gguf", None, 0.0);
    let zero_logits = logits(&open(&zero), &ids, None);
    let (az, dz) = (
        agreement(&zero_logits, &bare),
        distance(&zero_logits, &bare),
    );
    eprintln!(
        "strength 0: top-1 agreement {az:.3}, mean |logit diff| {dz:.3} against the bare base"
    );
    // The adapted tensors are Q8_0 copies of the Q4_1 values (and meet Q8_0 activations, not Q8_1): rounding.
    assert!(az >= 0.95 && dz < 0.25 * dbare, "strength 0 {az} {dz}");
    let meta = Gguf::open(&zero).unwrap();
    assert_eq!(
        meta.get("general.file_type").and_then(|v| v.as_u64()),
        Gguf::open(&base_path)
            .unwrap()
            .get("general.file_type")
            .and_then(|v| v.as_u64()),
        "the types kept, the file type stays the base's"
    );
}

#[test]
fn an_adapter_the_file_cannot_hold_is_refused_and_leaves_nothing() {
    let base_path = testdata::model(testdata::SMOLLM2);
    let base = open(&base_path);
    // SmolLM2's output matrix is its embedding table (tied): there is no output.weight to bake a delta into.
    let a = testdata::lora::random_lora(&base.hp, 2, 4.0, &["attn_q"], true, 7, 0.1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let o = Options {
        keep_types: true,
        lora: Some((a, 1.0)),
        ..Options::new(FileType::F32)
    };
    let e = quantize(&base_path, &out, &o, &mut |_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("output.weight") && e.contains("tied"), "{e}");
    assert!(!out.exists());
}

/// Llama's Q and K rows are in rotate-half order in a Hugging Face directory and in pairs in its GGUF (as llama.cpp's
/// converter writes it, and `lar quantize` with it): the same adapter, read in PEFT's form for the directory and in
/// GGUF form for the converted file, gives the same logits on both; and the GGUF form read for the directory is
/// the PEFT form exactly.
#[test]
fn an_adapter_runs_alike_on_a_hugging_face_directory_and_its_gguf() {
    let hf_dir = testdata::model(testdata::SMOLLM2_HF);
    let dir = tempfile::tempdir().unwrap();
    let twin = dir.path().join("twin.gguf");
    let o = Options {
        keep_types: true,
        ..Options::new(FileType::BF16)
    };
    quantize(&hf_dir, &twin, &o, &mut |_, _, _| {}).unwrap();
    let mut hf = Model::from_gguf(Arc::new(lar_models::open_model(&hf_dir).unwrap())).unwrap();
    let mut gguf = open(&twin);
    assert!(hf.hp.rope_neox && !gguf.hp.rope_neox, "the two layouts");
    let adapter = testdata::lora::golden_lora(&gguf.hp, false, 0.5);
    let adir = dir.path().join("adapter");
    adapter.write_dir(&adir, &gguf.hp).unwrap();
    let peft = LoraAdapter::open(&adir.join("adapter_config.json"), &hf.hp).unwrap();
    let from_gguf = LoraAdapter::open(&adir.join("adapter.gguf"), &hf.hp).unwrap();
    assert_eq!(peft.tensors, from_gguf.tensors);
    hf.add_lora(Lora::new("a", &peft, hf.hp.n_layers).unwrap());
    let g = LoraAdapter::open(&adir.join("adapter.gguf"), &gguf.hp).unwrap();
    gguf.add_lora(Lora::new("a", &g, gguf.hp.n_layers).unwrap());
    let ids =
        testdata::golden_ids(&testdata::golden("smollm2.json")["forced"]["ids"])[..96].to_vec();
    let on = Some(LoraSlot { id: 0, scale: 1.0 });
    let (a, b) = (logits(&hf, &ids, on), logits(&gguf, &ids, on));
    let bare = logits(&gguf, &ids, None);
    let (agree, d, dbare) = (agreement(&a, &b), distance(&a, &b), distance(&bare, &b));
    eprintln!(
        "directory vs GGUF with the adapter: top-1 {agree:.3}, mean |diff| {d:.4} (bare vs adapted {dbare:.3})"
    );
    assert!(agree >= 0.97 && d < 0.05 * dbare, "{agree} {d} {dbare}");
}
