//! `lar finetune` end to end on SmolLM2 (Q4_1, so QLoRA): the adapter directory holds both forms, the log and the
//! loss chart; the run is recorded; `lar serve --lora` answers as `lar run --lora` does with the trained adapter;
//! Ctrl-C leaves a checkpoint and `--resume` ends with the very adapter of an uninterrupted run; bad data, bad
//! settings and a missing checkpoint are refused with what is wrong, and nothing is written.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{http, lar, start, store};

const SYSTEM: &str = "Answer briefly.";

/// Chat lines teaching `Item: W. Count: N.` → `#N-W#`.
fn data(n: usize) -> String {
    let words = [
        "apple", "river", "stone", "cloud", "tiger", "paper", "glass", "honey",
    ];
    (0..n)
        .map(|i| {
            let (w, c) = (words[i % words.len()], i * 7 % 90 + 1);
            serde_json::json!({"messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": format!("Item: {w}. Count: {c}.")},
                {"role": "assistant", "content": format!("#{c}-{w}#")},
            ]})
            .to_string()
                + "\n"
        })
        .collect()
}

/// The flags of the small fine-tune every run here makes.
fn tune_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "finetune",
        "smollm2",
        data,
        "-o",
        out,
        "--steps",
        "6",
        "--rank",
        "8",
        "--alpha",
        "16",
        "--lr",
        "2e-3",
        "--dropout",
        "0.05",
        "--batch-tokens",
        "256",
        "--eval-split",
        "0.2",
        "--threads",
        "2",
    ]
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run_answer(home: &Path, adapter: Option<&str>) -> String {
    let mut c = lar(home);
    c.args([
        "run",
        "smollm2",
        "Item: lamp. Count: 12.",
        "--system",
        SYSTEM,
        "--json",
        "--temperature",
        "0",
    ])
    .args(["-n", "12", "--threads", "2"]);
    if let Some(a) = adapter {
        c.args(["--lora", a]);
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(&c.output().expect("lar run"))).expect("json");
    v["text"].as_str().expect("text").to_string()
}

