//! Tests of the SQLite store: roundtrips, replacement, filters against brute force, folding, hostile queries,
//! junk files, and consistency after the writer is killed mid-transaction.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::fold::terms;
use crate::store::Store;

/// A small deterministic generator (xorshift64*), so tests need no extra crates.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit()).collect()
    }
}

pub(super) fn info(dim: usize) -> StoreInfo {
    StoreInfo {
        embedder: "test-embedder".into(),
        dim,
        language: crate::lang::Analyzer::Auto,
    }
}

pub(super) fn entry(path: &str, chunks: usize) -> FileEntry {
    FileEntry {
        path: path.into(),
        sha256: "ab".repeat(32),
        size: 1234,
        mtime: 1_700_000_000,
        chunks: chunks as u64,
    }
}

pub(super) fn chunk(path: &str, kind: SourceKind, ord: u32, text: &str) -> Chunk {
    Chunk {
        path: path.into(),
        kind,
        title: None,
        date: None,
        sender: None,
        meta: Meta::new(),
        loc: Location::default(),
        ord,
        text: text.into(),
    }
}

pub(super) fn new_store(dir: &tempfile::TempDir, dim: usize) -> SqliteStore {
    SqliteStore::create(&dir.path().join("kb.sqlite"), info(dim)).unwrap()
}

#[test]
fn create_open_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    let store = SqliteStore::create(&path, info(384)).unwrap();
    assert_eq!(store.info(), &info(384));
    drop(store);
    let again = SqliteStore::create(&path, info(384)).unwrap_err();
    assert!(
        matches!(again, Error::Invalid(ref m) if m.contains("already exists")),
        "{again}"
    );
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.info(), &info(384));
    assert_eq!(store.stats().unwrap().chunks, 0);
    assert!(store.check().unwrap().is_empty());
    let none = Filter::default();
    assert!(
        store
            .vector_search(&[0.5; 384], 5, &none)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .text_search(&["x".into()], 5, &none)
            .unwrap()
            .is_empty()
    );
    let c = chunk("/a.txt", SourceKind::Text, 0, "kept across reopen");
    store
        .put_file(
            &entry("/a.txt", 1),
            std::slice::from_ref(&c),
            &[vec![0.5; 384]],
        )
        .unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.files().unwrap(), vec![entry("/a.txt", 1)]);
    let hit = store.text_search(&["reopen".into()], 5, &none).unwrap();
    assert_eq!(store.chunks(&[hit[0].id]).unwrap()[0].chunk, c);
    assert_eq!(
        store.vector_search(&[0.5; 384], 5, &none).unwrap()[0].id,
        hit[0].id
    );
    let missing = SqliteStore::open(&dir.path().join("nope.sqlite")).unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing}");
    assert!(SqliteStore::create(&dir.path().join("zero.sqlite"), info(0)).is_err());
    assert!(!dir.path().join("zero.sqlite").exists());
}

