//! Ingest and sync on a real SQLite store with a small deterministic embedder (hashed bag of words): what is read,
//! skipped and why, include/exclude globs, hidden folders and Maildir, a file removed between the walk and its read,
//! sync by content hash, and hybrid search over what went in.

use std::path::Path;

use lar_rag::ingest::{self, Options, Root};
use lar_rag::search::{SearchOptions, search};
use lar_rag::store::sqlite::SqliteStore;
use lar_rag::store::{Store, StoreInfo};

/// Each folded word adds to one of 64 dimensions; vectors are unit length.
struct Hashed;

impl lar_types::Embedder for Hashed {
    fn dim(&self) -> usize {
        64
    }
    fn max_tokens(&self) -> usize {
        64
    }
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count() + 2
    }
    fn embed(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in lar_rag::fold::terms(t) {
                    let h = w.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(0x100000001b3)
                    });
                    v[(h % 64) as usize] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

fn store(dir: &Path) -> SqliteStore {
    SqliteStore::create(
        &dir.join("kb.sqlite"),
        StoreInfo {
            embedder: "hashed".into(),
            dim: 64,
            language: lar_rag::lang::Analyzer::Auto,
        },
    )
    .unwrap()
}

fn root(p: &Path) -> Root {
    Root {
        path: p.display().to_string(),
        include: vec![],
        exclude: vec![],
    }
}

fn names(files: &[std::path::PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().to_string())
        .collect()
}

#[test]
fn walk_follows_globs_skips_hidden_and_finds_maildir() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docs");
    for (p, body) in [
        ("a.md", "# A\n\nalpha"),
        ("sub/b.txt", "beta"),
        ("sub/c.html", "<p>gamma</p>"),
        ("notes.bin", "unsupported"),
        (".git/config.md", "hidden"),
        (
            "Mail/cur/1700000000.M1.host:2,S",
            "Subject: hi\nFrom: a@b.c\n\nbody",
        ),
        ("Mail/new/.hidden", "x"),
    ] {
        let f = d.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    }
    std::fs::create_dir_all(d.join("Mail/tmp")).unwrap();
    std::fs::create_dir_all(d.join("Mail/new")).unwrap();
    let (files, skipped) = ingest::walk(&[root(&d)]).unwrap();
    assert_eq!(
        names(&files),
        ["1700000000.M1.host:2,S", "a.md", "b.txt", "c.html"]
    );
    assert!(skipped.is_empty(), "{skipped:?}");
    let mut r = root(&d);
    r.include = vec!["*.md".into(), "sub/*.html".into()];
    assert_eq!(
        names(&ingest::walk(&[r.clone()]).unwrap().0),
        ["a.md", "c.html"]
    );
    r.exclude = vec!["a.*".into()];
    assert_eq!(names(&ingest::walk(&[r]).unwrap().0), ["c.html"]);
    // A missing root and a file of an unsupported type named directly are reported.
    let (_, skipped) = ingest::walk(&[root(&d.join("nope")), root(&d.join("notes.bin"))]).unwrap();
    let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(reasons, ["not found", "unsupported file type"]);
    let mut bad = root(&d);
    bad.include = vec!["[".into()];
    assert!(
        ingest::walk(&[bad])
            .unwrap_err()
            .to_string()
            .contains("bad glob")
    );
}

#[test]
fn a_file_root_is_matched_by_its_name() {
    // `lar kb add kb notes.md --include '*.md'` used to match the glob against an empty relative path and drop it.
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("notes.md");
    std::fs::write(&f, "# Notes\n\nHello.").unwrap();
    let with = |include: &[&str], exclude: &[&str]| {
        let r = Root {
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..root(&f)
        };
        names(&ingest::walk(&[r]).unwrap().0)
    };
    assert_eq!(with(&["*.md"], &[]), ["notes.md"]);
    assert!(with(&["*.txt"], &[]).is_empty());
    assert!(with(&[], &["notes.*"]).is_empty());
}

