//! The PostgreSQL + pgvector store against a real server: `LAR_TEST_POSTGRES_URL` names it (scripts/postgres.sh
//! start prints one). Without it every test says it was skipped and passes, unless `LAR_REQUIRE_POSTGRES=1`, which
//! makes them fail instead. Each test works in a knowledge base (schema) of its own and drops it at the end.
//! Searches are checked against brute force computed here: filters by plain Rust (globs by globset), vectors by
//! exact cosine similarity.

use std::collections::{HashMap, HashSet};

use lar_rag::fold;
use lar_rag::store::postgres::PgStore;
use lar_rag::store::{Filter, Ranked, Store, StoreInfo};
use lar_rag::{Chunk, Error, Location, SourceKind};

mod pg;

use pg::*;

/// xorshift64*: reproducible test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..DIM)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
            .collect()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn put(store: &mut PgStore, path: &str, chunks: &[Chunk], rng: &mut Rng) -> Vec<Vec<f32>> {
    let vectors: Vec<Vec<f32>> = chunks.iter().map(|_| rng.vector()).collect();
    store
        .put_file(&entry(path, chunks.len()), chunks, &vectors)
        .expect("put_file");
    vectors
}

fn ids(r: &[Ranked]) -> Vec<i64> {
    r.iter().map(|r| r.id).collect()
}

fn search_terms(q: &str) -> Vec<String> {
    fold::terms(q)
}

