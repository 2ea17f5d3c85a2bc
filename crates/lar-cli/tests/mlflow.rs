//! `lar runs export --mlflow URL` against a real MLflow tracking server (the `mlflow` package, started here from the
//! venv scripts/mlflow-venv.sh makes; `LAR_MLFLOW_PYTHON` names its python), read back through MLflow's own client:
//! every run with its parameters, tags (kind, model sha256, lineage), metric histories (perplexity per chunk),
//! status (a failed run as FAILED) and uploaded artifacts; exporting again adds nothing; a server that is not there
//! is one clear line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// MLflow's Python: `LAR_MLFLOW_PYTHON` (scripts/test.sh sets it). Without it the test says so and passes, unless
/// `LAR_REQUIRE_CLIENTS=1` (as in CI).
fn mlflow_python() -> Option<String> {
    common::set_up(
        "LAR_MLFLOW_PYTHON",
        "LAR_REQUIRE_CLIENTS",
        "scripts/test.sh makes MLflow's venv",
    )
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tracking server on a free port with its store and artifacts under `dir`, once it answers `/health`.
fn start(py: &str, dir: &Path) -> (Server, String) {
    let port = free_port();
    let child = Command::new(py)
        .args(["-m", "mlflow", "server", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .args(["--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting mlflow server");
    let server = Server(child);
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        if let Ok(r) = reqwest::blocking::get(format!("{url}/health"))
            && r.status().is_success()
        {
            return (server, url);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the MLflow server did not start");
}

/// What MLflow's own client reads back: each run of the experiment with its data, histories and artifacts.
const READ_BACK: &str = r#"
import json, sys
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1])
exp = c.get_experiment_by_name("lar")
out = []
for r in c.search_runs([exp.experiment_id], max_results=100):
    hist = {k: [[m.step, m.value] for m in c.get_metric_history(r.info.run_id, k)] for k in r.data.metrics}
    arts = [a.path for a in c.list_artifacts(r.info.run_id)]
    out.append({"name": r.info.run_name, "status": r.info.status, "params": r.data.params,
                "tags": r.data.tags, "metrics": r.data.metrics, "history": hist, "artifacts": arts})
print(json.dumps(out))
"#;

#[test]
fn runs_export_to_a_real_mlflow_server() {
    let Some(py) = mlflow_python() else { return };
    let d = std::env::temp_dir().join(format!("lar-mlflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let home = d.join("home");
    // Three runs: an evaluation with a running estimate, a quantization with its output, a failed evaluation.
    let smol = testdata::model(testdata::SMOLLM2).display().to_string();
    let text = root()
        .join("tests/data/perplexity.txt")
        .display()
        .to_string();
    let o = lar(
        &home,
        &[
            "eval",
            "perplexity",
            &smol,
            &text,
            "--ctx",
            "64",
            "--chunks",
            "3",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ppl: Value = serde_json::from_slice(&o.stdout).unwrap();
    let tiny = d.join("tiny.gguf");
    std::fs::write(&tiny, testdata::tiny_model("llama")).unwrap();
    let q = d.join("tiny-q8.gguf");
    let o = lar(
        &home,
        &[
            "quantize",
            &tiny.display().to_string(),
            &q.display().to_string(),
            "--type",
            "Q8_0",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let short = d.join("short.txt");
    std::fs::write(&short, "too short").unwrap();
    let o = lar(
        &home,
        &["eval", "perplexity", &smol, &short.display().to_string()],
    );
    assert!(!o.status.success());

    let (_server, url) = start(&py, &d);
    let export = |extra: &[&str]| {
        let mut args = vec!["runs", "export", "--mlflow", &url, "--json"];
        args.extend(extra);
        let o = lar(&home, &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let first = export(&["--upload-artifacts", "8MiB"]);
    assert_eq!(first["exported"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(first["uploaded"], 1);
    let again = export(&[]);
    assert_eq!(again["exported"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 3);

    let o = Command::new(&py)
        .args(["-c", READ_BACK, &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(runs.len(), 3);
    let by_kind = |k: &str, status: &str| {
        runs.iter()
            .find(|r| r["tags"]["lar.kind"] == k && r["status"] == status)
            .unwrap_or_else(|| panic!("no {status} {k} run in {runs:?}"))
    };
    let eval = by_kind("eval.perplexity", "FINISHED");
    assert_eq!(eval["params"]["ctx"], "64");
    assert!(eval["tags"]["lar.model_sha256"].as_str().unwrap().len() == 64);
    assert!(eval["tags"]["lar.machine.cpu"].is_string(), "{eval}");
    let final_ppl = eval["metrics"]["perplexity"].as_f64().unwrap();
    assert!((final_ppl - ppl["perplexity"].as_f64().unwrap()).abs() < 1e-6);
    let history = eval["history"]["perplexity"].as_array().unwrap();
    assert!(
        history.len() >= 3,
        "the running estimate per chunk: {history:?}"
    );
    let quant = by_kind("quantize", "FINISHED");
    assert_eq!(quant["tags"]["lar.lineage.type"], "Q8_0");
    assert_eq!(quant["artifacts"], serde_json::json!(["tiny-q8.gguf"]));
    assert!(
        quant["tags"]["lar.artifact.0"]
            .as_str()
            .unwrap()
            .contains("sha256=")
    );
    let failed = by_kind("eval.perplexity", "FAILED");
    assert!(
        failed["tags"]["lar.error"]
            .as_str()
            .unwrap()
            .contains("tokens long")
    );

    // No server there: one line.
    let o = lar(&home, &["runs", "export", "--mlflow", "http://127.0.0.1:9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("MLflow at http://127.0.0.1:9") && err.lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