#[test]
fn a_fine_tune_is_written_recorded_served_and_resumed_exactly() {
    let home = store("finetune");
    let data_path = home.join("toy.jsonl");
    std::fs::write(&data_path, data(24)).expect("data");
    let data_s = data_path.display().to_string();

    // Uninterrupted.
    let a = home.join("a");
    let a_s = a.display().to_string();
    let out = ok(&lar(&home)
        .args(tune_args(&data_s, &a_s))
        .output()
        .expect("lar finetune"));
    assert!(out.contains("adapter written to"), "{out}");
    // Its measured peak is within 10% of what `lar plan --finetune` plans for the same run.
    let peak: f64 = match out
        .split("peak memory ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
    {
        Some(p) => p,
        None if cfg!(target_os = "linux") => panic!("peak memory in {out}"),
        None => f64::NAN,
    };
    let plan: serde_json::Value = serde_json::from_str(&ok(&lar(&home)
        .args(["plan", "smollm2", "--finetune", "qlora", "--rank", "8"])
        .args(["--seq-len", "256", "--json"])
        .output()
        .expect("lar plan")))
    .expect("plan json");
    let planned = plan["total_bytes"].as_f64().expect("total_bytes") / (1u64 << 20) as f64;
    assert!(
        peak.is_nan() || (peak - planned).abs() <= 0.1 * planned,
        "measured peak {peak:.1} MiB, planned {planned:.1} MiB"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter.gguf",
        "loss.svg",
        "training_log.json",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("training_log.json")).expect("log"))
            .expect("json");
    let train = log["train"].as_array().expect("train curve");
    assert_eq!(train.len(), 6);
    let (first, last) = (
        train[0]["loss"].as_f64().unwrap(),
        train[5]["loss"].as_f64().unwrap(),
    );
    assert!(last < first * 0.5, "the loss fell: {first} -> {last}");
    assert!(!log["eval"].as_array().expect("eval curve").is_empty());
    let svg = std::fs::read_to_string(a.join("loss.svg")).expect("chart");
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 2);
    let runs = ok(&lar(&home)
        .args(["runs", "list"])
        .output()
        .expect("lar runs"));
    assert!(runs.contains("finetune"), "{runs}");

    // Served as `lar run --lora` answers, and unlike the bare model.
    let adapted = run_answer(&home, Some(&a_s));
    assert_ne!(adapted, run_answer(&home, None));
    let server = start(
        &home,
        &["--model", "smollm2", "--lora", &format!("toy={a_s}")],
        &[],
    );
    let body = serde_json::json!({"model": "smollm2+toy", "temperature": 0, "max_tokens": 12, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Item: lamp. Count: 12."}]})
    .to_string();
    let (status, text) =
        http(server.port, "POST", "/v1/chat/completions", &body).expect("response");
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str(),
        Some(adapted.as_str())
    );
    drop(server);

    // Interrupted by Ctrl-C after its first checkpoint, then resumed: the same adapter, byte for byte.
    let b = home.join("b");
    let b_s = b.display().to_string();
    let mut args = tune_args(&data_s, &b_s);
    args.extend(["--save-every", "1"]);
    let child = lar(&home)
        .args(&args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while !b.join("checkpoint/checkpoint.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--resume"), "{err}");
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.join("checkpoint/checkpoint.json")).expect("state"),
    )
    .expect("json");
    let at = state["step"].as_u64().expect("step");
    assert!((1..6).contains(&at), "interrupted at step {at}");
    let mut resume = args.clone();
    resume.push("--resume");
    let out = ok(&lar(&home).args(&resume).output().expect("resume"));
    assert!(out.contains("adapter written to"), "{out}");
    for f in ["adapter_model.safetensors", "adapter.gguf"] {
        assert!(
            std::fs::read(a.join(f)).expect("a") == std::fs::read(b.join(f)).expect("b"),
            "{f}: the resumed run's adapter differs from the uninterrupted run's"
        );
    }
    let log_b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("training_log.json")).expect("log"))
            .expect("json");
    assert_eq!(log_b["train"], log["train"], "the same loss curve");
}

