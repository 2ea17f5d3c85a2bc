//! Knowledge bases for the server's tests: a fresh directory, and a knowledge base ingested from one.

use std::path::{Path, PathBuf};

use lar_rag::ingest::{self, Options, Root};
use lar_rag::kb::Registry;

pub fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lar-server-kb-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Creates knowledge base `name` under `root` made by `embedder` (named `embedder_name`) over the files in `dir`.
pub fn make_kb(
    root: &Path,
    name: &str,
    embedder_name: &str,
    embedder: &dyn lar_types::Embedder,
    dir: &Path,
) {
    let reg = Registry::new(root);
    let cfg = reg
        .create(
            name,
            embedder_name,
            embedder.dim(),
            "sqlite",
            lar_rag::lang::Analyzer::Auto,
        )
        .unwrap();
    let mut store = reg.open(&cfg).unwrap();
    let roots = [Root {
        path: dir.display().to_string(),
        include: vec![],
        exclude: vec![],
    }];
    let (files, _) = ingest::walk(&roots).unwrap();
    let r = ingest::ingest(
        store.as_mut(),
        embedder,
        &files,
        &Options::for_embedder(embedder),
        &mut |_| {},
    )
    .unwrap();
    assert!(r.chunks_added > 0, "{name}: nothing ingested");
}
