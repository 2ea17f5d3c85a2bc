//! `lar quantize` against llama-quantize (tests/golden/quantize.json, made by scripts/make-quantize-goldens.sh):
//! for the tiny random-weight models at Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, with llama-quantize's type rules and with
//! `--pure`, every tensor has llama-quantize's type and exactly its bytes, and the file type is its own. The
//! result loads and runs in Lar and is recorded as a run with its lineage and artifact. Bad input (an unknown type,
//! a quantized source without --allow-requantize, an unwritable output) is one line, and leaves no file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use lar_formats::gguf::Gguf;
use lar_testdata as testdata;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lar-quantize-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lar(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .env("LAR_HOME", home)
        .output()
        .unwrap()
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn every_tensor_is_llama_quantizes_byte_for_byte() {
    let d = scratch("golden");
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/golden/quantize.json")).unwrap(),
    )
    .unwrap();
    for arch in ["llama", "qwen2"] {
        let bytes = testdata::tiny_model(arch);
        assert_eq!(
            hex(&bytes),
            g["sources"][arch].as_str().unwrap(),
            "tiny-{arch} changed: run scripts/make-quantize-goldens.sh"
        );
        std::fs::write(d.join(format!("tiny-{arch}.gguf")), bytes).unwrap();
    }
    let mut checked = 0;
    for run in g["runs"].as_array().unwrap() {
        let (arch, ty, pure) = (
            run["arch"].as_str().unwrap(),
            run["type"].as_str().unwrap(),
            run["pure"].as_bool().unwrap(),
        );
        let src = d.join(format!("tiny-{arch}.gguf")).display().to_string();
        let out = d.join(format!("{arch}-{ty}-{pure}.gguf"));
        let o = out.display().to_string();
        let mut args = vec!["quantize", &src, &o, "--type", ty, "--no-record"];
        if pure {
            args.push("--pure");
        }
        let r = lar(&d, &args);
        assert!(
            r.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let q = Gguf::open(&out).unwrap();
        assert_eq!(
            q.get_u64("general.file_type").unwrap(),
            run["file_type"].as_u64().unwrap()
        );
        assert_eq!(q.get_u64("general.quantization_version").unwrap(), 2);
        assert_eq!(q.architecture().unwrap(), arch);
        let want = run["tensors"].as_object().unwrap();
        assert_eq!(q.tensors.len(), want.len(), "{arch} {ty}");
        for t in &q.tensors {
            let w = &want[&t.name];
            assert_eq!(
                t.ty.name(),
                w[0].as_str().unwrap(),
                "{arch} {ty} pure={pure}: {}",
                t.name
            );
            assert_eq!(
                hex(q.tensor_data(t)),
                w[1].as_str().unwrap(),
                "{arch} {ty} pure={pure}: {} differs from llama-quantize's",
                t.name
            );
            checked += 1;
        }
        let _ = std::fs::remove_file(&out);
    }
    assert!(checked > 200, "{checked} tensors checked");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_quantized_model_runs_and_is_recorded_and_bad_input_is_refused() {
    let d = scratch("run");
    let src = d.join("tiny-llama.gguf");
    std::fs::write(&src, testdata::tiny_model("llama")).unwrap();
    let (s, out) = (
        src.display().to_string(),
        d.join("q8.gguf").display().to_string(),
    );
    let r = lar(&d, &["quantize", &s, &out, "--type", "Q8_0", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        v["types"]["Q8_0"].as_u64().unwrap() + v["types"]["F32"].as_u64().unwrap(),
        v["tensors"]
    );
    assert!(v["output_bytes"].as_u64().unwrap() < v["source_bytes"].as_u64().unwrap() / 3);
    // It runs in Lar.
    let generate = |m: &str| {
        let o = lar(
            &d,
            &[
                "run",
                m,
                "--raw",
                "abc",
                "-n",
                "4",
                "--temperature",
                "0",
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["text"].as_str().unwrap().to_string()
    };
    assert!(!generate(&out).is_empty());
    // Recorded: lineage (the source's sha256, the type) and the output as an artifact with its sha256.
    let run = lar(&d, &["runs", "show", v["run"].as_str().unwrap(), "--json"]);
    let run: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(run["kind"], "quantize");
    assert_eq!(run["lineage"]["type"], "Q8_0");
    assert_eq!(run["lineage"]["source_sha256"], run["model_sha256"]);
    assert_eq!(run["artifacts"][0]["sha256"], v["sha256"]);
    assert_eq!(
        v["sha256"].as_str().unwrap(),
        hex(&std::fs::read(&out).unwrap())
    );

    let smol = testdata::model(testdata::SMOLLM2).display().to_string();
    let missing = d.join("no/such/dir/x.gguf").display().to_string();
    let again = d.join("again.gguf").display().to_string();
    for (args, says) in [
        (
            vec!["quantize", &s, &again, "--type", "Q3_K_M"],
            "unknown or unsupported type 'Q3_K_M'",
        ),
        (
            vec!["quantize", &smol, &again, "--type", "Q8_0"],
            "--allow-requantize",
        ),
        (
            vec!["quantize", &s, &missing, "--type", "Q8_0"],
            "no/such/dir",
        ),
        (
            vec!["quantize", &s, &s, "--type", "Q8_0"],
            "overwrite the source",
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
    }
    let left: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part") || n == "again.gguf")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Requantizing is allowed when asked, and writes a file Lar reads.
    let r = lar(
        &d,
        &[
            "quantize",
            &smol,
            &again,
            "--type",
            "Q8_0",
            "--allow-requantize",
            "--no-record",
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!generate(&again).is_empty());
    let _ = std::fs::remove_dir_all(d);
}