#[test]
fn put_replace_remove() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = new_store(&dir, 4);
    let a = "/docs/a.md";
    let mut c0 = chunk(a, SourceKind::Markdown, 0, "alpha bravo");
    c0.title = Some("Título".into());
    c0.date = Some(1_700_000_000);
    c0.sender = Some("ana@example.com".into());
    c0.meta.insert("subject".into(), "hola".into());
    c0.loc.heading = Some("Intro > Uno".into());
    c0.loc.page = Some(3);
    let chunks = vec![
        c0,
        chunk(a, SourceKind::Markdown, 1, "charlie delta"),
        chunk(a, SourceKind::Markdown, 2, "echo foxtrot"),
    ];
    let vectors = vec![
        vec![1.0, 0.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0, 0.0],
        vec![0.0, 0.0, 1.0, 0.0],
    ];
    store.put_file(&entry(a, 3), &chunks, &vectors).unwrap();
    store
        .put_file(
            &entry("/docs/b.txt", 1),
            &[chunk("/docs/b.txt", SourceKind::Text, 0, "golf")],
            &[vec![0.0, 0.0, 0.0, 1.0]],
        )
        .unwrap();
    assert_eq!(
        store.files().unwrap(),
        vec![entry(a, 3), entry("/docs/b.txt", 1)]
    );

    let hits = store
        .vector_search(&[0.1, 1.0, 0.0, 0.0], 2, &Filter::default())
        .unwrap();
    assert_eq!(hits.len(), 2);
    let got = store.chunks(&[hits[0].id]).unwrap();
    assert_eq!(got[0].chunk, chunks[1]);
    let found = store
        .text_search(&["titulo".into()], 5, &Filter::default())
        .unwrap();
    assert_eq!(found.len(), 1);
    let old_ids: Vec<i64> = store
        .chunks(&[found[0].id, hits[0].id, 999_999])
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        old_ids,
        vec![found[0].id, hits[0].id],
        "order given, unknown ids left out"
    );
    assert_eq!(
        store.chunks(&[found[0].id]).unwrap()[0].chunk,
        chunks[0],
        "every field roundtrips"
    );

    // Replace: old chunks are gone from every index.
    let new = vec![chunk(a, SourceKind::Markdown, 0, "hotel india")];
    store
        .put_file(&entry(a, 7), &new, &[vec![0.0, 1.0, 0.0, 0.0]])
        .unwrap();
    assert_eq!(
        store.files().unwrap()[0].chunks,
        1,
        "records the chunks it was given"
    );
    assert!(store.chunks(&old_ids).unwrap().is_empty());
    assert!(
        store
            .text_search(&["charlie".into()], 5, &Filter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .text_search(&["hotel".into()], 5, &Filter::default())
            .unwrap()
            .len(),
        1
    );
    let hits = store
        .vector_search(&[0.0, 1.0, 0.0, 0.0], 10, &Filter::default())
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    let stats = store.stats().unwrap();
    assert_eq!((stats.files, stats.chunks), (2, 2));
    assert_eq!(
        stats.by_kind,
        vec![(SourceKind::Text, 1), (SourceKind::Markdown, 1)]
    );
    assert!(stats.bytes > 0);
    assert!(store.check().unwrap().is_empty());

    store.remove_file(a).unwrap();
    store.remove_file("/never/there").unwrap();
    assert_eq!(store.files().unwrap(), vec![entry("/docs/b.txt", 1)]);
    assert!(
        store
            .text_search(&["hotel".into()], 5, &Filter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .vector_search(&[0.0, 1.0, 0.0, 0.0], 10, &Filter::default())
            .unwrap()
            .len(),
        1
    );
    assert!(store.check().unwrap().is_empty());
}

#[test]
fn wrong_vectors_rejected_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = new_store(&dir, 4);
    let p = "/x.txt";
    let chunks = vec![
        chunk(p, SourceKind::Text, 0, "one"),
        chunk(p, SourceKind::Text, 1, "two"),
    ];
    for vectors in [
        vec![vec![1.0; 4], vec![1.0; 3]],
        vec![vec![1.0; 4]],
        vec![vec![1.0; 4], vec![f32::NAN; 4]],
    ] {
        let e = store.put_file(&entry(p, 2), &chunks, &vectors).unwrap_err();
        assert!(matches!(e, Error::Invalid(_)), "{e}");
    }
    let foreign = vec![
        chunk("/other", SourceKind::Text, 0, "x"),
        chunk(p, SourceKind::Text, 1, "y"),
    ];
    assert!(matches!(
        store.put_file(&entry(p, 2), &foreign, &[vec![1.0; 4], vec![1.0; 4]]),
        Err(Error::Invalid(_))
    ));
    assert!(store.files().unwrap().is_empty());
    assert_eq!(store.stats().unwrap().chunks, 0);
    assert!(matches!(
        store.vector_search(&[1.0; 5], 3, &Filter::default()),
        Err(Error::Invalid(_))
    ));
    assert!(
        store
            .vector_search(&[0.0; 4], 3, &Filter::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn accent_folded_text_search() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = new_store(&dir, 2);
    let p = "/m.txt";
    let mut c = chunk(p, SourceKind::Text, 0, "MINUTES OF THE REUNION IN CÓRDOBA");
    c.title = Some("Straße".into());
    store
        .put_file(&entry(p, 1), &[c], &[vec![1.0, 0.0]])
        .unwrap();
    for q in [
        "reunión", "REUNION", "cordoba", "Córdoba", "strasse", "STRASSE",
    ] {
        let hits = store
            .text_search(&[q.to_string()], 5, &Filter::default())
            .unwrap();
        assert_eq!(hits.len(), 1, "{q}");
        assert!(
            hits[0].score > 0.0,
            "higher is better, positive: {}",
            hits[0].score
        );
    }
}

#[test]
fn hostile_queries_do_not_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = new_store(&dir, 2);
    let p = "/q.txt";
    store
        .put_file(
            &entry(p, 1),
            &[chunk(p, SourceKind::Text, 0, "near and or not")],
            &[vec![1.0, 0.0]],
        )
        .unwrap();
    for q in [
        "\"",
        "*",
        "AND",
        "OR",
        "NOT",
        "NEAR(",
        "NEAR(a b",
        "a\"b",
        "^",
        ":",
        "title:x",
        "-",
        "(",
        ")",
        "{",
        "''",
        "",
        "\u{0}",
        "body : near",
    ] {
        let r = store.text_search(&[q.to_string()], 5, &Filter::default());
        assert!(r.is_ok(), "{q:?}: {r:?}");
    }
    let all: Vec<String> = ["NEAR(", "AND", "\"", "*"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        store
            .text_search(&all, 5, &Filter::default())
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .text_search(&[], 5, &Filter::default())
            .unwrap()
            .is_empty()
    );
    let bad_glob = Filter {
        path_glob: Some("[".into()),
        ..Filter::default()
    };
    assert!(matches!(
        store.text_search(&["near".into()], 5, &bad_glob),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn junk_files_error_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(
        &junk,
        b"this is not a database, just some text that is long enough to look like a header....",
    )
    .unwrap();
    let e = SqliteStore::open(&junk).unwrap_err();
    assert!(
        matches!(e, Error::Store(ref m) if m.contains("not a Lar knowledge base")),
        "{e}"
    );
    let empty = dir.path().join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(SqliteStore::open(&empty), Err(Error::Store(_))));
    let foreign = dir.path().join("foreign.sqlite");
    {
        let c = Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let e = SqliteStore::open(&foreign).unwrap_err();
    assert!(
        matches!(e, Error::Store(ref m) if m.contains("not a Lar knowledge base")),
        "{e}"
    );
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(Error::NotFound(_))
    ));
}

const WORDS: [&str; 12] = [
    "budget", "meeting", "invoice", "reunión", "contract", "holiday", "server", "backup", "lunch",
    "report", "audit", "travel",
];
const SENDERS: [&str; 3] = ["ana@example.com", "bob@corp.example", "carla@example.com"];

/// A store with 400 varied chunks of dim 8 over 40 files, and the chunks with their vectors by id.
fn varied_store(dir: &tempfile::TempDir) -> (SqliteStore, HashMap<i64, (Chunk, Vec<f32>)>) {
    let mut store = new_store(dir, 8);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for f in 0..40 {
        let (dir_name, kind) = match f % 4 {
            0 => ("/kb/mail", SourceKind::Mail),
            1 => ("/kb/notes/2024", SourceKind::Markdown),
            2 => ("/kb/notes", SourceKind::Text),
            _ => ("/kb/cal", SourceKind::Calendar),
        };
        let path = format!("{dir_name}/f{f}.{}", kind.as_str());
        let mut chunks = Vec::new();
        let mut vectors = Vec::new();
        for ord in 0..10 {
            let text: Vec<&str> = (0..1 + rng.below(6))
                .map(|_| WORDS[rng.below(WORDS.len())])
                .collect();
            let mut c = chunk(&path, kind, ord, &text.join(" "));
            if rng.below(4) != 0 {
                c.date = Some(1_700_000_000 + rng.below(1000) as i64 * 86_400);
            }
            if kind == SourceKind::Mail {
                c.sender = Some(SENDERS[rng.below(SENDERS.len())].to_string());
            }
            chunks.push(c);
            vectors.push(rng.vector(8));
        }
        store
            .put_file(&entry(&path, 10), &chunks, &vectors)
            .unwrap();
    }
    let mut all = HashMap::new();
    let ids: Vec<i64> = store
        .conn
        .prepare("SELECT id FROM chunks")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    for sc in store.chunks(&ids).unwrap() {
        let blob: Vec<u8> = store
            .conn
            .query_row("SELECT embedding FROM vec WHERE id = ?1", [sc.id], |r| {
                r.get(0)
            })
            .unwrap();
        let v = blob
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        all.insert(sc.id, (sc.chunk, v));
    }
    assert_eq!(all.len(), 400);
    (store, all)
}

fn passes(c: &Chunk, f: &Filter) -> bool {
    let glob = f.path_glob.as_ref().is_none_or(|g| {
        globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .unwrap()
            .compile_matcher()
            .is_match(&c.path)
    });
    glob && (f.kinds.is_empty() || f.kinds.contains(&c.kind))
        && f.since.is_none_or(|s| c.date.is_some_and(|d| d >= s))
        && f.until.is_none_or(|u| c.date.is_some_and(|d| d <= u))
        && f.sender.as_ref().is_none_or(|s| {
            c.sender
                .as_ref()
                .is_some_and(|cs| cs.to_lowercase().contains(&s.to_lowercase()))
        })
}

fn filters() -> Vec<Filter> {
    let day = 86_400;
    vec![
        Filter::default(),
        Filter {
            kinds: vec![SourceKind::Mail],
            ..Filter::default()
        },
        Filter {
            kinds: vec![SourceKind::Text, SourceKind::Calendar],
            ..Filter::default()
        },
        Filter {
            path_glob: Some("/kb/notes/*".into()),
            ..Filter::default()
        },
        Filter {
            path_glob: Some("/kb/notes/**".into()),
            ..Filter::default()
        },
        Filter {
            path_glob: Some("**/f1?.*".into()),
            ..Filter::default()
        },
        Filter {
            path_glob: Some("/nowhere/**".into()),
            ..Filter::default()
        },
        Filter {
            since: Some(1_700_000_000 + 500 * day),
            ..Filter::default()
        },
        Filter {
            until: Some(1_700_000_000 + 100 * day),
            ..Filter::default()
        },
        Filter {
            since: Some(1_700_000_000 + 200 * day),
            until: Some(1_700_000_000 + 300 * day),
            ..Filter::default()
        },
        Filter {
            sender: Some("EXAMPLE.COM".into()),
            ..Filter::default()
        },
        Filter {
            sender: Some("bob@".into()),
            since: Some(1_700_000_000 + 300 * day),
            ..Filter::default()
        },
        Filter {
            kinds: vec![SourceKind::Markdown],
            path_glob: Some("/kb/**/2024/*.markdown".into()),
            until: Some(1_700_000_000 + 700 * day),
            ..Filter::default()
        },
    ]
}

#[test]
fn filtered_vector_search_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = varied_store(&dir);
    let mut rng = Rng(42);
    for filter in filters() {
        for k in [1, 5, 30, 500] {
            let q = rng.vector(8);
            let got = store.vector_search(&q, k, &filter).unwrap();
            let mut want: Vec<(i64, f64)> = all
                .iter()
                .filter(|(_, (c, _))| passes(c, &filter))
                .map(|(id, (_, v))| {
                    let dot: f64 = v.iter().zip(&q).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let na: f64 = v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                    let nb: f64 = q.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
                    (*id, dot / (na * nb))
                })
                .collect();
            want.sort_by(|a, b| b.1.total_cmp(&a.1));
            want.truncate(k);
            assert_eq!(got.len(), want.len(), "{filter:?} k={k}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.id, w.0, "{filter:?} k={k}");
                assert!((g.score as f64 - w.1).abs() < 1e-4);
            }
        }
    }
}

