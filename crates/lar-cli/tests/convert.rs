//! `lar quantize` from a Hugging Face directory (tests/golden/convert.json, made by scripts/make-quantize-goldens.sh):
//! the SmolLM2 bf16 safetensors directory written as F16 is, tensor for tensor, the file llama.cpp loaded and
//! measured (its llama-perplexity is the golden's), with llama.cpp's metadata (32-bit values, the tokenizer as
//! `tokenizer.ggml.*` arrays, Q and K permuted, none of Lar's own keys); Lar measures the same perplexity on it
//! within 0.5%; and converting and quantizing in one step (`--type Q4_K_M`) gives llama-quantize's Q4_K_M of that
//! F16 file byte for byte. Gemma 3's directory (a SentencePiece-style tokenizer, tests/golden/convert-gemma.json)
//! becomes the file llama.cpp measured, tokenizing as the original GGUF does. A directory whose tokenizer
//! llama.cpp cannot reproduce is refused by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lar_formats::gguf::{Gguf, Value as Kv};
use lar_testdata as testdata;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lar(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .env("LAR_HOME", home)
        .output()
        .unwrap()
}

fn hash16(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .take(8)
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn same_tensors(path: &Path, want: &Value, what: &str) {
    let g = Gguf::open(path).unwrap();
    let want = want.as_object().unwrap();
    assert_eq!(g.tensors.len(), want.len(), "{what}");
    for t in &g.tensors {
        let w = &want[&t.name];
        assert_eq!(t.ty.name(), w[0].as_str().unwrap(), "{what}: {}", t.name);
        assert_eq!(
            hash16(g.tensor_data(t)),
            w[1].as_str().unwrap(),
            "{what}: {} differs from the golden's",
            t.name
        );
    }
}

#[test]
fn a_hugging_face_directory_becomes_llama_cpps_gguf() {
    let d = std::env::temp_dir().join(format!("lar-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let g = golden("convert.json");
    let hf = testdata::model(testdata::SMOLLM2_HF).display().to_string();
    let f16 = d.join("f16.gguf");
    let r = lar(
        &d,
        &[
            "quantize",
            &hf,
            &f16.display().to_string(),
            "--type",
            "F16",
            "--json",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    same_tensors(&f16, &g["f16"], "F16");

    let m = Gguf::open(&f16).unwrap();
    assert_eq!(m.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(m.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert!(matches!(m.get("llama.block_count"), Some(Kv::U32(30))));
    assert!(matches!(m.get("llama.rope.freq_base"), Some(Kv::F32(f)) if *f == 100_000.0));
    assert!(matches!(m.get("tokenizer.ggml.tokens"), Some(Kv::Array(t)) if t.len() == 49152));
    assert!(matches!(
        m.get("tokenizer.ggml.eos_token_id"),
        Some(Kv::U32(2))
    ));
    assert!(matches!(
        m.get("tokenizer.ggml.add_bos_token"),
        Some(Kv::Bool(false))
    ));
    assert!(m.get("tokenizer.chat_template").is_some());
    for k in m.metadata.keys() {
        assert!(
            !k.starts_with("lar.")
                && !k.starts_with("tokenizer.hf")
                && k != "tokenizer.huggingface.json",
            "{k} is Lar's own key"
        );
    }
    // Lar measures on it what llama.cpp measured.
    let ours = perplexity(&d, &f16, &g);
    let theirs = g["llama_perplexity"].as_f64().unwrap();
    assert!(
        (ours / theirs - 1.0).abs() < 0.005,
        "Lar {ours} vs llama-perplexity {theirs} on the same file"
    );
    let _ = std::fs::remove_file(&f16);

    // Converted and quantized in one step: llama-quantize's Q4_K_M of the F16 file.
    let q = d.join("q4km.gguf");
    let r = lar(
        &d,
        &[
            "quantize",
            &hf,
            &q.display().to_string(),
            "--type",
            "Q4_K_M",
            "--no-record",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    same_tensors(&q, &g["q4_k_m"], "Q4_K_M");

    let _ = std::fs::remove_dir_all(&d);
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tests/golden").join(name)).unwrap())
        .unwrap()
}

fn perplexity(home: &Path, model: &Path, g: &Value) -> f64 {
    let text = root()
        .join(g["text"].as_str().unwrap())
        .display()
        .to_string();
    let p = lar(
        home,
        &[
            "eval",
            "perplexity",
            &model.display().to_string(),
            &text,
            "--ctx",
            "256",
            "--chunks",
            "4",
            "--json",
            "--no-record",
        ],
    );
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    serde_json::from_slice::<Value>(&p.stdout).unwrap()["perplexity"]
        .as_f64()
        .unwrap()
}

/// Gemma 3's directory: a SentencePiece-style tokenizer.json (`▁` for spaces, byte fallback) and norms stored as
/// `w` for `x * (1 + w)`. The F16 file Lar writes is the one llama.cpp loaded and measured
/// (tests/golden/convert-gemma.json); llama.cpp's ids for the golden's texts with it (the script checked the
/// first three equal to its ids with the original GGUF; runs of 32 spaces differ there, as the directory's own
/// tokenizer.json does) are Lar's through the directory's tokenizer.json and through the written file's
/// vocabulary; and Lar measures llama-perplexity's number on it.
#[test]
fn a_gemma_directory_becomes_llama_cpps_gguf() {
    let d = std::env::temp_dir().join(format!("lar-convert-gemma-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let g = golden("convert-gemma.json");
    let dir = testdata::model(testdata::GEMMA3_HF);
    let f16 = d.join("f16.gguf");
    let r = lar(
        &d,
        &[
            "quantize",
            &dir.display().to_string(),
            &f16.display().to_string(),
            "--type",
            "F16",
            "--no-record",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    same_tensors(&f16, &g["f16"], "Gemma F16");

    let m = Gguf::open(&f16).unwrap();
    assert_eq!(m.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert!(matches!(
        m.get("tokenizer.ggml.add_space_prefix"),
        Some(Kv::Bool(false))
    ));
    assert!(matches!(m.get("tokenizer.ggml.scores"), Some(Kv::Array(s)) if s.len() == 262_144));
    assert!(matches!(
        m.get("gemma3.attention.sliding_window"),
        Some(Kv::U32(512))
    ));
    for k in m.metadata.keys() {
        assert!(
            !k.starts_with("lar.") && !k.starts_with("tokenizer.hf"),
            "{k} is Lar's own key"
        );
    }
    let from_dir =
        lar_tokenizer::Tokenizer::from_gguf(&lar_formats::open_model(&dir).unwrap()).unwrap();
    let from_file = lar_tokenizer::Tokenizer::from_gguf(&m).unwrap();
    let texts = g["texts"].as_array().unwrap();
    for (text, want) in texts.iter().zip(g["llama_tokens"].as_array().unwrap()) {
        let (text, want): (&str, Vec<u32>) = (
            text.as_str().unwrap(),
            want.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
        );
        assert_eq!(
            from_dir.encode(text, true, true),
            want,
            "tokenizer.json: {text:?}"
        );
        assert_eq!(
            from_file.encode(text, true, true),
            want,
            "written vocabulary: {text:?}"
        );
    }
    drop(m);
    let (ours, theirs) = (
        perplexity(&d, &f16, &g),
        g["llama_perplexity"].as_f64().unwrap(),
    );
    assert!(
        (ours / theirs - 1.0).abs() < 0.005,
        "Lar {ours} vs llama-perplexity {theirs} on the same file"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// A tokenizer llama.cpp's tokenizers cannot reproduce (here SmolLM2's with an NFKC normalizer added) is refused
/// by name, and nothing is written.
#[test]
fn a_tokenizer_llama_cpp_cannot_reproduce_is_refused() {
    let d = std::env::temp_dir().join(format!("lar-convert-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let src = testdata::model(testdata::SMOLLM2_HF);
    let dir = d.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "tokenizer.json" {
            std::os::unix::fs::symlink(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let mut tj: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer.json")).unwrap())
            .unwrap();
    tj["normalizer"] = serde_json::json!({"type": "NFKC"});
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    let out = d.join("x.gguf");
    let o = lar(
        &d,
        &[
            "quantize",
            &dir.display().to_string(),
            &out.display().to_string(),
            "--type",
            "Q8_0",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("tokenizer.json")
            && err.contains("neither")
            && err.starts_with("error: ")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&d);
}