#[test]
fn create_open_and_info_mismatch() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "create");
    {
        let store = kb.create();
        assert_eq!(store.info(), &info());
        assert_eq!(store.schema(), format!("lar_{}", kb.name));
    }
    // Open finds what create stored; create again with the same settings opens it.
    assert_eq!(PgStore::open(&url, &kb.name).expect("open").info(), &info());
    assert_eq!(kb.create().info(), &info());
    // Different settings are refused.
    for other in [
        StoreInfo {
            embedder: "test-embedder".into(),
            dim: DIM + 1,
            language: lar_rag::lang::Analyzer::Auto,
        },
        StoreInfo {
            embedder: "another".into(),
            dim: DIM,
            language: lar_rag::lang::Analyzer::Auto,
        },
    ] {
        let err = PgStore::create(&url, &kb.name, other)
            .err()
            .expect("mismatch refused");
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains("test-embedder"), "{err}");
    }
    // Names that are not [a-z0-9_] are refused before any connection is made.
    for bad in ["Notes", "my-notes", "x; DROP SCHEMA public", ""] {
        assert!(
            matches!(PgStore::open(&url, bad), Err(Error::Invalid(_))),
            "{bad:?}"
        );
        assert!(
            matches!(PgStore::create(&url, bad, info()), Err(Error::Invalid(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        PgStore::create(
            &url,
            "t_zero_dim",
            StoreInfo {
                embedder: "e".into(),
                dim: 0,
                language: lar_rag::lang::Analyzer::Auto,
            }
        ),
        Err(Error::Invalid(_))
    ));
    // Unknown and dropped knowledge bases are not found.
    let missing = format!("t{}_missing", std::process::id());
    assert!(matches!(
        PgStore::open(&url, &missing),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        PgStore::drop_kb(&url, &missing),
        Err(Error::NotFound(_))
    ));
    PgStore::drop_kb(&url, &kb.name).expect("drop");
    assert!(matches!(
        PgStore::open(&url, &kb.name),
        Err(Error::NotFound(_))
    ));
    // A bad URL or an unreachable server is an error, not a panic, and hides the password.
    let err = PgStore::open("postgres://u:hunter2@127.0.0.1:1/x", "a")
        .err()
        .expect("no server on port 1");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn put_replace_remove() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "put");
    let mut store = kb.create();
    let mut rng = Rng(1);
    let path = "/kb/notes/plan.md";
    let mut first = vec![
        chunk(path, SourceKind::Markdown, 0, "alpha one"),
        chunk(path, SourceKind::Markdown, 1, "alpha two"),
        chunk(path, SourceKind::Markdown, 2, "alpha three"),
    ];
    first[1].title = Some("Plan".into());
    first[1].date = Some(1_700_000_123);
    first[1].sender = Some("ana@example.org".into());
    first[1]
        .meta
        .insert("subject".into(), "Plan \"Q3\" — ñ".into());
    first[1].loc = Location {
        page: Some(4),
        heading: Some("Intro > Goals".into()),
        speaker: Some("Ana".into()),
        start: Some("00:01:02.500".into()),
        end: Some("00:01:09.000".into()),
    };
    put(&mut store, path, &first, &mut rng);
    put(
        &mut store,
        "/kb/other.txt",
        &[chunk("/kb/other.txt", SourceKind::Text, 0, "beta")],
        &mut rng,
    );
    assert_eq!(
        store.files().unwrap(),
        vec![entry("/kb/notes/plan.md", 3), entry("/kb/other.txt", 1)]
    );

    let found = store
        .text_search(&search_terms("alpha"), 10, &Filter::default())
        .unwrap();
    assert_eq!(found.len(), 3);
    let mut first_ids = ids(&found);
    first_ids.sort();
    // chunks() gives back every field, in the order asked, leaving unknown ids out.
    let asked = [first_ids[2], -5, first_ids[0], first_ids[1]];
    let got = store.chunks(&asked).unwrap();
    assert_eq!(
        got.iter().map(|c| c.id).collect::<Vec<_>>(),
        [first_ids[2], first_ids[0], first_ids[1]]
    );
    assert_eq!(got[0].chunk, first[2]);
    assert_eq!(got[1].chunk, first[0]);
    assert_eq!(got[2].chunk, first[1]);

    // Replacing a file drops its old chunks.
    let second = vec![
        chunk(path, SourceKind::Markdown, 0, "gamma one"),
        chunk(path, SourceKind::Markdown, 1, "gamma two"),
    ];
    put(&mut store, path, &second, &mut rng);
    assert!(store.chunks(&first_ids).unwrap().is_empty());
    assert!(
        store
            .text_search(&search_terms("alpha"), 10, &Filter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .text_search(&search_terms("gamma"), 10, &Filter::default())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(store.files().unwrap()[0], entry(path, 2));
    assert_eq!(store.stats().unwrap().chunks, 3);

    // A file with no chunks is recorded (so sync knows it), and NUL characters are dropped rather than failing.
    put(&mut store, "/kb/empty.txt", &[], &mut rng);
    let nul = chunk("/kb/nul.txt", SourceKind::Text, 0, "before\0after");
    put(&mut store, "/kb/nul.txt", &[nul], &mut rng);
    let hit = store
        .text_search(&search_terms("after"), 10, &Filter::default())
        .unwrap();
    assert_eq!(
        store.chunks(&ids(&hit)).unwrap()[0].chunk.text,
        "beforeafter"
    );

    store.remove_file(path).unwrap();
    store.remove_file("/kb/never-there").unwrap();
    let paths: Vec<String> = store.files().unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(paths, ["/kb/empty.txt", "/kb/nul.txt", "/kb/other.txt"]);
    assert!(
        store
            .text_search(&search_terms("gamma"), 10, &Filter::default())
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stats().unwrap().chunks, 2);
}

#[test]
fn text_search_folds_accents_and_ranks() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "text");
    let mut store = kb.create();
    let mut rng = Rng(2);
    let mut with_title = chunk("/kb/c.md", SourceKind::Markdown, 0, "nothing here");
    with_title.title = Some("Córdoba Straße".into());
    let docs = [
        chunk(
            "/kb/a.txt",
            SourceKind::Text,
            0,
            "ACTA DE LA REUNION DE ENERO",
        ),
        chunk(
            "/kb/b.txt",
            SourceKind::Text,
            0,
            "la reunión del presupuesto, reunión anual; presupuesto",
        ),
        with_title,
        chunk("/kb/d.txt", SourceKind::Text, 0, "hello—world and ¿dónde?"),
    ];
    for d in &docs {
        put(&mut store, &d.path, std::slice::from_ref(d), &mut rng);
    }
    let path_of = |r: &[Ranked]| -> Vec<String> {
        store
            .chunks(&ids(r))
            .unwrap()
            .into_iter()
            .map(|c| c.chunk.path)
            .collect()
    };
    let all = Filter::default();
    // "reunión" finds "REUNION"; the chunk with both words ranks first, scores are descending.
    let r = store
        .text_search(&search_terms("reunión presupuesto"), 10, &all)
        .unwrap();
    assert_eq!(path_of(&r), ["/kb/b.txt", "/kb/a.txt"]);
    assert!(r[0].score > r[1].score && r[1].score > 0.0, "{r:?}");
    assert_eq!(
        path_of(
            &store
                .text_search(&search_terms("REUNIÓN"), 10, &all)
                .unwrap()
        )
        .len(),
        2
    );
    // The title is indexed with the text; folding of ß and accents is fold::fold's.
    assert_eq!(
        path_of(
            &store
                .text_search(&search_terms("cordoba strasse"), 10, &all)
                .unwrap()
        ),
        ["/kb/c.md"]
    );
    // Words are cut as fold::terms cuts them (an em dash separates, whatever the server's locale).
    assert_eq!(
        path_of(&store.text_search(&search_terms("world"), 10, &all).unwrap()),
        ["/kb/d.txt"]
    );
    assert_eq!(
        path_of(&store.text_search(&search_terms("donde"), 10, &all).unwrap()),
        ["/kb/d.txt"]
    );
    // k limits, no terms or k = 0 give nothing.
    assert_eq!(
        store
            .text_search(&search_terms("reunion"), 1, &all)
            .unwrap()
            .len(),
        1
    );
    assert!(store.text_search(&[], 10, &all).unwrap().is_empty());
    assert!(
        store
            .text_search(&search_terms("reunion"), 0, &all)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn text_search_terms_cannot_inject() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "inject");
    let mut store = kb.create();
    let mut rng = Rng(3);
    let d = chunk("/kb/a.txt", SourceKind::Text, 0, "the reunion of o'brien");
    put(&mut store, "/kb/a.txt", &[d], &mut rng);
    let all = Filter::default();
    // Raw terms as a careless caller might pass them: tsquery and SQL syntax is never interpreted.
    for t in [
        "'", "&", "|", "!", ":*", ")", "(", "<->", "\\", "''", "';--", "%", "_", "\0",
    ] {
        let r = store
            .text_search(&[t.to_string()], 10, &all)
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        assert!(r.is_empty(), "{t:?}: {r:?}");
    }
    for t in [
        "reunion)",
        "!reunion",
        "reunion:*",
        "reun:*",
        "'reunion' & 'nothing'",
        "x' | 'reunion",
        "reunion'); DROP TABLE chunks; --",
        "o'brien",
    ] {
        let r = store
            .text_search(&[t.to_string()], 10, &all)
            .unwrap_or_else(|e| panic!("{t:?}: {e}"));
        let expect = if t == "reun:*" { 0 } else { 1 }; // no prefix matching: "reun" is just a word
        assert_eq!(r.len(), expect, "{t:?}: {r:?}");
    }
    // Still there.
    assert_eq!(store.stats().unwrap().chunks, 1);
}

/// A corpus of `n` chunks over several files with every kind of metadata the filters look at; every text holds the
/// word "common".
fn corpus(
    store: &mut PgStore,
    n: usize,
    per_file: usize,
    seed: u64,
) -> Vec<(i64, Chunk, Vec<f32>)> {
    let mut rng = Rng(seed);
    let dirs = [
        "/kb/docs/a",
        "/kb/docs/a/deep",
        "/kb/docs/b",
        "/kb/mail",
        "/kb/we(ird)+",
    ];
    let senders = [
        None,
        Some("alice@example.org"),
        Some("bob_smith@work.com"),
        Some("carol%x@example.org"),
    ];
    let mut files: Vec<(String, Vec<Chunk>)> = Vec::new();
    for i in 0..n {
        if i % per_file == 0 {
            let dir = dirs[rng.below(dirs.len())];
            let ext = ["md", "txt", "eml"][rng.below(3)];
            files.push((format!("{dir}/f{i}.{ext}"), Vec::new()));
        }
        let Some((path, chunks)) = files.last_mut() else {
            unreachable!()
        };
        let mut c = chunk(
            path,
            SourceKind::ALL[rng.below(8)],
            chunks.len() as u32,
            &format!("common w{}", i % 13),
        );
        c.date = (rng.below(4) > 0).then(|| 1_600_000_000 + rng.below(1000) as i64 * 86_400);
        c.sender = senders[rng.below(senders.len())].map(str::to_string);
        chunks.push(c);
    }
    let mut vectors = HashMap::new();
    for (path, chunks) in &files {
        for (c, v) in chunks.iter().zip(put(store, path, chunks, &mut rng)) {
            vectors.insert((c.path.clone(), c.ord), v);
        }
    }
    let found = store
        .text_search(&["common".to_string()], 1_000_000, &Filter::default())
        .unwrap();
    let stored = store.chunks(&ids(&found)).unwrap();
    assert_eq!(stored.len(), n);
    stored
        .into_iter()
        .map(|s| {
            let v = vectors[&(s.chunk.path.clone(), s.chunk.ord)].clone();
            (s.id, s.chunk, v)
        })
        .collect()
}

/// Whether a chunk passes `f`, in plain Rust (globs by globset, `*` not crossing `/`).
fn matcher(f: &Filter) -> impl Fn(&Chunk) -> bool + '_ {
    let glob = f.path_glob.as_ref().map(|g| {
        globset::GlobBuilder::new(g)
            .literal_separator(true)
            .build()
            .expect("test glob")
            .compile_matcher()
    });
    move |c: &Chunk| {
        (f.kinds.is_empty() || f.kinds.contains(&c.kind))
            && glob.as_ref().is_none_or(|g| g.is_match(&c.path))
            && f.since.is_none_or(|s| c.date.is_some_and(|d| d >= s))
            && f.until.is_none_or(|u| c.date.is_some_and(|d| d <= u))
            && f.sender.as_ref().is_none_or(|s| {
                c.sender
                    .as_ref()
                    .is_some_and(|cs| cs.to_lowercase().contains(&s.to_lowercase()))
            })
    }
}

