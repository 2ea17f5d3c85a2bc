//! Corrupt, truncated and hostile GGUF files, generated from the real SmolLM2 file: each must give an error that
//! names the problem, quickly, without a panic or a huge allocation. Plus a random-mutation sweep over the header
//! (a small fuzz run that CI can afford; `fuzz/` holds the cargo-fuzz target for long runs).

use std::time::{Duration, Instant};

use lar_formats::Error;
use lar_models::{Gguf, Model};
use lar_testdata as testdata;

/// The first 4 MiB of the real file: the whole header (vocabulary included) and the start of the tensor data.
fn header() -> Vec<u8> {
    let bytes = std::fs::read(testdata::model(testdata::SMOLLM2)).unwrap();
    bytes[..4 << 20].to_vec()
}

fn full() -> Vec<u8> {
    std::fs::read(testdata::model(testdata::SMOLLM2)).unwrap()
}

fn parse(bytes: Vec<u8>) -> Result<Gguf, Error> {
    let t = Instant::now();
    let r = std::panic::catch_unwind(|| Gguf::from_bytes(bytes)).expect("the parser panicked");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "parsing took {:?}",
        t.elapsed()
    );
    r
}

fn err(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Ok(_) => panic!("a corrupt file was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            msg
        }
    }
}

/// Offset just past the key `key`'s name in the metadata (where its type field starts).
fn after_key(bytes: &[u8], key: &str) -> usize {
    let needle = [&(key.len() as u64).to_le_bytes()[..], key.as_bytes()].concat();
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("key present")
        + needle.len()
}

#[test]
fn bad_magic_and_version() {
    let mut b = header();
    b[0] = b'X';
    assert!(err(b).contains("not a GGUF file"));
    let mut b = header();
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(err(b).contains("version 1"));
    assert!(err(Vec::new()).contains("truncated"));
    assert!(err(b"GGUF".to_vec()).contains("truncated"));
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut b = header();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    assert!(err(b).contains("tensor count"));
    let mut b = header();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()); // metadata count
    assert!(err(b).contains("metadata count"));
    // The first key's length claims 2^62 bytes.
    let mut b = header();
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(err(b).contains("truncated"));
    // The token array claims 2^40 entries.
    let mut b = header();
    let at = after_key(&b, "tokenizer.ggml.tokens") + 4 + 4; // type (array), element type (string), then count
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let m = err(b);
    assert!(m.contains("tokenizer.ggml.tokens"), "{m}");
}

#[test]
fn unknown_value_and_tensor_types() {
    let mut b = header();
    let at = after_key(&b, "general.architecture");
    b[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    assert!(err(b).contains("unknown value type 99"));
    // Tensor type ids live after the tensor names; patch the first tensor's type.
    let mut b = header();
    let name = b"token_embd.weight";
    let at = b.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let ty_at = at + 4 + 8 * n_dims;
    let mut known = b.clone();
    b[ty_at..ty_at + 4].copy_from_slice(&77u32.to_le_bytes());
    let m = err(b);
    assert!(m.contains("token_embd.weight") && m.contains("77"), "{m}");
    // A type of ggml's that Lar does not run yet is refused by its name.
    known[ty_at..ty_at + 4].copy_from_slice(&28u32.to_le_bytes());
    let m = err(known);
    assert!(
        m.contains("F64 (id 28)") && m.contains("does not run yet"),
        "{m}"
    );
}

#[test]
fn truncation_anywhere_is_an_error() {
    let b = header();
    for cut in [5, 12, 20, 30, 1000, 100_000, 1_000_000, 2_000_000] {
        let m = err(b[..cut].to_vec());
        assert!(
            m.contains("truncated") || m.contains("exceeds"),
            "cut at {cut}: {m}"
        );
    }
    // The full header but the tensor data cut short: the tensor past the end is named.
    let m = err(header());
    assert!(m.contains("truncated") && m.contains("tensor '"), "{m}");
}

#[test]
fn unsupported_architecture_and_missing_tokenizer() {
    let mut b = full();
    let at = after_key(&b, "general.architecture") + 4 + 8; // type, string length
    b[at..at + 5].copy_from_slice(b"mamba");
    let g = Gguf::from_bytes(b).unwrap();
    let e = Model::from_gguf(std::sync::Arc::new(g))
        .err()
        .expect("unsupported architecture accepted");
    assert!(
        e.to_string()
            .contains("architecture 'mamba' is not supported"),
        "{e}"
    );
    // Rename the tokenizer key: the model loads, the tokenizer is reported missing.
    let mut b = full();
    let at = after_key(&b, "tokenizer.ggml.model") - 5;
    b[at..at + 5].copy_from_slice(b"xodel");
    let g = Gguf::from_bytes(b).unwrap();
    let e = lar_tokenizer::Tokenizer::from_gguf(&g)
        .err()
        .expect("missing tokenizer accepted");
    assert!(e.to_string().contains("no tokenizer"), "{e}");
}

#[test]
fn random_mutations_of_the_header_never_panic() {
    let base = header();
    // Keep it to the metadata region where structure lives (first ~1.7 MB), plus a cut.
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let t = Instant::now();
    for _ in 0..300 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 8 {
            let i = (next() % 4096) as usize
                + if next() % 2 == 0 {
                    0
                } else {
                    (next() % 1_700_000) as usize
                };
            let i = i.min(b.len() - 1);
            b[i] = next() as u8;
        }
        if next() % 4 == 0 {
            b.truncate((next() % b.len() as u64) as usize);
        }
        let _ = parse(b);
    }
    eprintln!("300 mutated headers parsed in {:?}", t.elapsed());
}
