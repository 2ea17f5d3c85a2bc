//! IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 end to end: the tiny and wide random-weight models quantized by Lar (`lar
//! quantize`'s library; crates/lar-cli/tests/quantize.rs holds every tensor to llama-quantize's bytes), then run by
//! Lar's engine, against llama.cpp's logits for llama-quantize's files of the same types
//! (tests/golden/quant-logits.json, written by scripts/make-quantize-goldens.sh). And the types Lar runs but does
//! not write (the codebook types IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S; MXFP4, NVFP4, Q1_0, Q2_0):
//! models whose every matrix is random blocks of the type (`lar_testdata::wide_codebook_model`), against
//! llama.cpp's logits for the same bytes (tests/golden/codebook-logits.json, scripts/make-codebook-goldens.sh). The
//! same weights and the same activation quantization (Q8_0 for IQ4_NL, MXFP4, NVFP4, Q1_0, Q2_0; Q8_K for the
//! others) on both sides, so the only differences are summation order and llama.cpp's f16 KV cache.

use std::path::Path;
use std::sync::Arc;

use lar_lab::mixture::FileType;
use lar_lab::quantize::{Options, quantize};
use lar_models::{Gguf, KvStore, Model, SeqBatch, ThreadPool};
use lar_testdata as testdata;
use sha2::{Digest, Sha256};

/// Largest allowed |logit difference| at the first position (no attention over earlier tokens yet, so nothing for
/// the f16 KV cache or the attention's order of sums to round differently; measured: 0.0000).
const FIRST_TOL: f32 = 0.01;

/// Lar's logits for `ids` on the model at `path`: a prefill of 10, then one token at a time.
fn logits(path: &Path, ids: &[u32]) -> Vec<Vec<f32>> {
    let model = Model::from_gguf(Arc::new(Gguf::open(path).unwrap())).unwrap();
    let mut kv = KvStore::new(16, model.hp.n_layers, model.hp.kv_dim(), 4);
    let table = [0, 1, 2, 3];
    let pool = ThreadPool::new(2);
    let batch = |tokens, pos, logits_from| SeqBatch {
        tokens,
        pos,
        block_table: &table,
        logits_from,
        lora: None,
    };
    let out = model
        .forward(&[batch(&ids[..10], 0, Some(0))], &mut kv, &pool)
        .unwrap();
    let mut rows: Vec<Vec<f32>> = out[0]
        .chunks_exact(model.hp.n_vocab)
        .map(|c| c.to_vec())
        .collect();
    for p in 10..ids.len() {
        let out = model
            .forward(&[batch(&ids[p..p + 1], p, None)], &mut kv, &pool)
            .unwrap();
        rows.push(out[0].clone());
    }
    rows
}

/// Every tensor of Lar's file has the type and bytes llama-quantize gave it (tests/golden/quantize.json's run of
/// the same source, type and mode), so llama.cpp's logits in quant-logits.json are for these very weights.
fn same_tensors_as_llama_quantize(path: &Path, name: &str, pure: bool) {
    let q = testdata::golden("quantize.json");
    let (source, ty) = match name.split('-').collect::<Vec<_>>()[..] {
        ["tiny", "llama", ty] => ("tiny-llama", ty),
        ["wide", ty, ..] => ("wide-llama", ty),
        _ => panic!("{name}"),
    };
    let run = q["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["source"] == source && r["type"] == ty && r["pure"] == pure && r["imatrix"].is_null()
        })
        .unwrap_or_else(|| panic!("{name}: no run in quantize.json"));
    let g = Gguf::open(path).unwrap();
    let want = run["tensors"].as_object().unwrap();
    assert_eq!(g.tensors.len(), want.len(), "{name}: tensors");
    for t in &g.tensors {
        let sha = format!("{:x}", Sha256::digest(g.tensor_data(t)));
        assert_eq!(
            [t.ty.name(), &sha[..16]],
            [
                want[&t.name][0].as_str().unwrap(),
                want[&t.name][1].as_str().unwrap()
            ],
            "{name}: {}",
            t.name
        );
    }
}