#[test]
fn ingest_skips_a_vanished_file_and_sync_follows_changes() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docs");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("keep.md"),
        "# Keep\n\nThe boiler pressure is 1.5 bar.",
    )
    .unwrap();
    std::fs::write(d.join("gone.md"), "# Gone\n\nThis file disappears.").unwrap();
    std::fs::write(d.join("bad.txt"), b"\x00\x01binary\xff").unwrap();
    let mut s = store(t.path());
    let opts = Options::for_embedder(&Hashed);
    let (files, _) = ingest::walk(&[root(&d)]).unwrap();
    assert_eq!(files.len(), 3);
    // Removed after the walk, before its read: skipped, the rest goes on.
    std::fs::remove_file(d.join("gone.md")).unwrap();
    let mut events = 0;
    let r = ingest::ingest(&mut s, &Hashed, &files, &opts, &mut |_| events += 1).unwrap();
    assert_eq!(r.files_read, 1);
    let reasons: Vec<(String, String)> = r
        .skipped
        .iter()
        .map(|k| {
            (
                Path::new(&k.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string(),
                k.reason.clone(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(f, r)| f == "gone.md" && r.contains("not found")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(f, r)| f == "bad.txt" && r.contains("binary")),
        "{reasons:?}"
    );
    assert!(events >= 4, "progress events: {events}");
    assert_eq!(s.stats().unwrap().files, 1);

    // Same bytes: nothing to do. New content: re-read, old chunks replaced. Deleted: dropped.
    let r = ingest::sync(&mut s, &Hashed, &[root(&d)], &opts, &mut |_| {}).unwrap();
    assert_eq!(
        (r.files_read, r.files_unchanged, r.files_removed),
        (0, 1, 0)
    );
    std::fs::write(
        d.join("keep.md"),
        "# Keep\n\nThe boiler pressure is now 1.2 bar.",
    )
    .unwrap();
    std::fs::write(d.join("new.md"), "# New\n\nSolar inverter notes.").unwrap();
    let r = ingest::sync(&mut s, &Hashed, &[root(&d)], &opts, &mut |_| {}).unwrap();
    assert_eq!(
        (r.files_read, r.files_unchanged, r.chunks_removed),
        (2, 0, 1)
    );
    let hits = search(&s, &Hashed, "boiler pressure", &SearchOptions::default()).unwrap();
    assert!(
        hits[0].chunk.text.contains("1.2 bar"),
        "{:?}",
        hits[0].chunk.text
    );
    assert!(hits.iter().all(|h| !h.chunk.text.contains("1.5 bar")));
    std::fs::remove_file(d.join("keep.md")).unwrap();
    let r = ingest::sync(&mut s, &Hashed, &[root(&d)], &opts, &mut |_| {}).unwrap();
    assert_eq!((r.files_removed, r.files_unchanged), (1, 1));
    assert_eq!(s.files().unwrap().len(), 1);
    assert!(search(&s, &Hashed, "  ", &SearchOptions::default()).is_err());
}

#[test]
fn chunks_fit_the_embedder_and_keep_their_places() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docs");
    std::fs::create_dir_all(&d).unwrap();
    let long: String = (0..40)
        .map(|i| format!("Sentence number {i} about the garden plan. "))
        .collect();
    std::fs::write(
        d.join("g.md"),
        format!("# Garden\n\n## Watering\n\n{long}\n\n## Compost\n\nTurn it weekly."),
    )
    .unwrap();
    let mut s = store(t.path());
    let (files, _) = ingest::walk(&[root(&d)]).unwrap();
    ingest::ingest(
        &mut s,
        &Hashed,
        &files,
        &Options::for_embedder(&Hashed),
        &mut |_| {},
    )
    .unwrap();
    let n = s.stats().unwrap().chunks as i64;
    let ids: Vec<i64> = (1..=n + 5).collect();
    let chunks = s.chunks(&ids).unwrap();
    assert!(chunks.len() >= 4, "{}", chunks.len());
    for c in &chunks {
        let embedded = lar_rag::chunk::embed_text(&c.chunk);
        assert!(
            lar_types::Embedder::count_tokens(&Hashed, &embedded) <= 64,
            "{embedded}"
        );
        let h = c.chunk.loc.heading.as_deref().unwrap_or("");
        assert!(h == "Garden" || h.starts_with("Garden > "), "{h}");
    }
    assert!(
        chunks
            .iter()
            .any(|c| c.chunk.loc.heading.as_deref() == Some("Garden > Compost"))
    );
    // Every sentence of the long section is in some chunk.
    for i in 0..40 {
        let s = format!("Sentence number {i} about");
        assert!(chunks.iter().any(|c| c.chunk.text.contains(&s)), "{s} lost");
    }
}

#[test]
fn sync_drops_what_the_globs_now_leave_out_and_links_index_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("docs");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(d.join("a.md"), "# A\n\nalpha notes").unwrap();
    std::fs::write(d.join("sub/b.txt"), "beta notes").unwrap();
    std::os::unix::fs::symlink("sub/b.txt", d.join("link.txt")).unwrap();
    let mut s = store(t.path());
    let opts = Options::for_embedder(&Hashed);
    let r = ingest::sync(&mut s, &Hashed, &[root(&d)], &opts, &mut |_| {}).unwrap();
    // b.txt is reached twice (directly and through link.txt) and indexed once, under its real path.
    assert_eq!(r.files_read, 2, "{r:?}");
    let mut only_md = root(&d);
    only_md.include = vec!["*.md".into()];
    let r = ingest::sync(&mut s, &Hashed, &[only_md], &opts, &mut |_| {}).unwrap();
    assert_eq!((r.files_removed, r.files_unchanged), (1, 1), "{r:?}");
    let names: Vec<String> = s.files().unwrap().into_iter().map(|f| f.path).collect();
    assert!(names.len() == 1 && names[0].ends_with("/a.md"), "{names:?}");
    // A root that is gone takes its files with it.
    std::fs::remove_dir_all(&d).unwrap();
    let r = ingest::sync(&mut s, &Hashed, &[root(&d)], &opts, &mut |_| {}).unwrap();
    assert_eq!(r.files_removed, 1, "{r:?}");
    assert!(s.files().unwrap().is_empty());
}