fn filters() -> Vec<Filter> {
    let f = Filter::default;
    vec![
        f(),
        Filter {
            kinds: vec![SourceKind::Mail],
            ..f()
        },
        Filter {
            kinds: vec![SourceKind::Pdf, SourceKind::Markdown, SourceKind::Calendar],
            ..f()
        },
        Filter {
            path_glob: Some("/kb/docs/**/*.md".into()),
            ..f()
        },
        Filter {
            path_glob: Some("/kb/docs/a/*".into()),
            ..f()
        },
        Filter {
            path_glob: Some("**/docs/?/f*.md".into()),
            ..f()
        },
        Filter {
            path_glob: Some("**/mail/f??.eml".into()),
            ..f()
        },
        Filter {
            path_glob: Some("/kb/*/a/**".into()),
            ..f()
        },
        Filter {
            path_glob: Some("/kb/we(ird)+/*".into()),
            ..f()
        },
        Filter {
            path_glob: Some("*.txt".into()),
            ..f()
        },
        Filter {
            since: Some(1_600_000_000 + 500 * 86_400),
            ..f()
        },
        Filter {
            until: Some(1_600_000_000 + 100 * 86_400),
            ..f()
        },
        Filter {
            since: Some(1_600_000_000 + 200 * 86_400),
            until: Some(1_600_000_000 + 260 * 86_400),
            ..f()
        },
        Filter {
            sender: Some("ALICE".into()),
            ..f()
        },
        Filter {
            sender: Some("_".into()),
            ..f()
        },
        Filter {
            sender: Some("%".into()),
            ..f()
        },
        Filter {
            sender: Some("example.org".into()),
            ..f()
        },
        Filter {
            kinds: vec![SourceKind::Text, SourceKind::Mail, SourceKind::Html],
            path_glob: Some("/kb/**".into()),
            since: Some(1_600_000_000 + 300 * 86_400),
            sender: Some("o".into()),
            ..f()
        },
    ]
}

