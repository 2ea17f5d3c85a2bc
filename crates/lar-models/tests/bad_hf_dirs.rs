//! Corrupt and hostile Hugging Face model directories, made from a valid one (the tiny llama written by
//! `testdata::write_hf_dir`): each must fail to open with an error that names the problem, quickly, never a panic.
//! The safetensors header parser itself is also fuzzed (`fuzz/`, target `safetensors`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lar_models::{Gguf, Model, open_model};
use lar_testdata as testdata;

/// A fresh valid directory (two shards) per case.
fn valid_dir(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lar-bad-hf-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let g = Gguf::from_bytes(testdata::tiny_model("llama")).unwrap();
    testdata::write_hf_dir(&g, &dir, "F32", 2).unwrap();
    dir
}

/// Opens the directory as a model; returns the error text.
fn open_err(dir: &Path) -> String {
    let t = Instant::now();
    let r = std::panic::catch_unwind(|| {
        open_model(dir)
            .map_err(lar_models::Error::from)
            .and_then(|g| Model::from_gguf(std::sync::Arc::new(g)).map(|_| ()))
    })
    .expect("loading panicked");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    let _ = std::fs::remove_dir_all(dir);
    match r {
        Ok(()) => panic!("{} loaded but should not", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn shard(dir: &Path) -> PathBuf {
    dir.join("model-00001-of-00002.safetensors")
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

fn expect(case: &str, break_it: impl FnOnce(&Path), want: &str) {
    let dir = valid_dir(case);
    break_it(&dir);
    let e = open_err(&dir);
    assert!(e.contains(want), "{case}: {e:?} should mention {want:?}");
    assert!(!e.contains('\n'), "{case}: one line, got {e:?}");
}

#[test]
fn the_valid_directory_loads() {
    let dir = valid_dir("valid");
    let g = open_model(&dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(g.architecture().unwrap(), "llama");
    assert!(Model::from_gguf(std::sync::Arc::new(g)).is_ok());
}

#[test]
fn broken_safetensors_files() {
    expect(
        "truncated",
        |d| {
            let b = std::fs::read(shard(d)).unwrap();
            std::fs::write(shard(d), &b[..b.len() - 100]).unwrap();
        },
        "needs data bytes",
    );
    expect(
        "huge-header",
        |d| {
            let mut b = std::fs::read(shard(d)).unwrap();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            std::fs::write(shard(d), b).unwrap();
        },
        "header claims",
    );
    expect(
        "empty",
        |d| std::fs::write(shard(d), b"").unwrap(),
        "no safetensors header",
    );
    expect(
        "garbage-header",
        |d| {
            let mut b = std::fs::read(shard(d)).unwrap();
            b[8..16].copy_from_slice(b"\xff\xfe{{{{{{");
            std::fs::write(shard(d), b).unwrap();
        },
        "not valid JSON",
    );
    expect(
        "int8-weights",
        |d| {
            let mut b = std::fs::read(shard(d)).unwrap();
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            let h = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
            // Same byte length, so the data offsets stay right: F32 -> I32.
            let h = h.replacen("\"F32\"", "\"I32\"", 1);
            b[8..8 + n].copy_from_slice(h.as_bytes());
            std::fs::write(shard(d), b).unwrap();
        },
        "Lar reads safetensors in F32, F16 and BF16",
    );
    expect(
        "missing-shard",
        |d| std::fs::remove_file(shard(d)).unwrap(),
        "model-00001-of-00002.safetensors",
    );
}

#[test]
fn broken_config_and_index() {
    expect(
        "config-not-json",
        |d| std::fs::write(d.join("config.json"), "{\"hidden_size\": ").unwrap(),
        "config.json: not valid JSON",
    );
    expect(
        "unknown-arch",
        |d| {
            edit_json(&d.join("config.json"), |v| {
                v["architectures"] = serde_json::json!(["MambaForCausalLM"]);
                v["model_type"] = "mamba".into();
            })
        },
        "architecture 'MambaForCausalLM' is not supported",
    );
    expect(
        "missing-key",
        |d| {
            edit_json(&d.join("config.json"), |v| {
                v.as_object_mut().unwrap().remove("hidden_size");
            })
        },
        "lacks hidden_size",
    );
    expect(
        "wrong-type",
        |d| {
            edit_json(&d.join("config.json"), |v| {
                v["num_hidden_layers"] = "thirty".into()
            })
        },
        "num_hidden_layers",
    );
    expect(
        "wrong-shape",
        |d| edit_json(&d.join("config.json"), |v| v["hidden_size"] = 65.into()),
        "has shape",
    );
    expect(
        "path-trick",
        |d| {
            edit_json(&d.join("model.safetensors.index.json"), |v| {
                v["weight_map"]["lm_head.weight"] = "../../etc/passwd".into();
            })
        },
        "is not a plain file name",
    );
    expect(
        "unsupported-rope-scaling",
        |d| {
            edit_json(&d.join("config.json"), |v| {
                v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
            })
        },
        "rope scaling 'yarn' is not supported",
    );
    expect(
        "no-weights",
        |d| {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.file_name().unwrap() != "config.json" {
                    std::fs::remove_file(p).unwrap();
                }
            }
        },
        "no .safetensors weights",
    );
}

#[test]
fn missing_or_broken_tokenizer_json() {
    // The tiny directory has config and weights only: the model loads, the tokenizer says what is missing.
    let dir = valid_dir("no-tokenizer");
    let g = open_model(&dir).unwrap();
    let e = lar_tokenizer::Tokenizer::from_gguf(&g)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("tokenizer.json missing"), "{e}");
    // A tokenizer.json that is not one.
    std::fs::write(
        dir.join("tokenizer.json"),
        "{\"model\": {\"type\": \"BPE\", \"vocab\": 7}}",
    )
    .unwrap();
    let g = open_model(&dir).unwrap();
    let e = lar_tokenizer::Tokenizer::from_gguf(&g)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with("tokenizer data is invalid: tokenizer.json:"),
        "{e}"
    );
    // A syntax error inside "decoder" makes the tokenizers library panic (found by fuzzing): an error here.
    let bad = r#"{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,
        "decoder":{"type":"ByteLevel","add_prefix_space":true"use_regex":true},
        "model":{"type":"BPE","vocab":{"a":0},"merges":[]}}"#;
    std::fs::write(dir.join("tokenizer.json"), bad).unwrap();
    let g = open_model(&dir).unwrap();
    let e = std::panic::catch_unwind(|| {
        lar_tokenizer::Tokenizer::from_gguf(&g)
            .err()
            .map(|e| e.to_string())
    })
    .expect("the tokenizer loader panicked")
    .unwrap();
    assert!(e.contains("tokenizer.json"), "{e}");
    // Not UTF-8.
    std::fs::write(dir.join("tokenizer.json"), b"{\"a\": \"\xff\"}").unwrap();
    let e = open_model(&dir).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
