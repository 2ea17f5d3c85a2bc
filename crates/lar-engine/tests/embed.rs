//! The BERT sentence embedder against sentence-transformers (tests/golden/minilm-embeddings.json, made by
//! scripts/make-embed-goldens.py): the same token ids, and vectors with cosine similarity >= 0.999 (in practice
//! much closer) on English, Spanish, code, emoji, whitespace runs, one letter, and a text cut at 256 tokens.

use lar_engine::SentenceEmbedder;
use lar_testdata as testdata;
use lar_types::Embedder;

fn embedder_with(q8: bool) -> SentenceEmbedder {
    SentenceEmbedder::open_with(&testdata::models_dir().join("all-MiniLM-L6-v2"), 2, q8)
        .expect("MiniLM (scripts/fetch-models.sh)")
}

fn embedder() -> SentenceEmbedder {
    embedder_with(true)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn matches_sentence_transformers() {
    // Q8_0 projections (the default, for speed) and the checkpoint's own F32.
    for (q8, floor) in [(true, 0.999), (false, 0.99999)] {
        check_against_golden(&embedder_with(q8), floor);
    }
}

fn check_against_golden(e: &SentenceEmbedder, floor: f64) {
    let g = testdata::golden("minilm-embeddings.json");
    assert_eq!(
        e.max_tokens(),
        g["max_seq_length"].as_u64().unwrap() as usize
    );
    let cases = g["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let got = e.embed(&texts).unwrap();
    let mut worst = 1.0f64;
    for (c, v) in cases.iter().zip(&got) {
        let want: Vec<f32> = c["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(v.len(), 384);
        let ids = testdata::golden_ids(&c["ids"]);
        let ours = e
            .count_tokens(c["text"].as_str().unwrap())
            .min(e.max_tokens());
        assert_eq!(ours, ids.len(), "token count of {:?}", c["text"]);
        let cos = cosine(v, &want);
        assert!(cos >= floor, "cosine {cos} for {:?}", c["text"]);
        worst = worst.min(cos);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "normalized: {norm}");
    }
    eprintln!("worst cosine vs sentence-transformers (floor {floor}): {worst:.7}");
    // Meaning, not just numbers: the two fox sentences are closer to each other than to the invoice.
    assert!(cosine(&got[0], &got[1]) > cosine(&got[0], &got[4]) + 0.2);
    // Batching does not change a vector: one text alone gives the same as inside the batch.
    let alone = e.embed(&texts[2..3]).unwrap();
    assert!(cosine(&alone[0], &got[2]) > 0.9999);
}

#[test]
fn long_texts_are_cut_or_refused() {
    let mut e = embedder();
    let long = "word ".repeat(400);
    assert_eq!(e.embed(&[&long]).unwrap()[0].len(), 384);
    e.truncate = false;
    let err = e.embed_texts(&[&long]).unwrap_err().to_string();
    assert!(err.contains("longer than the embedder's 256"), "{err}");
    assert!(e.embed_texts(&[]).unwrap().is_empty());
}