#[test]
fn filters_match_brute_force() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "filters");
    let mut store = kb.create();
    let all = corpus(&mut store, 300, 7, 4);
    let mut rng = Rng(44);
    for f in filters() {
        let passes = matcher(&f);
        let mut want: Vec<i64> = all
            .iter()
            .filter(|(_, c, _)| passes(c))
            .map(|(id, _, _)| *id)
            .collect();
        want.sort();
        // `*` does not cross `/`: a glob without one matches no absolute path.
        assert_eq!(
            want.is_empty(),
            f.path_glob.as_deref() == Some("*.txt"),
            "{f:?} selects {}",
            want.len()
        );
        let mut got = ids(&store.text_search(&["common".into()], 10_000, &f).unwrap());
        got.sort();
        assert_eq!(got, want, "text search with {f:?}");
        // The vector side filters the same way: asking for everything gives exactly the filtered set.
        let mut got = ids(&store.vector_search(&rng.vector(), 10_000, &f).unwrap());
        got.sort();
        assert_eq!(got, want, "vector search with {f:?}");
    }
}

/// Enough chunks (4000, analyzed) for the planner to search through the HNSW index, with the iterative scan when
/// filtered, and exactly for selective filters; every way is checked against brute force. The index's statistics show
/// that filtered searches did go through it.
#[test]
fn vector_search_matches_brute_force() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "vectors");
    let mut store = kb.create();
    let schema = store.schema().to_string();
    let all = corpus(&mut store, 4000, 500, 5);
    drop(store);
    sql(&url, &format!("ANALYZE {schema}.chunks"));
    let by_id: HashMap<i64, &Vec<f32>> = all.iter().map(|(id, _, v)| (*id, v)).collect();
    let mut rng = Rng(55);
    let (mut hits, mut wanted) = (0usize, 0usize);
    let mut check = |store: &PgStore, f: &Filter| {
        let passes = matcher(f);
        for k in [1, 10, 60] {
            let q = rng.vector();
            let mut brute: Vec<(i64, f64)> = all
                .iter()
                .filter(|(_, c, _)| passes(c))
                .map(|(id, _, v)| (*id, cosine(&q, v)))
                .collect();
            brute.sort_by(|a, b| b.1.total_cmp(&a.1));
            brute.truncate(k);
            let got = store.vector_search(&q, k, f).unwrap();
            // As many as exist (the iterative scan or the exact fallback fill filtered searches up to k) ...
            assert_eq!(got.len(), brute.len(), "k {k} {f:?}");
            // ... best first, each score the true cosine similarity ...
            for w in got.windows(2) {
                assert!(w[0].score >= w[1].score, "not sorted: {got:?}");
            }
            for r in &got {
                let want = cosine(&q, by_id.get(&r.id).expect("known id"));
                assert!(
                    (r.score as f64 - want).abs() < 1e-5,
                    "score of {} with {f:?}",
                    r.id
                );
            }
            // ... and the same ones as brute force, up to the approximation of HNSW.
            let want: HashSet<i64> = brute.iter().map(|(id, _)| *id).collect();
            hits += got.iter().filter(|r| want.contains(&r.id)).count();
            wanted += want.len();
        }
    };
    // Filtered searches first, alone: closing the store makes its sessions report their index scans.
    let store = PgStore::open(&url, &kb.name).unwrap();
    for f in filters().iter().filter(|f| !f.is_empty()) {
        check(&store, f);
    }
    drop(store);
    assert!(
        index_scans(&url, &schema) > 0,
        "filtered searches never used the HNSW index"
    );
    let store = PgStore::open(&url, &kb.name).unwrap();
    for _ in 0..10 {
        check(&store, &Filter::default());
    }
    // With the iterative scan cut short and the index preferred (session settings given in the URL), filtered
    // searches that come back short are asked again without the index: still every match, up to k.
    let sep = if url.contains('?') { '&' } else { '?' };
    let short_scans =
        format!("{url}{sep}options[hnsw.max_scan_tuples]=1&options[enable_seqscan]=off");
    let store = PgStore::open(&short_scans, &kb.name).unwrap();
    for f in filters().iter().filter(|f| !f.is_empty()) {
        check(&store, f);
    }
    let recall = hits as f64 / wanted as f64;
    eprintln!("vector search recall against brute force: {recall:.4} ({hits}/{wanted})");
    assert!(recall >= 0.95, "recall {recall}");
}

