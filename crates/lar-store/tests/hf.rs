//! `hf:` pulls against a local server that answers like the Hugging Face Hub (tests/hub): choosing the GGUF file
//! by quant, pinning the commit, branches, resumed downloads, tampered content, unknown quants, tokens, a
//! safetensors repo pulled as a directory model, offline mode, and the planner's calls (file list, byte ranges).

mod hub;

use std::path::PathBuf;

use hub::{Hub, sha256_hex};
use lar_store::hf::{HfSource, HubClient, HubConfig};
use lar_store::{Error, Manifest, ModelName, Store};
use lar_testdata as testdata;

const REPO: &str = "lar-test/Tiny-GGUF";

fn fresh(case: &str) -> (Store, PathBuf) {
    let root = std::env::temp_dir().join(format!("lar-hf-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    (Store::open(&root).unwrap(), root)
}

fn client(hub: &Hub, token: Option<&str>) -> HubClient {
    HubClient::with_config(HubConfig {
        endpoint: hub.url.clone(),
        token: token.map(str::to_string),
        offline: false,
    })
    .unwrap()
}

fn pull(c: &HubClient, store: &Store, spec: &str) -> lar_store::Result<Manifest> {
    let src = HfSource::parse(spec)?;
    let name = ModelName::parse(&src.default_name())?;
    lar_store::hf::pull(c, store, &src, &name, &|_, _, _| {})
}

fn count(dir: PathBuf) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// A GGUF repo: two quants of a tiny model on `main`, an older Q4_K_M on branch `v1`, a README and a config.
/// Returns (main commit, v1 commit, Q4_K_M bytes on main, Q4_K_M bytes on v1).
fn gguf_repo(hub: &Hub) -> (String, String, Vec<u8>, Vec<u8>) {
    let old = testdata::tiny_model("phi3");
    let v1 = hub.commit(
        REPO,
        "v1",
        &[
            ("Tiny-Q4_K_M.gguf", old.clone()),
            ("README.md", b"v1".to_vec()),
        ],
    );
    let q4 = testdata::tiny_model("llama");
    let main = hub.commit(
        REPO,
        "main",
        &[
            ("README.md", b"# Tiny\n".to_vec()),
            ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
            ("Tiny-Q4_K_M.gguf", q4.clone()),
            ("Tiny-Q8_0.gguf", testdata::tiny_model("qwen2")),
        ],
    );
    (main, v1, q4, old)
}

#[test]
fn pull_by_quant_pins_the_commit() {
    let hub = Hub::start();
    let (main, _, q4, _) = gguf_repo(&hub);
    let (store, root) = fresh("quant");
    let m = pull(&client(&hub, None), &store, "hf:lar-test/Tiny-GGUF:q4_k_m").unwrap();
    assert_eq!((m.name.as_str(), m.tag.as_str()), ("tiny-gguf", "q4_k_m"));
    assert_eq!(m.format, "gguf");
    assert_eq!(m.revision.as_deref(), Some(main.as_str()));
    assert_eq!(m.source, format!("hf:{REPO}:q4_k_m@{main}"));
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].name, "Tiny-Q4_K_M.gguf");
    assert_eq!(m.files[0].sha256, sha256_hex(&q4));
    let blob = store
        .resolve(&ModelName::parse("tiny-gguf:q4_k_m").unwrap())
        .unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), q4);
    assert!(lar_models::open_model(&blob).is_ok());
    // The file list was read page by page; the download went through the CDN redirect; nothing left in tmp/.
    let reqs = hub.requests();
    assert!(
        reqs.iter().any(|r| r.target.contains("cursor=")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.target.starts_with("/cdn/")),
        "{reqs:?}"
    );
    assert_eq!(count(root.join("tmp")), 0);
    // An exact file name works too, and with the Hub's own commit as the revision.
    let m = pull(
        &client(&hub, None),
        &store,
        &format!("hf:{REPO}:Tiny-Q8_0.gguf@{main}"),
    )
    .unwrap();
    assert_eq!(
        m.files[0].sha256,
        sha256_hex(&testdata::tiny_model("qwen2"))
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn revision_branch_resolves_to_its_commit() {
    let hub = Hub::start();
    let (main, v1, _, old) = gguf_repo(&hub);
    assert_ne!(main, v1);
    let (store, root) = fresh("branch");
    let m = pull(
        &client(&hub, None),
        &store,
        "hf:lar-test/Tiny-GGUF:Q4_K_M@v1",
    )
    .unwrap();
    assert_eq!(m.revision.as_deref(), Some(v1.as_str()));
    assert_eq!(m.source, format!("hf:{REPO}:Q4_K_M@{v1}"));
    assert_eq!(m.files[0].sha256, sha256_hex(&old));
    // The planner's view of the same: the file list at the commit, and a byte range with the whole length.
    let c = client(&hub, None);
    let info = c.repo_files(REPO, "v1").unwrap();
    assert_eq!(info.commit, v1);
    let f = info
        .files
        .iter()
        .find(|f| f.path == "Tiny-Q4_K_M.gguf")
        .unwrap();
    assert_eq!(
        (f.size, f.sha256.as_deref()),
        (old.len() as u64, Some(sha256_hex(&old).as_str()))
    );
    let (head, total) = c.read_range(REPO, &v1, &f.path, 0, 8).unwrap();
    assert_eq!((&head[..], total), (&old[..8], old.len() as u64));
    let (mid, _) = c.read_range(REPO, &v1, &f.path, 100, 50).unwrap();
    assert_eq!(mid, &old[100..150]);
    let (tail, _) = c.read_range(REPO, &v1, &f.path, total - 4, 100).unwrap();
    assert_eq!(tail, &old[old.len() - 4..]);
    let e = c.read_range(REPO, &v1, &f.path, total + 10, 4).unwrap_err();
    assert!(e.to_string().contains("past the end"), "{e}");
    let e = pull(&c, &store, "hf:lar-test/Tiny-GGUF@nosuchbranch").unwrap_err();
    assert!(e.to_string().contains("nosuchbranch"), "{e}");
    let e = pull(&c, &store, "hf:lar-test/NoSuchRepo").unwrap_err();
    assert!(e.to_string().contains("lar-test/NoSuchRepo"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn downloads_resume_with_a_range_request() {
    let hub = Hub::start();
    let (_, _, q4, _) = gguf_repo(&hub);
    let (store, root) = fresh("resume");
    let sha = sha256_hex(&q4);
    // The first half, as an interrupted download leaves it.
    let half = q4.len() / 2;
    std::fs::write(root.join("tmp").join(format!("hf-{sha}.part")), &q4[..half]).unwrap();
    let m = pull(&client(&hub, None), &store, "hf:lar-test/Tiny-GGUF:Q4_K_M").unwrap();
    assert_eq!(m.files[0].sha256, sha);
    let ranges: Vec<_> = hub
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/cdn/"))
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [Some(format!("bytes={half}-"))]);
    assert_eq!(count(root.join("tmp")), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn tampered_content_is_refused_and_nothing_is_stored() {
    let hub = Hub::start();
    let (_, _, q4, _) = gguf_repo(&hub);
    let (store, root) = fresh("tamper");
    let sha = sha256_hex(&q4);
    hub.tamper(&sha);
    let e = pull(&client(&hub, None), &store, "hf:lar-test/Tiny-GGUF:Q4_K_M").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&format!("expected {sha}")) && msg.contains("Tiny-Q4_K_M.gguf"),
        "{msg}"
    );
    assert_eq!(count(root.join("blobs")), 0);
    assert_eq!(
        count(root.join("tmp")),
        0,
        "the partial download is deleted"
    );
    assert!(store.list().unwrap().is_empty());
    // A small file held in git: checked against its git blob id.
    let cfg = br#"{"model_type": "llama"}"#;
    hub.tamper(&sha256_hex(cfg));
    let dir_repo = "lar-test/cfg-only";
    hub.commit(
        dir_repo,
        "main",
        &[
            ("config.json", cfg.to_vec()),
            ("model.safetensors", vec![0; 16]),
        ],
    );
    let e = pull(&client(&hub, None), &store, &format!("hf:{dir_repo}")).unwrap_err();
    assert!(e.to_string().contains("git blob id"), "{e}");
    assert_eq!(count(root.join("tmp")), 0);
    // A directory model whose weights fail after its config was stored: the config's blob goes too.
    let weights = vec![3u8; 64];
    hub.tamper(&sha256_hex(&weights));
    hub.commit(
        "lar-test/bad-weights",
        "main",
        &[
            ("config.json", br#"{"model_type": "qwen2"}"#.to_vec()),
            ("model.safetensors", weights),
        ],
    );
    let e = pull(&client(&hub, None), &store, "hf:lar-test/bad-weights").unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(
        hub.requests()
            .iter()
            .any(|r| r.target.ends_with("/config.json"))
    );
    assert_eq!(count(root.join("blobs")), 0);
    assert_eq!(count(root.join("tmp")), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn unknown_or_ambiguous_quants_list_the_files() {
    let hub = Hub::start();
    gguf_repo(&hub);
    let (store, root) = fresh("unknown");
    let c = client(&hub, None);
    let e = pull(&c, &store, "hf:lar-test/Tiny-GGUF:Q5_K_M")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no GGUF file matches 'Q5_K_M'")
            && e.contains("Tiny-Q4_K_M.gguf")
            && e.contains("Tiny-Q8_0.gguf"),
        "{e}"
    );
    let e = pull(&c, &store, "hf:lar-test/Tiny-GGUF")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("several GGUF files") && e.contains("Tiny-Q8_0.gguf"),
        "{e}"
    );
    assert_eq!(count(root.join("blobs")), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn the_token_goes_to_the_hub_and_not_to_the_cdn() {
    let hub = Hub::start();
    gguf_repo(&hub);
    hub.require_token("hf_secret");
    let (store, root) = fresh("token");
    let e = pull(&client(&hub, None), &store, "hf:lar-test/Tiny-GGUF:Q8_0").unwrap_err();
    assert!(
        e.to_string().contains("HF_TOKEN") && e.to_string().contains("401"),
        "{e}"
    );
    let e = pull(
        &client(&hub, Some("wrong")),
        &store,
        "hf:lar-test/Tiny-GGUF:Q8_0",
    )
    .unwrap_err();
    assert!(e.to_string().contains("HF_TOKEN gives no access"), "{e}");
    let m = pull(
        &client(&hub, Some("hf_secret")),
        &store,
        "hf:lar-test/Tiny-GGUF:Q8_0",
    )
    .unwrap();
    assert_eq!(m.files[0].name, "Tiny-Q8_0.gguf");
    let reqs = hub.requests();
    let last = reqs
        .iter()
        .rev()
        .take_while(|r| r.authorization.as_deref() != Some("Bearer wrong"));
    for r in last {
        if r.target.starts_with("/cdn/") {
            assert_eq!(r.authorization, None, "the token went to the CDN: {r:?}");
        } else {
            assert_eq!(
                r.authorization.as_deref(),
                Some("Bearer hf_secret"),
                "{r:?}"
            );
        }
    }
    assert!(reqs.iter().any(|r| r.target.starts_with("/cdn/")));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn safetensors_repo_is_pulled_as_a_directory_model() {
    let hub = Hub::start();
    let g = lar_models::Gguf::from_bytes(testdata::tiny_model("qwen2")).unwrap();
    let dir = std::env::temp_dir().join(format!("lar-hf-st-src-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    testdata::write_hf_dir(&g, &dir, "BF16", 2).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.push(("README.md".into(), b"# tiny".to_vec()));
    files.push((
        "tokenizer_config.json".into(),
        br#"{"bos_token": null}"#.to_vec(),
    ));
    files.push(("onnx/model.onnx".into(), vec![1, 2, 3]));
    // A weight file the index does not name: not fetched.
    files.push(("consolidated.safetensors".into(), vec![7; 64]));
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let commit = hub.commit("lar-test/tiny-qwen2", "main", &refs);
    let (store, root) = fresh("dir");
    let m = pull(&client(&hub, None), &store, "hf:lar-test/tiny-qwen2").unwrap();
    assert_eq!(m.format, "safetensors");
    assert_eq!(m.revision.as_deref(), Some(commit.as_str()));
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "tokenizer_config.json"
        ]
    );
    for f in &m.files {
        let (_, bytes) = files.iter().find(|(p, _)| *p == f.name).unwrap();
        assert_eq!(f.sha256, sha256_hex(bytes), "{}", f.name);
    }
    let model_dir = store
        .resolve(&ModelName::parse("tiny-qwen2").unwrap())
        .unwrap();
    let loaded = lar_models::open_model(&model_dir).unwrap();
    assert_eq!(loaded.architecture().unwrap(), "qwen2");
    assert!(
        !hub.requests()
            .iter()
            .any(|r| r.target.contains("consolidated"))
    );
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn offline_refuses_without_a_request() {
    let hub = Hub::start();
    gguf_repo(&hub);
    let (store, root) = fresh("offline");
    let c = HubClient::with_config(HubConfig {
        endpoint: hub.url.clone(),
        token: None,
        offline: true,
    })
    .unwrap();
    let e = pull(&c, &store, "hf:lar-test/Tiny-GGUF:Q8_0").unwrap_err();
    assert!(e.to_string().contains("offline"), "{e}");
    assert!(c.read_range(REPO, &"0".repeat(40), "x.gguf", 0, 4).is_err());
    assert!(hub.requests().is_empty());
    let _ = std::fs::remove_dir_all(root);
}
