//! Times decode's matrix-vector products alone: every projection of a GGUF model (not the embedding table) times one
//! activation row, as one token's forward pass issues them, in the packed layout and in the file's, alternating, and
//! prints the read rate per weight type (GB/s, medians). For kernel work on a noisy machine: both layouts see the
//! same moment's memory bandwidth. Not attention, norms or sampling:
//! `cargo run --release -p lar-models --example decode-matmul -- MODEL.gguf [PASSES] [THREADS]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use lar_models::Gguf;
use lar_models::pool::ThreadPool;
use lar_models::tensor::{ActSet, Weight, matmul};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(args.get(1).expect("MODEL.gguf"));
    let passes: usize = args.get(2).map_or(20, |p| p.parse().expect("PASSES"));
    let threads: usize = args.get(3).map_or(2, |t| t.parse().expect("THREADS"));
    let file = Arc::new(Gguf::open(&path).expect("model"));
    let pool = ThreadPool::new(threads);
    let mut file_layout = Vec::new();
    for t in &file.tensors {
        if let [cols, rows] = t.dims[..]
            && t.name != "token_embd.weight"
        {
            file_layout.push(Weight::load(&file, &t.name, rows, cols).expect("weight"));
        }
    }
    let packed: Vec<Weight> = file_layout
        .iter()
        .map(|w| {
            let mut p = w.clone();
            p.pack();
            p
        })
        .collect();
    let n_packed = packed.iter().filter(|w| w.is_packed()).count();
    println!("{} weights, {n_packed} packed", packed.len());

    let max_cols = file_layout.iter().map(|w| w.cols).max().unwrap_or(0);
    let max_rows = file_layout.iter().map(|w| w.rows).max().unwrap_or(0);
    let x: Vec<f32> = (0..max_cols)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut out = vec![0f32; max_rows];
    // (layout, type) -> seconds per pass
    let mut times: BTreeMap<(&str, String), Vec<f64>> = BTreeMap::new();
    let mut bytes: BTreeMap<String, usize> = BTreeMap::new();
    for w in &file_layout {
        *bytes.entry(w.ty.name().to_string()).or_default() += w.data().len();
    }
    // The ceiling: a plain streaming read of as many bytes, split over the threads, in the same passes.
    let total: usize = bytes.values().sum();
    let stream = vec![1u64; total / 8];
    let mut stream_s = Vec::new();
    for _ in 0..passes {
        let t0 = Instant::now();
        let parts = pool.n_threads();
        let sums: Vec<std::sync::atomic::AtomicU64> =
            (0..parts).map(|_| Default::default()).collect();
        pool.run(parts, &|i| {
            let r = lar_models::pool::split(stream.len(), parts, i);
            let s = stream[r].chunks_exact(8).fold([0u64; 8], |mut a, c| {
                for k in 0..8 {
                    a[k] = a[k].wrapping_add(c[k]);
                }
                a
            });
            sums[i].store(s.iter().sum(), std::sync::atomic::Ordering::Relaxed);
        });
        stream_s.push(t0.elapsed().as_secs_f64());
        std::hint::black_box(&sums);
        for (label, set) in [("packed", &packed), ("file", &file_layout)] {
            let mut per_type: BTreeMap<String, f64> = BTreeMap::new();
            for w in set.iter() {
                let mut acts = ActSet::new(&x[..w.cols], 1, w.cols, &pool);
                let a = acts.for_weight(w);
                let t0 = Instant::now();
                matmul(w, a, &mut out[..w.rows], &pool);
                *per_type.entry(w.ty.name().to_string()).or_default() += t0.elapsed().as_secs_f64();
            }
            for (ty, s) in per_type {
                times.entry((label, ty)).or_default().push(s);
            }
        }
    }
    stream_s.sort_by(f64::total_cmp);
    println!(
        "stream read: {:5.1} GB/s (best {:5.1})",
        total as f64 / 1e9 / stream_s[passes / 2],
        total as f64 / 1e9 / stream_s[0]
    );
    for ((label, ty), mut v) in times {
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        let gb = bytes[&ty] as f64 / 1e9;
        println!(
            "{label:>6} {ty:>5}: {:7.2} ms/pass  {:5.1} GB/s  (best {:5.1})",
            med * 1e3,
            gb / med,
            gb / v[0]
        );
    }
}
