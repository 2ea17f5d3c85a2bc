//! LoRA adapters from the command line: `lar run --lora` and `lar serve --lora NAME=PATH`, with the random adapter
//! of `lar_testdata::lora::golden_lora` on SmolLM2 (whose forward pass tests/lora.rs of lar-models holds to
//! llama.cpp's). Served, the adapter answers as `lar run --lora` does, whether named as the model `smollm2+NAME`
//! or by llama-server's `lora` field, in the same batch as a request to the bare base; bad names and adapters are
//! refused with what is wrong.

mod common;

use std::path::Path;

use common::{http, http_get, lar, start, store};
use lar_testdata as testdata;

const PROMPT: &str = "Name three colours of the rainbow.";

/// The golden adapter for SmolLM2, written in both forms into `dir`.
fn write_adapter(dir: &Path) {
    let file = lar_models::open_model(&testdata::model(testdata::SMOLLM2)).expect("SmolLM2");
    let hp = lar_models::Hparams::from_gguf(&file).expect("hparams");
    let strength = testdata::lora::golden_strength(&hp.arch);
    testdata::lora::golden_lora(&hp, false, strength)
        .write_dir(dir, &hp)
        .expect("adapter written");
}

/// `lar run` greedy, 12 tokens, with `extra` flags: the answer's text.
fn run(home: &Path, extra: &[&str]) -> String {
    run_model(home, "smollm2", extra)
}

fn run_model(home: &Path, model: &str, extra: &[&str]) -> String {
    let o = lar(home)
        .args([
            "run",
            model,
            PROMPT,
            "--json",
            "--temperature",
            "0",
            "-n",
            "12",
            "--threads",
            "2",
        ])
        .args(extra)
        .output()
        .expect("lar run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["text"].as_str().expect("text").to_string()
}

fn chat_body(model: &str, extra: &str) -> String {
    format!(
        r#"{{"model": "{model}", "messages": [{{"role": "user", "content": "{PROMPT}"}}], "temperature": 0, "max_tokens": 12{extra}}}"#
    )
}

fn answer(port: u16, body: &str) -> String {
    let (status, text) = http(port, "POST", "/v1/chat/completions", body).expect("response");
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

#[test]
fn an_adapter_runs_from_the_cli_and_is_served_per_request() {
    let home = store("lora");
    let dir = home.join("adapter");
    write_adapter(&dir);
    let dir_s = dir.display().to_string();

    let bare = run(&home, &[]);
    let adapted = run(&home, &["--lora", &dir_s]);
    let via_gguf = run(
        &home,
        &["--lora", &dir.join("adapter.gguf").display().to_string()],
    );
    assert_ne!(bare, adapted, "the adapter changes the answer");
    assert_eq!(adapted, via_gguf, "either form gives the same answer");
    let off = run(&home, &["--lora", &dir_s, "--lora-scale", "0"]);
    assert_eq!(off, bare, "strength 0 is the bare model");

    let server = start(
        &home,
        &[
            "--model",
            "smollm2",
            "--lora",
            &format!("golden={dir_s}"),
            "--parallel",
            "3",
        ],
        &[],
    );
    let port = server.port;
    let (_, models) = http_get(port, "/v1/models").expect("models");
    assert!(models.contains("\"smollm2:latest+golden\""), "{models}");
    let (_, tags) = http_get(port, "/api/tags").expect("tags");
    assert!(tags.contains("smollm2:latest+golden"), "{tags}");

    // Three at once, in one batch: the adapter by name, the bare base, the adapter by llama-server's field.
    let bodies = [
        chat_body("smollm2+golden", ""),
        chat_body("smollm2", ""),
        chat_body("smollm2", r#", "lora": [{"id": 0, "scale": 1.0}]"#),
    ];
    let answers: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = bodies
            .iter()
            .map(|b| s.spawn(move || answer(port, b)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("request")).collect()
    });
    assert_eq!(
        answers[0], adapted,
        "served by name as lar run --lora answers"
    );
    assert_eq!(answers[1], bare, "the bare base beside it");
    assert_eq!(answers[2], adapted, "served by the lora field");
    let (_, one) = http_get(port, "/v1/models/smollm2+golden").expect("model");
    assert!(one.contains("smollm2:latest+golden"), "{one}");
    let (_, list) = http_get(port, "/lora-adapters").expect("adapters");
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list[0]["id"], 0);
    assert_eq!(list[0]["name"], "golden");
    assert_eq!(list[0]["model"], "smollm2:latest");

    // Refusals, each naming what is wrong.
    let (status, text) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body("smollm2+nope", ""),
    )
    .unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("golden"),
        "the error lists the adapters it has: {text}"
    );
    let twice = chat_body("smollm2+golden", r#", "lora": [{"id": 0, "scale": 1.0}]"#);
    let (status, text) = http(port, "POST", "/v1/chat/completions", &twice).unwrap();
    assert_eq!(status, 400, "{text}");
    let (status, text) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body("smollm2", r#", "lora": [{"id": 3, "scale": 1.0}]"#),
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("not loaded"), "{text}");
    let (status, text) = http(
        port,
        "POST",
        "/v1/chat/completions",
        &chat_body(
            "smollm2",
            r#", "lora": [{"id": 0, "scale": 1.0, "extra": 1}]"#,
        ),
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    drop(server);

    // An adapter that fits no served model, or a bad name, stops the server at start.
    let other = home.join("other.gguf");
    let qwen = lar_models::open_model(&testdata::model(testdata::QWEN_CODER)).expect("Qwen");
    let qhp = lar_models::Hparams::from_gguf(&qwen).expect("hparams");
    std::fs::write(
        &other,
        testdata::lora::golden_lora(&qhp, false, 0.05)
            .gguf_bytes(&qhp)
            .unwrap(),
    )
    .unwrap();
    for (spec, says) in [
        (
            format!("q={}", other.display()),
            "fits none of the served models",
        ),
        (format!("bad/name={dir_s}"), "adapter name"),
        ("nopath".to_string(), "NAME=PATH"),
    ] {
        let o = lar(&home)
            .args([
                "serve", "--port", "1", "--model", "smollm2", "--lora", &spec,
            ])
            .output()
            .expect("lar serve");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{spec}: {err}");
    }
    let o = lar(&home)
        .args([
            "run",
            "smollm2",
            "hi",
            "--lora",
            &other.display().to_string(),
        ])
        .output()
        .expect("lar run");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("qwen2"), "{err}");

    // Baked in: the merged file runs as a plain model; an adapter for another model writes nothing.
    let merged = home.join("merged.gguf");
    let o = lar(&home)
        .args([
            "merge",
            "smollm2",
            &dir_s,
            "-o",
            &merged.display().to_string(),
            "--no-record",
        ])
        .output()
        .expect("lar merge");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let merged_answer = run_model(&home, &merged.display().to_string(), &[]);
    eprintln!("bare: {bare:?}\nadapter: {adapted:?}\nmerged: {merged_answer:?}");
    assert_ne!(
        merged_answer, bare,
        "the merged model answers with the adapter's change"
    );
    let wrong = home.join("wrong.gguf");
    let o = lar(&home)
        .args([
            "merge",
            "smollm2",
            &other.display().to_string(),
            "-o",
            &wrong.display().to_string(),
        ])
        .output()
        .expect("lar merge");
    assert!(!o.status.success() && !wrong.exists());
    let _ = std::fs::remove_dir_all(&home);
}