/// Runs one statement on a connection of its own.
fn sql(url: &str, statement: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    });
}

/// How often the chunks' HNSW index was scanned, once closed sessions have reported their statistics.
fn index_scans(url: &str, schema: &str) -> i64 {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let mut scans = 0;
        for _ in 0..40 {
            // A new snapshot of the statistics each time.
            sqlx::query("SELECT pg_stat_clear_snapshot()")
                .execute(&mut conn)
                .await
                .unwrap();
            scans = sqlx::query_scalar(
                "SELECT COALESCE(sum(idx_scan), 0)::int8 FROM pg_stat_user_indexes \
                 WHERE schemaname = $1 AND indexrelname = 'chunks_embedding'",
            )
            .bind(schema)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            if scans > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        scans
    })
}

#[test]
fn wrong_vector_length_writes_nothing() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "dims");
    let mut store = kb.create();
    let mut rng = Rng(6);
    let path = "/kb/a.txt";
    let old = [chunk(path, SourceKind::Text, 0, "old text")];
    put(&mut store, path, &old, &mut rng);
    let new = [
        chunk(path, SourceKind::Text, 0, "new one"),
        chunk(path, SourceKind::Text, 1, "new two"),
    ];
    let short = vec![rng.vector(), vec![0.5; DIM - 1]];
    let err = store.put_file(&entry(path, 2), &new, &short).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    let err = store
        .put_file(&entry("/kb/b.txt", 2), &new, &[rng.vector()])
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    // The old version of the file is intact and nothing else was written.
    assert_eq!(store.files().unwrap(), vec![entry(path, 1)]);
    assert_eq!(store.stats().unwrap().chunks, 1);
    assert_eq!(
        store
            .text_search(&search_terms("old"), 10, &Filter::default())
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .text_search(&search_terms("new"), 10, &Filter::default())
            .unwrap()
            .is_empty()
    );
    let err = store
        .vector_search(&[0.1; DIM + 1], 5, &Filter::default())
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

#[test]
fn stats_count_and_measure() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "stats");
    let mut store = kb.create();
    let empty = store.stats().unwrap();
    assert_eq!((empty.files, empty.chunks, empty.by_kind.len()), (0, 0, 0));
    assert!(
        empty.bytes > 0,
        "tables and indexes take pages even when empty"
    );
    let mut rng = Rng(7);
    let mail: Vec<Chunk> = (0..3)
        .map(|i| chunk("/kb/m.mbox", SourceKind::Mail, i, "hello"))
        .collect();
    put(&mut store, "/kb/m.mbox", &mail, &mut rng);
    let text: Vec<Chunk> = (0..200)
        .map(|i| {
            chunk(
                "/kb/t.txt",
                SourceKind::Text,
                i,
                &"some longer text ".repeat(20),
            )
        })
        .collect();
    put(&mut store, "/kb/t.txt", &text, &mut rng);
    let s = store.stats().unwrap();
    assert_eq!((s.files, s.chunks), (2, 203));
    assert_eq!(
        s.by_kind,
        vec![(SourceKind::Text, 200), (SourceKind::Mail, 3)]
    );
    assert!(s.bytes > empty.bytes, "{} <= {}", s.bytes, empty.bytes);
}