#[test]
fn bad_data_and_settings_are_refused_and_nothing_is_written() {
    let home = store("finetune-bad");
    let out = home.join("out");
    let out_s = out.display().to_string();
    let refuse = |data: &[u8], extra: &[&str], want: &str| {
        let p = home.join("bad.jsonl");
        std::fs::write(&p, data).expect("data");
        let o = lar(&home)
            .args([
                "finetune",
                "smollm2",
                &p.display().to_string(),
                "-o",
                &out_s,
                "--threads",
                "2",
            ])
            .args(extra)
            .output()
            .expect("lar finetune");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "accepted: {want}");
        assert!(err.contains(want), "expected {want:?} in: {err}");
        assert!(!out.exists(), "{want}: something was written");
    };
    let good = data(3);
    refuse(
        format!("{good}{{\"messages\": [oops\n").as_bytes(),
        &[],
        "data line 4: not JSON",
    );
    refuse(
        b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
        &[],
        "no example to train on",
    );
    refuse(
        b"{\"prompt\": 3, \"completion\": \"x\"}\n",
        &[],
        "data line 1: \"prompt\" must be a string",
    );
    refuse(
        b"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n",
        &[],
        "role \"robot\"",
    );
    refuse(b"{\"text\": \"caf\xe9\"}\n", &[], "not UTF-8");
    refuse(
        good.as_bytes(),
        &["--targets", "q,x"],
        "unknown LoRA target 'x'",
    );
    refuse(good.as_bytes(), &["--dropout", "1.5"], "--dropout");
    refuse(
        good.as_bytes(),
        &["--schedule", "sawtooth"],
        "unknown schedule",
    );
    refuse(good.as_bytes(), &["--resume"], "no checkpoint");
    refuse(
        good.as_bytes(),
        &["--seq-len", "8"],
        "too long for --seq-len 8",
    );
    // Held-out examples from another file: not with --eval-split, and the file must exist and parse.
    let held = home.join("held.jsonl");
    let held_s = held.display().to_string();
    refuse(
        good.as_bytes(),
        &["--eval-data", &held_s, "--eval-split", "0.2"],
        "cannot be used with",
    );
    refuse(good.as_bytes(), &["--eval-data", &held_s], "held.jsonl");
    std::fs::write(&held, b"{\"messages\": [oops\n").expect("held");
    refuse(good.as_bytes(), &["--eval-data", &held_s], "held.jsonl");

    // ... and a good one: every example of DATA trained on, the other file's held out.
    std::fs::write(&held, data(5)).expect("held");
    let p = home.join("good.jsonl");
    std::fs::write(&p, data(8)).expect("data");
    let o = lar(&home)
        .args([
            "finetune",
            "smollm2",
            &p.display().to_string(),
            "-o",
            &out_s,
        ])
        .args(["--eval-data", &held_s, "--steps", "1", "--threads", "2"])
        .output()
        .expect("lar finetune");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("on 8 examples (5 held out)"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("held-out loss"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Quantization-aware repair through the CLI with a held-out text from another file: SmolLM2's BF16 directory
/// quantized to Q4_0 by `lar quantize`, taught by the directory over a piece of one document, measured on a piece
/// of another.
#[test]
fn qat_measures_on_another_document() {
    let home = store("finetune-qat");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let piece = |f: &str, n: usize| -> String {
        let t = std::fs::read_to_string(root.join(f)).expect("text");
        t.chars().take(n).collect()
    };
    let (train, held) = (home.join("train.txt"), home.join("held.txt"));
    std::fs::write(&train, piece("tests/data/perplexity.txt", 2400)).expect("train");
    std::fs::write(&held, piece("README.md", 1200)).expect("held");
    let teacher = lar_testdata::model(lar_testdata::SMOLLM2_HF);
    let student = home.join("student-q4_0.gguf");
    let q = lar(&home)
        .args(["quantize", &teacher.display().to_string()])
        .args([
            &student.display().to_string(),
            "--type",
            "Q4_0",
            "--no-record",
        ])
        .output()
        .expect("lar quantize");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let out = home.join("qat");
    let o = lar(&home)
        .args(["finetune", &student.display().to_string()])
        .args([&train.display().to_string(), "--qat"])
        .args(["--teacher", &teacher.display().to_string()])
        .args(["--eval-data", &held.display().to_string()])
        .args([
            "--seq-len",
            "64",
            "--batch-tokens",
            "256",
            "--steps",
            "6",
            "--lr",
            "1e-3",
        ])
        .args([
            "--threads",
            "2",
            "--no-record",
            "-o",
            &out.display().to_string(),
        ])
        .output()
        .expect("lar finetune --qat");
    let (stdout, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    // Every chunk of the training text trained on; the other file's chunks held out and reported on.
    let held_out: usize = err
        .split(" held out)")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("held-out count in {err}"));
    assert!(held_out >= 3, "{err}");
    let line = stdout
        .lines()
        .chain(err.lines())
        .find(|l| l.contains("held-out perplexity"))
        .unwrap_or_else(|| panic!("no repair report in {stdout} / {err}"));
    let kl: Vec<f64> = line
        .split("KL divergence from the teacher ")
        .nth(1)
        .and_then(|s| s.split(" (").next())
        .map(|s| s.split(" -> ").filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    eprintln!("{line}");
    assert_eq!(kl.len(), 2, "{line}");
    assert!(
        kl[1] < 0.9 * kl[0], // (33% less in six steps when this was written)
        "the divergence on the other document fell: {line}"
    );
}
