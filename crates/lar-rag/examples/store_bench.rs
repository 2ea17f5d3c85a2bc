//! Benchmark of the SQLite knowledge-base store: inserts N chunks (default 10000) of short synthetic text with random
//! unit vectors of dim 384 into a temporary store, then times 200 text and 200 vector searches (k = 10), unfiltered
//! and with a filter. With a sentence-transformers directory as second argument it also times the whole hybrid
//! query as `lar kb search` runs it (embed the query, BM25 + vector, fusion, fetch the chunks; k = 5).
//! `cargo run --release -p lar-rag --example store_bench -- 100000 ~/.cache/lar/models/all-MiniLM-L6-v2`

use std::time::{Duration, Instant};

use lar_rag::store::sqlite::SqliteStore;
use lar_rag::store::{FileEntry, Filter, Store, StoreInfo};
use lar_rag::{Chunk, Location, Meta, SourceKind};

const DIM: usize = 384;
const CHUNKS_PER_FILE: usize = 20;
const QUERIES: usize = 200;
const K: usize = 10;

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit_vector(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..DIM)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
            .collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.into_iter().map(|x| x / norm).collect()
    }
    /// A word of a 5000-word vocabulary, common words more often (roughly Zipf-like).
    fn word(&mut self, vocab: &[String]) -> String {
        let r = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        vocab[((r * r * r) * vocab.len() as f64) as usize % vocab.len()].clone()
    }
}

fn vocabulary() -> Vec<String> {
    let syllables = [
        "ka", "lo", "mi", "ne", "su", "ta", "ro", "vi", "de", "pa", "gu", "fe", "zo", "ri", "ba",
        "xu", "ho", "ja",
    ];
    let mut words = Vec::new();
    'outer: for a in syllables {
        for b in syllables {
            for c in syllables {
                words.push(format!("{a}{b}{c}"));
                if words.len() == 5000 {
                    break 'outer;
                }
            }
        }
    }
    words
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn time<F: FnMut(usize)>(mut f: F) -> (f64, f64) {
    let mut times: Vec<Duration> = (0..QUERIES)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect();
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a
            .parse()
            .map_err(|_| format!("N must be a number of chunks, not '{a}'"))?,
        None => 10_000,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.sqlite");
    let mut store = SqliteStore::create(
        &path,
        StoreInfo {
            embedder: "bench".into(),
            dim: DIM,
            language: lar_rag::lang::Analyzer::Auto,
        },
    )?;
    let vocab = vocabulary();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let kinds = [
        SourceKind::Text,
        SourceKind::Markdown,
        SourceKind::Mail,
        SourceKind::Pdf,
    ];

    let mut insert_time = Duration::ZERO;
    let mut done = 0;
    let mut file_no = 0;
    while done < n {
        let count = CHUNKS_PER_FILE.min(n - done);
        let kind = kinds[file_no % kinds.len()];
        let path = format!("/bench/dir{}/file{file_no}.{}", file_no % 50, kind.as_str());
        let chunks: Vec<Chunk> = (0..count)
            .map(|ord| Chunk {
                path: path.clone(),
                kind,
                title: Some(format!("{} {}", rng.word(&vocab), rng.word(&vocab))),
                date: Some(1_600_000_000 + rng.below(100_000_000) as i64),
                sender: (kind == SourceKind::Mail)
                    .then(|| format!("user{}@example.com", rng.below(100))),
                meta: Meta::new(),
                loc: Location::default(),
                ord: ord as u32,
                text: (0..40)
                    .map(|_| rng.word(&vocab))
                    .collect::<Vec<_>>()
                    .join(" "),
            })
            .collect();
        let vectors: Vec<Vec<f32>> = (0..count).map(|_| rng.unit_vector()).collect();
        let entry = FileEntry {
            path: path.clone(),
            sha256: "0".repeat(64),
            size: 1000,
            mtime: 0,
            chunks: count as u64,
        };
        let t = Instant::now();
        store.put_file(&entry, &chunks, &vectors)?;
        insert_time += t.elapsed();
        done += count;
        file_no += 1;
    }
    let stats = store.stats()?;
    println!("chunks: {n} (dim {DIM}, {CHUNKS_PER_FILE} per file, {file_no} files)");
    println!(
        "insert: {:.1} s, {:.0} chunks/s",
        insert_time.as_secs_f64(),
        n as f64 / insert_time.as_secs_f64()
    );
    println!(
        "size: {:.1} MB (file + WAL), {:.2} MB per 1k chunks",
        stats.bytes as f64 / 1e6,
        stats.bytes as f64 / 1e6 / (n as f64 / 1000.0)
    );

    let text_queries: Vec<Vec<String>> = (0..QUERIES)
        .map(|_| (0..3).map(|_| rng.word(&vocab)).collect())
        .collect();
    let vector_queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| rng.unit_vector()).collect();
    let mail = Filter {
        kinds: vec![SourceKind::Mail],
        ..Filter::default()
    };
    let glob = Filter {
        path_glob: Some("/bench/dir1?/**".into()),
        since: Some(1_650_000_000),
        ..Filter::default()
    };
    let none = Filter::default();
    let mut failed = None;
    for (name, filter) in [("", &none), (" kind=mail", &mail), (" glob+since", &glob)] {
        let text = time(|i| {
            if let Err(e) = store.text_search(&text_queries[i], K, filter) {
                failed = Some(e);
            }
        });
        let vector = time(|i| {
            if let Err(e) = store.vector_search(&vector_queries[i], K, filter) {
                failed = Some(e);
            }
        });
        println!(
            "text_search{name:<12} k={K}: p50 {:7.2} ms  p99 {:7.2} ms",
            text.0, text.1
        );
        println!(
            "vector_search{name:<10} k={K}: p50 {:7.2} ms  p99 {:7.2} ms",
            vector.0, vector.1
        );
    }
    if let Some(e) = failed {
        return Err(e.into());
    }
    if let Some(model) = std::env::args().nth(2) {
        let emb = lar_engine::SentenceEmbedder::open(std::path::Path::new(&model), 0)?;
        let opts = lar_rag::search::SearchOptions::default();
        let queries: Vec<String> = (0..QUERIES)
            .map(|i| {
                format!(
                    "when is the {} meeting about {} {}",
                    ["budget", "garden", "lease", "school"][i % 4],
                    rng.word(&vocab),
                    rng.word(&vocab)
                )
            })
            .collect();
        let embed = time(|i| {
            if let Err(e) = lar_rag::search::embed_query(&emb, &queries[i]) {
                failed = Some(e);
            }
        });
        let hybrid = time(|i| {
            if let Err(e) = lar_rag::search::search(&store, &emb, &queries[i], &opts) {
                failed = Some(e);
            }
        });
        println!(
            "query embedding          : p50 {:7.2} ms  p99 {:7.2} ms",
            embed.0, embed.1
        );
        println!(
            "hybrid search        k=5: p50 {:7.2} ms  p99 {:7.2} ms",
            hybrid.0, hybrid.1
        );
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    Ok(())
}
