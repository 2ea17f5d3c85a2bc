//! `lar run --audit` and `lar audit`: a generation from the command line is recorded (the model's sha256, the
//! parameters, the answer the user saw) and read back with filters; bad filters are one clear line.

use std::path::Path;
use std::process::{Command, Output};

use lar_testdata as testdata;
use serde_json::Value;

fn lar(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .env("LAR_HOME", home)
        .output()
        .unwrap()
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A scratch directory removed at the end.
struct Dir(std::path::PathBuf);

impl Dir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn run_records_and_audit_reads_back() {
    let dir = std::env::temp_dir().join(format!("lar-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = Dir(dir);
    let model = d.path().join("tiny.gguf");
    std::fs::write(&model, testdata::tiny_model("llama")).unwrap();
    let m = model.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            m.as_str(),
            "--raw",
            "abc",
            "-n",
            "5",
            "--temperature",
            "0",
            "--json",
        ];
        args.extend(extra);
        json(&lar(d.path(), &args))
    };
    let quiet = run(&[]);
    let audited = run(&["--audit", "--audit-text"]);
    assert_eq!(quiet["text"], audited["text"]);
    let hashed = run(&["--audit"]);
    let all = json(&lar(d.path(), &["audit", "--json"]));
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "only the audited runs: {all:?}");
    let r = &all[0];
    assert_eq!(r["source"], "run");
    assert_eq!(r["model"], m.as_str());
    assert_eq!(r["output"], audited["text"]);
    assert_eq!(r["prompt"], "abc");
    assert_eq!(r["completion_tokens"], audited["completion_tokens"]);
    assert_eq!(r["params"]["temperature"], 0.0);
    assert_eq!(
        r["model_sha256"].as_str().unwrap(),
        lar_lab::digest::sha256_of(&model).unwrap()
    );
    assert!(all[1]["output"].is_null() && all[1]["prompt"].is_null());
    assert_eq!(all[1]["output_sha256"], r["output_sha256"]);
    assert_eq!(hashed["text"], audited["text"]);
    // Filters: a recent span has them, a past window does not; by model sha256 prefix; the newest one.
    let n = |args: &[&str]| json(&lar(d.path(), args)).as_array().unwrap().len();
    assert_eq!(n(&["audit", "--since", "1h", "--json"]), 2);
    assert_eq!(n(&["audit", "--until", "2020-01-01", "--json"]), 0);
    let sha = r["model_sha256"].as_str().unwrap();
    assert_eq!(n(&["audit", "--model", &sha[..10], "--json"]), 2);
    assert_eq!(n(&["audit", "--source", "serve", "--json"]), 0);
    assert_eq!(n(&["audit", "--limit", "1", "--json"]), 1);
    let table = lar(d.path(), &["audit"]);
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.contains("| run |") && t.lines().count() == 4, "{t}");
    for (args, says) in [
        (vec!["audit", "--since", "yesterday"], "is not a time"),
        (vec!["audit", "--source", "web"], "--source is serve or run"),
    ] {
        let o = lar(d.path(), &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(says) && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}
