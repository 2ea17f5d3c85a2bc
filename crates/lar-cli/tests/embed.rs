//! `lar embed` end to end: JSON vectors equal to sentence-transformers' (golden file), texts from stdin, and the
//! error paths (invalid UTF-8 on stdin, a GGUF file instead of an embedder directory).

use std::io::Write;
use std::process::{Command, Stdio};

use lar_testdata as testdata;

fn minilm() -> String {
    testdata::models_dir()
        .join("all-MiniLM-L6-v2")
        .display()
        .to_string()
}

fn run(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn embeds_like_sentence_transformers() {
    let g = testdata::golden("minilm-embeddings.json");
    let case = &g["cases"][2];
    let text = case["text"].as_str().unwrap();
    let o = run(&["embed", &minilm(), text, "second"], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dim"], 384);
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    let dot: f64 = v["embeddings"][0]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["vector"].as_array().unwrap())
        .map(|(a, b)| a.as_f64().unwrap() * b.as_f64().unwrap())
        .sum();
    assert!(dot > 0.999, "cosine {dot}");
    // The same texts from stdin, one per line.
    let o2 = run(
        &["embed", &minilm()],
        format!("{text}\nsecond\n").as_bytes(),
    );
    let v2: serde_json::Value = serde_json::from_slice(&o2.stdout).unwrap();
    assert_eq!(v2["embeddings"], v["embeddings"]);
}

#[test]
fn bad_input_is_refused_in_one_line() {
    let o = run(&["embed", &minilm()], b"ok\n\xff\xfe\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("valid UTF-8") && !err.contains("panicked"),
        "{err}"
    );
    let gguf = testdata::model(testdata::SMOLLM2).display().to_string();
    let o = run(&["embed", &gguf, "hi"], b"");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a model directory"));
}
