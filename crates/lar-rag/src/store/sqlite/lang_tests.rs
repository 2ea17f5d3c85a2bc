//! The SQLite store's full-text language: chunks stemmed in their detected language, the languages kept across
//! opens, and a store made before stemming read as unstemmed.

use super::tests::{chunk, entry, info};
use super::*;
use crate::store::Store;

#[test]
fn words_are_stemmed_in_each_chunks_language_and_old_stores_stay_plain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kb.sqlite");
    let mut store = SqliteStore::create(&path, info(2)).unwrap();
    let es = chunk(
        "/es.md",
        SourceKind::Markdown,
        0,
        "Para dormir en los albergues de peregrinos hace falta la credencial.",
    );
    let en = chunk(
        "/en.md",
        SourceKind::Markdown,
        0,
        "The boilers of the building are checked every winter.",
    );
    store
        .put_file(&entry("/es.md", 1), &[es], &[vec![1.0, 0.0]])
        .unwrap();
    store
        .put_file(&entry("/en.md", 1), &[en], &[vec![0.0, 1.0]])
        .unwrap();
    assert_eq!(store.languages(), [Lang::En, Lang::Es]);
    let find = |s: &SqliteStore, q: &str| {
        s.text_search(&[q.to_string()], 5, &Filter::default())
            .unwrap()
            .len()
    };
    assert_eq!(find(&store, "albergue"), 1);
    assert_eq!(find(&store, "boiler"), 1);
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.languages(),
        [Lang::En, Lang::Es],
        "the languages are kept"
    );
    assert_eq!(store.info().language, Analyzer::Auto);
    assert_eq!(find(&store, "albergue"), 1);
    drop(store);

    // A knowledge base made before stemming: no language rows, folded words as they were indexed.
    let old = dir.path().join("old.sqlite");
    let mut plain = SqliteStore::create(
        &old,
        StoreInfo {
            language: Analyzer::Plain,
            ..info(2)
        },
    )
    .unwrap();
    let c = chunk(
        "/es.md",
        SourceKind::Markdown,
        0,
        "Los albergues de peregrinos",
    );
    plain
        .put_file(&entry("/es.md", 1), &[c], &[vec![1.0, 0.0]])
        .unwrap();
    drop(plain);
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute(
            "DELETE FROM info WHERE key IN ('language', 'languages')",
            [],
        )
        .unwrap();
    let plain = SqliteStore::open(&old).unwrap();
    assert_eq!(plain.info().language, Analyzer::Plain);
    assert_eq!(find(&plain, "albergues"), 1);
    assert_eq!(
        find(&plain, "albergue"),
        0,
        "no stems in an unstemmed index"
    );
}