#[test]
fn filtered_text_search_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (store, all) = varied_store(&dir);
    for query in [
        vec!["budget"],
        vec!["reunion", "audit"],
        vec!["lunch", "nothing-here", "AND"],
    ] {
        let query: Vec<String> = query.iter().map(|s| s.to_string()).collect();
        let folded: BTreeSet<String> = query.iter().flat_map(|q| terms(q)).collect();
        let unfiltered = store
            .text_search(&query, 10_000, &Filter::default())
            .unwrap();
        assert!(
            unfiltered.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
        for filter in filters() {
            let matching: BTreeSet<i64> = all
                .iter()
                .filter(|(_, (c, _))| {
                    passes(c, &filter) && terms(&c.text).iter().any(|t| folded.contains(t))
                })
                .map(|(id, _)| *id)
                .collect();
            let got = store.text_search(&query, 10_000, &filter).unwrap();
            let got_ids: BTreeSet<i64> = got.iter().map(|r| r.id).collect();
            assert_eq!(got_ids, matching, "{query:?} {filter:?}");
            // BM25 does not depend on the filter: the filtered top 5 is the unfiltered ranking restricted.
            let top = store.text_search(&query, 5, &filter).unwrap();
            let want: Vec<Ranked> = unfiltered
                .iter()
                .filter(|r| matching.contains(&r.id))
                .take(5)
                .copied()
                .collect();
            assert_eq!(top.len(), want.len());
            for (t, w) in top.iter().zip(&want) {
                assert!((t.score - w.score).abs() < 1e-5, "{query:?} {filter:?}");
            }
        }
    }
}

