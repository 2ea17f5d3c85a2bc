//! `lar plan` end to end on the real models (`--json` fields, `--explain` text, the GPU split, fine-tuning), and the
//! planner gating `lar run`: a load that will not fit is refused with the numbers, and without `--ctx` the context
//! is the largest that fits. Remote plans (`hf:`) against the local stand-in for the Hugging Face Hub: planning from
//! a header read by range equals planning from the whole file.

#[path = "../../lar-store/tests/hub/mod.rs"]
mod hub;

use std::process::{Command, Output};

use lar_testdata as testdata;

fn lar(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lar"));
    c.args(args).env_remove("LAR_MEMORY_LIMIT");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn gemma() -> String {
    testdata::model("gemma-3-270m-q4_k_m.gguf")
        .display()
        .to_string()
}

#[test]
fn plan_json_has_every_figure() {
    let g = gemma();
    let v = json(&lar(&["plan", &g, "--ctx", "4096", "--json"], &[]));
    for k in [
        "total_bytes",
        "weights_bytes",
        "kv_bytes",
        "compute_bytes",
        "overhead_bytes",
        "max_ctx",
        "gpu_layers",
    ] {
        assert!(v[k].is_u64(), "{k} missing in {v}");
    }
    let sum: u64 = [
        "weights_bytes",
        "kv_bytes",
        "compute_bytes",
        "overhead_bytes",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap())
    .sum();
    assert_eq!(v["total_bytes"].as_u64(), Some(sum));
    assert_eq!(v["kv_bytes"].as_u64(), Some(1024 * 18 * 4096));
    assert_eq!(v["ctx"].as_u64(), Some(4096));
    assert_eq!(v["fits"], true);
    // q4_0 KV and a windowed cache shrink it; a 600 MiB GPU (0.5 GiB of it the compute buffer: logits of a 512-token batch over 262k tokens) takes some layers from the top.
    let v = json(&lar(
        &[
            "plan",
            &g,
            "--ctx",
            "4096",
            "--kv-type",
            "q4_0",
            "--swa",
            "window",
            "--gpu-mem",
            "600MiB",
            "--json",
        ],
        &[],
    ));
    assert_eq!(
        v["kv_bytes"].as_u64(),
        Some(18 * 512 / 32 * (3 * 4096 + 15 * 512))
    );
    let layers = v["gpu_layers"].as_u64().unwrap();
    assert!(layers > 0 && layers < 18, "{layers}");
    assert!(v["gpu_bytes"].as_u64().unwrap() <= 600 << 20);
}

#[test]
fn explain_says_where_figures_come_from() {
    let o = lar(&["plan", &gemma(), "--ctx", "2048", "--explain"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "tensor table",
        "1 KV heads x 256 dims",
        "15 of the layers slide",
        "prefill chunk",
        "tokenizer",
        "fits",
        "GB/s",
    ] {
        assert!(out.contains(want), "'{want}' missing in:\n{out}");
    }
}

#[test]
fn a_small_memory_limit_is_reported() {
    let o = lar(&["plan", &gemma(), "--ram", "300MiB"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("DOES NOT FIT") && out.contains("no context fits these budgets"),
        "{out}"
    );
    let v = json(&lar(&["plan", &gemma(), "--ram", "300MiB", "--json"], &[]));
    assert_eq!(
        v["max_ctx"], 0,
        "weights alone exceed 300 MiB once overhead is added: {v}"
    );
}

#[test]
fn finetune_plans() {
    let g = gemma();
    let peft = |m: &str| {
        json(&lar(
            &["plan", &g, "--finetune", m, "--trainer", "peft", "--json"],
            &[],
        ))
    };
    let (lora, qlora) = (peft("lora"), peft("qlora"));
    // Rank 16 on 7 linears of 18 layers: 16 x (640+1024 + 2 x (640+256) + 1024+640 + 2 x (640+2048) + 2048+640).
    let per_layer = 16 * (1664 + 2 * 896 + 1664 + 2 * 2688 + 2688);
    assert_eq!(lora["adapter_params"].as_u64(), Some(18 * per_layer));
    assert_eq!(lora["optimizer_bytes"].as_u64(), Some(8 * 18 * per_layer));
    assert!(qlora["weights_bytes"].as_u64() < lora["weights_bytes"].as_u64());
    let long = json(&lar(
        &[
            "plan",
            &g,
            "--finetune",
            "lora",
            "--trainer",
            "peft",
            "--seq-len",
            "2048",
            "--json",
        ],
        &[],
    ));
    assert!(long["activations_bytes"].as_u64() > lora["activations_bytes"].as_u64());
    // Lar's own trainer (the default): the file's weights as they are, whatever the method; the same adapter.
    let ours = json(&lar(&["plan", &g, "--finetune", "qlora", "--json"], &[]));
    assert_eq!(ours["trainer"], "lar");
    assert_eq!(ours["adapter_params"], lora["adapter_params"]);
    let file = json(&lar(&["plan", &g, "--json"], &[]));
    assert_eq!(
        ours["weights_bytes"], file["weights_bytes"],
        "the weights inference reads"
    );
    let o = lar(
        &["plan", &g, "--finetune", "lora", "--no-checkpointing"],
        &[],
    );
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("always recomputes")
    );
}

#[test]
fn run_is_gated_by_the_planner() {
    let g = gemma();
    // Needs ~0.5 GB at the full 32k context: refused under 300 MiB with the figures, before loading.
    let o = lar(
        &["run", &g, "hi", "--ctx", "32768", "-n", "1"],
        &[("LAR_MEMORY_LIMIT", "300MiB")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("not enough memory")
            && err.contains("KV cache")
            && err.contains("LAR_MEMORY_LIMIT"),
        "{err}"
    );
    // With 400 MiB and no --ctx, the context is the largest that fits: below the model's 32768.
    let plan = json(&lar(
        &["plan", &g, "--json"],
        &[("LAR_MEMORY_LIMIT", "400MiB")],
    ));
    let ctx = plan["ctx"].as_u64().unwrap();
    assert!(
        (2048..32768).contains(&ctx) && ctx.is_multiple_of(256),
        "{ctx}"
    );
    let o = lar(
        &[
            "run",
            &g,
            "--raw",
            "The capital of France is",
            "-n",
            "2",
            "--temperature",
            "0",
            "--json",
        ],
        &[("LAR_MEMORY_LIMIT", "400MiB")],
    );
    let v = json(&o);
    assert_eq!(v["completion_tokens"], 2);
    // And that context is the one the engine got: a prompt just past it is refused as too long for it.
    let prompt = "hello ".repeat(ctx as usize + 100);
    let o = lar(
        &["run", &g, "--raw", &prompt, "-n", "1"],
        &[("LAR_MEMORY_LIMIT", "400MiB")],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("does not fit the context of {ctx}")),
        "{err}"
    );
}

/// The figures that must not depend on where the tensor table was read from.
fn figures(v: &serde_json::Value) -> Vec<u64> {
    [
        "weights_bytes",
        "kv_bytes",
        "compute_bytes",
        "overhead_bytes",
        "total_bytes",
        "max_ctx",
    ]
    .iter()
    .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
    .collect()
}

#[test]
fn remote_plans_equal_local_ones() {
    let hub = hub::Hub::start();
    let gemma_bytes = std::fs::read(gemma()).unwrap();
    let tiny = lar_testdata::tiny_model("llama");
    let tiny_f32 = lar_testdata::tiny_model("qwen2");
    let dir = std::env::temp_dir().join(format!("lar-plan-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.gguf"), &tiny).unwrap();
    std::fs::write(dir.join("tiny-f32.gguf"), &tiny_f32).unwrap();
    hub.commit(
        "lar-test/Mixed-GGUF",
        "main",
        &[
            ("README.md", b"# quants".to_vec()),
            ("gemma-3-270m-Q4_K_M.gguf", gemma_bytes),
            ("tiny-Q8_0.gguf", tiny.clone()),
        ],
    );
    // A safetensors repository made from the tiny model.
    let hfdir = dir.join("hf");
    let g = lar_models::Gguf::from_bytes(tiny.clone()).unwrap();
    lar_testdata::write_hf_dir(&g, &hfdir, "F32", 2).unwrap();
    let files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&hfdir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    hub.commit("lar-test/Tiny-HF", "main", &refs);
    let env = [("HF_ENDPOINT", hub.url.as_str()), ("LAR_OFFLINE", "")];
    let ram = ["--ram", "8GiB", "--gpu-mem", "0"];
    let remote = |src: &str, extra: &[&str]| {
        let mut a = vec!["plan", src, "--json"];
        a.extend(ram);
        a.extend(extra);
        json(&lar(&a, &env))
    };
    let local = |path: &str| {
        let mut a = vec!["plan", path, "--json"];
        a.extend(ram);
        json(&lar(&a, &[]))
    };
    // Gemma's header (6.5 MB) is longer than the first read: the range grows until the table is complete.
    let g = gemma();
    assert_eq!(
        figures(&remote("hf:lar-test/Mixed-GGUF:Q4_K_M", &[])),
        figures(&local(&g))
    );
    let reads = hub.requests().iter().filter(|r| r.range.is_some()).count();
    assert!(reads >= 2, "{reads} range requests");
    assert!(
        hub.requests()
            .iter()
            .all(|r| r.range.as_deref() != Some("bytes=0-")),
        "never the whole file"
    );
    assert_eq!(
        figures(&remote("hf:lar-test/Tiny-HF", &[])),
        figures(&local(&hfdir.display().to_string()))
    );
    // Several GGUF files and no quant: each planned, the largest that fits recommended.
    let v = remote("hf:lar-test/Mixed-GGUF", &["--ctx", "1024"]);
    assert_eq!(v["recommended"], "gemma-3-270m-Q4_K_M.gguf", "{v}");
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
    let tiny_total = v["files"][1]["total_bytes"].as_u64().unwrap();
    let recommend = |ram: &str| {
        let args = [
            "plan",
            "hf:lar-test/Mixed-GGUF",
            "--ctx",
            "1024",
            "--json",
            "--ram",
            ram,
        ];
        json(&lar(&args, &env))
    };
    let v = recommend(&(tiny_total + 1000).to_string());
    assert_eq!(v["recommended"], "tiny-Q8_0.gguf", "{v}");
    let v = recommend("1MiB");
    assert!(v["recommended"].is_null(), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}
