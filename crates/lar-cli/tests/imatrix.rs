//! `lar imatrix` against llama-imatrix (tests/golden/imatrix.json, made by scripts/make-quantize-goldens.sh): the
//! SmolLM2 test model over the perplexity text gives the same matrices, each with llama's token count, its sum of
//! squared activations within 2% and its largest column among llama's four largest. The file is llama.cpp's GGUF
//! imatrix format (what llama-quantize reads: the goldens of tests/quantize.rs were made from Lar's format), it is
//! recorded as a run with its artifact, `lar quantize --imatrix` uses it, and bad input is one clear line: a
//! corrupt matrix, one made for another model, a text shorter than two chunks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lar_lab::imatrix::Imatrix;
use lar_testdata as testdata;
use serde_json::Value;

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

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lar-imatrix-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_matrix_is_llama_imatrixs_and_quantize_uses_it() {
    let d = scratch("golden");
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/imatrix.json")).unwrap(),
    )
    .unwrap();
    let smol = testdata::model(testdata::SMOLLM2).display().to_string();
    let text = root()
        .join(g["text"].as_str().unwrap())
        .display()
        .to_string();
    let out = d.join("smol.imatrix.gguf");
    let o = out.display().to_string();
    let (ctx, chunks) = (g["ctx"].to_string(), g["chunks"].to_string());
    let r = lar(
        &d,
        &[
            "imatrix", &smol, &text, "-o", &o, "--ctx", &ctx, "--chunks", &chunks, "--json",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    let m = Imatrix::load(&out).unwrap();
    assert_eq!(m.chunk_count, 3);
    assert_eq!(m.chunk_size, 256);
    assert_eq!(m.datasets, std::slice::from_ref(&text));
    let want = g["matrices"].as_object().unwrap();
    let names: Vec<&String> = m.entries.keys().collect();
    assert_eq!(names, want.keys().collect::<Vec<_>>());
    for (name, e) in &m.entries {
        let w = &want[name];
        assert_eq!(e.counts, [w["count"].as_f64().unwrap() as f32], "{name}");
        let sum: f64 = e.sums.iter().map(|&x| x as f64).sum();
        let theirs = w["sum"].as_f64().unwrap();
        assert!(
            (sum - theirs).abs() <= 0.02 * theirs,
            "{name}: {sum} vs llama-imatrix's {theirs}"
        );
        let top = e
            .sums
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let their_top: Vec<usize> = w["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert!(
            their_top.contains(&top),
            "{name}: column {top} is the largest, llama's are {their_top:?}"
        );
    }
    assert_eq!(v["matrices"], want.len());
    // Recorded, with the file as its artifact.
    let run = lar(&d, &["runs", "show", v["run"].as_str().unwrap(), "--json"]);
    let run: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(run["kind"], "imatrix");
    assert_eq!(run["status"], "finished");
    assert_eq!(run["artifacts"][0]["sha256"], v["sha256"]);

    // Quantizing with it changes the weights it covers, not the others, and records which matrix.
    let (plain, weighted) = (d.join("plain.gguf"), d.join("weighted.gguf"));
    for (path, extra) in [(&plain, None), (&weighted, Some(o.as_str()))] {
        let p = path.display().to_string();
        let mut args = vec![
            "quantize",
            &smol,
            &p,
            "--type",
            "Q4_0",
            "--allow-requantize",
            "--json",
        ];
        if let Some(m) = extra {
            args.extend(["--imatrix", m]);
        }
        let r = lar(&d, &args);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        if extra.is_some() {
            let v: Value = serde_json::from_slice(&r.stdout).unwrap();
            let run = lar(&d, &["runs", "show", v["run"].as_str().unwrap(), "--json"]);
            let run: Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(run["lineage"]["imatrix"], o.as_str());
            assert_eq!(run["lineage"]["imatrix_sha256"], v_sha(&out));
        }
    }
    let (a, b) = (
        lar_formats::gguf::Gguf::open(&plain).unwrap(),
        lar_formats::gguf::Gguf::open(&weighted).unwrap(),
    );
    for t in &a.tensors {
        let u = b.tensor(&t.name).unwrap();
        let same = a.tensor_data(t) == b.tensor_data(u);
        let covered =
            m.entries.contains_key(&t.name) && t.ty == lar_formats::ggml_type::GgmlType::Q4_0;
        assert_eq!(!same, covered, "{}: covered {covered}, same {same}", t.name);
    }
    let _ = std::fs::remove_dir_all(d);
}

fn v_sha(p: &Path) -> String {
    lar_lab::digest::sha256_of(p).unwrap()
}

#[test]
fn bad_matrices_and_texts_are_refused() {
    let d = scratch("bad");
    let wide = d.join("wide.gguf");
    std::fs::write(&wide, testdata::wide_model("llama")).unwrap();
    let tiny = d.join("tiny.gguf");
    std::fs::write(&tiny, testdata::tiny_model("llama")).unwrap();
    let good = d.join("wide.imatrix.gguf");
    std::fs::write(&good, testdata::wide_imatrix()).unwrap();
    let corrupt = d.join("corrupt.gguf");
    let bytes = testdata::wide_imatrix();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).unwrap();
    let short = d.join("short.txt");
    std::fs::write(&short, "Too short to make two chunks.").unwrap();
    let latin1 = d.join("latin1.txt");
    std::fs::write(&latin1, b"caf\xe9 ".repeat(500)).unwrap();
    let s = |p: &Path| p.display().to_string();
    let out = s(&d.join("out.gguf"));
    for (args, says) in [
        (
            vec![
                "quantize",
                &s(&wide),
                &out,
                "--type",
                "Q4_K_M",
                "--imatrix",
                &s(&corrupt),
            ],
            "corrupt.gguf",
        ),
        (
            vec![
                "quantize",
                &s(&wide),
                &out,
                "--type",
                "Q4_K_M",
                "--imatrix",
                &s(&wide),
            ],
            "not an importance matrix",
        ),
        (
            vec![
                "quantize",
                &s(&tiny),
                &out,
                "--type",
                "Q4_0",
                "--imatrix",
                &s(&good),
            ],
            "made for another model",
        ),
        (
            vec!["imatrix", &s(&wide), &s(&short), "-o", &out, "--ctx", "128"],
            "at least 256",
        ),
        (
            vec!["imatrix", &s(&wide), &s(&latin1), "-o", &out],
            "not UTF-8",
        ),
    ] {
        let o = lar(&d, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(err.contains(says), "{args:?}: expected '{says}' in {err}");
        assert!(!d.join("out.gguf").exists(), "{args:?} left its output");
    }
    let _ = std::fs::remove_dir_all(d);
}