const CHILD_ENV: &str = "LAR_SQLITE_CHILD_DB";
const CRASH_DIM: usize = 32;

/// Writes files into the store named by `LAR_SQLITE_CHILD_DB` until killed; run by `killed_writer_leaves_...`.
#[test]
#[ignore = "the writer child process of killed_writer_leaves_a_consistent_store"]
fn child_writer() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut store = SqliteStore::open(Path::new(&db)).unwrap();
    let mut rng = Rng(std::process::id() as u64 | 1);
    for round in 0..100_000u32 {
        let path = format!("/crash/f{}.txt", round % 13);
        let n = 100 + (round as usize % 7) * 60;
        let chunks: Vec<Chunk> = (0..n)
            .map(|i| {
                chunk(
                    &path,
                    SourceKind::Text,
                    i as u32,
                    &format!("round{round} word{i} shared"),
                )
            })
            .collect();
        let vectors: Vec<Vec<f32>> = (0..n).map(|_| rng.vector(CRASH_DIM)).collect();
        store.put_file(&entry(&path, n), &chunks, &vectors).unwrap();
        if round % 5 == 4 {
            store
                .remove_file(&format!("/crash/f{}.txt", rng.below(13)))
                .unwrap();
        }
    }
}

/// The highest chunk id ever committed (AUTOINCREMENT keeps it rising), to see a writer make progress.
fn committed_rounds(db: &Path) -> i64 {
    let Ok(c) = Connection::open(db) else {
        return 0;
    };
    let _ = c.busy_timeout(Duration::from_secs(5));
    c.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'chunks'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[test]
fn killed_writer_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kb.sqlite");
    drop(SqliteStore::create(&db, info(CRASH_DIM)).unwrap());
    let exe = std::env::current_exe().unwrap();
    for (attempt, delay_ms) in [13u64, 71, 150].into_iter().enumerate() {
        let before = committed_rounds(&db);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::sqlite::tests::child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        // Wait until the child has committed something, then kill it somewhere in a later transaction.
        while committed_rounds(&db) <= before && start.elapsed() < Duration::from_secs(60) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the writer exited early"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();

        let store = SqliteStore::open(&db).unwrap();
        assert_eq!(
            store.check().unwrap(),
            Vec::<String>::new(),
            "attempt {attempt}"
        );
        let files = store.files().unwrap();
        assert!(!files.is_empty());
        for f in &files {
            // Every file is one whole round: its chunks all carry the same round marker, numbered 0..n.
            let rounds: BTreeSet<String> = store
                .conn
                .prepare("SELECT text FROM chunks WHERE path = ?1")
                .unwrap()
                .query_map([&f.path], |r| r.get::<_, String>(0))
                .unwrap()
                .map(|t| t.unwrap().split(' ').next().unwrap_or("").to_string())
                .collect();
            assert_eq!(rounds.len(), 1, "{}: chunks from rounds {rounds:?}", f.path);
        }
        let stats = store.stats().unwrap();
        assert_eq!(stats.chunks, files.iter().map(|f| f.chunks).sum::<u64>());
        let shared = store
            .text_search(&["shared".into()], 10_000, &Filter::default())
            .unwrap();
        assert_eq!(shared.len() as u64, stats.chunks.min(10_000));
        assert_eq!(
            store
                .vector_search(&[1.0; CRASH_DIM], 3, &Filter::default())
                .unwrap()
                .len(),
            3
        );
    }
}
