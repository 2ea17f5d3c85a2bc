//! Times the BERT encoder's forward pass alone over a file of texts (one per line), batched as `lar embed` batches
//! them (sorted by length, 32 texts per pass or `BATCH`), for profiling the encoder without the CLI:
//! `cargo run --release -p lar-models --example bert-bench -- MODEL_DIR TEXTS [THREADS] [f32] [REPEATS]`.

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).expect("MODEL_DIR"));
    let texts = std::fs::read_to_string(args.get(2).expect("TEXTS")).expect("texts file");
    let threads: usize = args.get(3).map_or(2, |t| t.parse().expect("THREADS"));
    let q8 = args.get(4).is_none_or(|m| m != "f32");
    let repeats: usize = args.get(5).map_or(3, |r| r.parse().expect("REPEATS"));
    let bert = lar_models::bert::Bert::open_dir(&dir, q8).expect("model");
    let tok =
        lar_tokenizer::TextEncoder::open(&dir.join("tokenizer.json"), 256).expect("tokenizer");
    let mut ids: Vec<Vec<u32>> = texts
        .lines()
        .map(|t| tok.encode_truncated(t).expect("tokens"))
        .collect();
    ids.sort_by_key(|s| s.len());
    let n_tokens: usize = ids.iter().map(|s| s.len()).sum();
    let batch: usize = std::env::var("BATCH").map_or(32, |b| b.parse().expect("BATCH"));
    let pool = lar_models::ThreadPool::new(threads);
    let mut best = f64::INFINITY;
    for _ in 0..repeats {
        let t0 = Instant::now();
        for batch in ids.chunks(batch) {
            let b: Vec<&[u32]> = batch.iter().map(|s| s.as_slice()).collect();
            std::hint::black_box(bert.forward(&b, &pool).expect("forward"));
        }
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!(
        "{} texts, {} tokens ({:.0} per text), {} threads, {}: best {:.3} s = {:.1} texts/s",
        ids.len(),
        n_tokens,
        n_tokens as f64 / ids.len() as f64,
        threads,
        if q8 { "q8" } else { "f32" },
        best,
        ids.len() as f64 / best
    );
}