/// Lar's logits against llama.cpp's: the first position within [`FIRST_TOL`]; every position within `slack` times
/// llama.cpp's own noise floor (`noise_max_abs_diff`: its logits with flash attention on vs off; int8 activations
/// turn a rounding difference into a whole quantization step, and these random models amplify it); the same
/// argmax wherever llama.cpp's top two are further apart than that floor.
fn compare(name: &str, ours: &[Vec<f32>], g: &serde_json::Value, slack: f32) {
    let floor = g["noise_max_abs_diff"].as_f64().unwrap() as f32;
    let noise = floor * slack;
    let theirs = g["logits"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{name}: positions");
    let mut worst = 0f32;
    for (p, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let b: Vec<f32> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(a.len(), b.len(), "{name}: vocabulary");
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        if p == 0 {
            assert!(d <= FIRST_TOL, "{name}: position 0 differs by {d}");
        }
        worst = worst.max(d);
        let mut sorted = b.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        if sorted[0] - sorted[1] > noise {
            assert_eq!(
                testdata::argmax(a),
                testdata::argmax(&b),
                "{name}: argmax at position {p}"
            );
        }
    }
    eprintln!("{name}: max |logit diff| vs llama.cpp {worst:.4} (llama.cpp vs itself {floor:.4})");
    assert!(worst <= noise, "{name}: max |logit diff| {worst} > {noise}");
}

/// Quantizes the tiny or wide model to each `(name, file type, pure)` with Lar, checks the bytes against
/// llama-quantize's, and compares the logits with llama.cpp's.
fn check(models: &[(&str, FileType, bool)]) {
    let golden = testdata::golden("quant-logits.json");
    let ids = testdata::golden_ids(&golden["ids"]);
    let dir = tempfile::tempdir().unwrap();
    let (tiny, wide) = (dir.path().join("tiny.gguf"), dir.path().join("wide.gguf"));
    std::fs::write(&tiny, testdata::tiny_model("llama")).unwrap();
    std::fs::write(&wide, testdata::wide_model("llama")).unwrap();
    for &(name, ft, pure) in models {
        let g = &golden["models"][name];
        let src = if name.starts_with("tiny") {
            &tiny
        } else {
            &wide
        };
        let out = dir.path().join(format!("{name}.gguf"));
        let mut o = Options::new(ft);
        o.pure = pure;
        o.threads = 2;
        quantize(src, &out, &o, &mut |_, _, _| {}).unwrap();
        same_tensors_as_llama_quantize(&out, name, pure);
        compare(name, &logits(&out, &ids), g, 1.0);
    }
}

#[test]
fn iq4_models_match_llama_cpp() {
    check(&[
        ("tiny-llama-IQ4_NL", FileType::IQ4_NL, false),
        ("wide-IQ4_NL-pure", FileType::IQ4_NL, true),
        ("wide-IQ4_XS-pure", FileType::IQ4_XS, true),
        ("wide-IQ4_XS", FileType::IQ4_XS, false),
    ]);
}

/// Every weight ternary (`--pure`: the embeddings and the output too), and llama-quantize's mixture (embeddings in
/// Q4_K, the output in Q6_K).
#[test]
fn ternary_models_match_llama_cpp() {
    check(&[
        ("wide-TQ1_0-pure", FileType::TQ1_0, true),
        ("wide-TQ1_0", FileType::TQ1_0, false),
        ("wide-TQ2_0-pure", FileType::TQ2_0, true),
        ("wide-TQ2_0", FileType::TQ2_0, false),
    ]);
}

/// The codebook models' floor is one pair of llama.cpp runs on 2 random layers whose every matrix is as coarse as
/// 1.6-3.4 bits can be: one pair's maximum moves as much from position to position as between the two engines
/// (measured over the seven codebook types: Lar vs llama.cpp 0.25-0.43, llama.cpp vs itself 0.32-0.51; MXFP4,
/// NVFP4, Q1_0: 0.20-0.27 vs 0.24-0.34; Q2_0, whose weights have a mean of d/2 and large logits: 0.010 vs 0.016). The
/// first position, where every matrix and its kernel is already used and no KV cache rounds, must still agree
/// within [`FIRST_TOL`] (measured: 0.0000).
const CODEBOOK_SLACK: f32 = 1.5;

/// Every matrix of a codebook, FP4 or Q1_0/Q2_0 type, the embeddings and the output too (so the reference dequantization is held to
/// llama.cpp's through the embedding rows, and the kernels through every matrix product).
#[test]
fn codebook_models_match_llama_cpp() {
    let golden = testdata::golden("codebook-logits.json");
    let ids = testdata::golden_ids(&golden["ids"]);
    let dir = tempfile::tempdir().unwrap();
    for ty in testdata::codebook::TYPES {
        let name = format!("wide-{}", ty.name());
        let g = &golden["models"][&name];
        let bytes = testdata::wide_codebook_model(ty);
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            g["sha256"].as_str().unwrap(),
            "{name}: not the file llama.cpp ran"
        );
        let path = dir.path().join(format!("{name}.gguf"));
        std::fs::write(&path, bytes).unwrap();
        compare(&name, &logits(&path, &ids), g, CODEBOOK_SLACK);
    }
}
