//! `lar quantize` against llama-quantize (tests/golden/quantize.json, made by scripts/make-quantize-goldens.sh):
//! for the tiny random-weight models at Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0, and for the wide one (256 wide, 8 layers)
//! at every k-quant file type (Q2_K, the Q3_K/Q4_K/Q5_K mixtures, Q6_K), with llama-quantize's type rules, with
//! `--pure`, with `--tensor-type` overrides and with an importance matrix (a synthetic one in llama.cpp's format,
//! which llama-quantize read to make the goldens, and one llama-imatrix wrote), every tensor has llama-quantize's type and exactly its bytes,
//! and the file type is its own. The
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
    for (name, bytes) in [
        ("tiny-llama", testdata::tiny_model("llama")),
        ("tiny-qwen2", testdata::tiny_model("qwen2")),
        ("wide-llama", testdata::wide_model("llama")),
        ("wide-llama.imatrix", testdata::wide_imatrix()),
    ] {
        assert_eq!(
            hex(&bytes),
            g["sources"][name].as_str().unwrap(),
            "{name} changed: run scripts/make-quantize-goldens.sh"
        );
        std::fs::write(d.join(format!("{name}.gguf")), bytes).unwrap();
    }
    let overrides: Vec<&str> = g["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let imatrix = d.join("wide-llama.imatrix.gguf").display().to_string();
    let (mut checked, mut k_quants) = (0, 0);
    for run in g["runs"].as_array().unwrap() {
        let (name, ty, pure) = (
            run["source"].as_str().unwrap(),
            run["type"].as_str().unwrap(),
            run["pure"].as_bool().unwrap(),
        );
        let arch = &name[name.find('-').unwrap() + 1..];
        let src = d.join(format!("{name}.gguf")).display().to_string();
        let out = d.join(format!("{name}-{ty}-{pure}.gguf"));
        let o = out.display().to_string();
        let mut args = vec!["quantize", &src, &o, "--type", ty, "--no-record"];
        if pure {
            args.push("--pure");
        }
        if run["overrides"].as_bool().unwrap() {
            for p in &overrides {
                args.extend(["--tensor-type", p]);
            }
        }
        let m = match run["imatrix"].as_str() {
            Some("wide-llama.imatrix") => Some(imatrix.clone()),
            Some(path) => Some(root().join(path).display().to_string()),
            None => None,
        };
        if let Some(m) = &m {
            args.extend(["--imatrix", m]);
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
        assert_eq!(q.tensors.len(), want.len(), "{name} {ty}");
        for t in &q.tensors {
            let w = &want[&t.name];
            assert_eq!(
                t.ty.name(),
                w[0].as_str().unwrap(),
                "{name} {ty} pure={pure}: {}",
                t.name
            );
            assert_eq!(
                &hex(q.tensor_data(t))[..16],
                w[1].as_str().unwrap(),
                "{name} {ty} pure={pure}: {} differs from llama-quantize's",
                t.name
            );
            checked += 1;
            k_quants += usize::from(t.ty.name().ends_with("_K"));
        }
        let _ = std::fs::remove_file(&out);
    }
    assert!(
        checked > 1500 && k_quants > 800,
        "{checked} tensors checked, {k_quants} k-quants"
    );
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
    let wide = d.join("wide.gguf");
    std::fs::write(&wide, testdata::wide_model("llama")).unwrap();
    let wide = wide.display().to_string();
    let missing = d.join("no/such/dir/x.gguf").display().to_string();
    let again = d.join("again.gguf").display().to_string();
    for (args, says) in [
        (
            vec!["quantize", &s, &again, "--type", "IQ2_XXS"],
            "unknown or unsupported type 'IQ2_XXS'",
        ),
        (
            vec!["quantize", &wide, &again, "--type", "Q2_K_S"],
            "Q2_K_S needs an importance matrix",
        ),
        (
            vec![
                "quantize",
                &s,
                &again,
                "--type",
                "Q4_K_M",
                "--tensor-type",
                "attn_q",
            ],
            "is not PATTERN=TYPE",
        ),
        (
            vec![
                "quantize",
                &s,
                &again,
                "--type",
                "Q4_K_M",
                "--tensor-type",
                "attn_q=Q9_K",
            ],
            "unknown or unsupported tensor type 'Q9_K'",
        ),
        (
            vec![
                "quantize",
                &s,
                &again,
                "--type",
                "Q4_K_M",
                "--tensor-type",
                "attn_(=q8_0",
            ],
            "is not a regular expression",
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
