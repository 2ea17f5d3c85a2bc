//! Stemming on the PostgreSQL store, as on SQLite: each chunk stemmed in its detected language, the languages kept
//! across opens, a knowledge base made before stemming (no language columns) read as unstemmed, and a second
//! create with another language refused.

mod pg;

use lar_rag::lang::{Analyzer, Lang};
use lar_rag::store::postgres::PgStore;
use lar_rag::store::{Filter, Store, StoreInfo};
use lar_rag::{Error, SourceKind};
use pg::*;

fn find(s: &PgStore, q: &str) -> usize {
    s.text_search(&[q.to_string()], 5, &Filter::default())
        .expect("text search")
        .len()
}

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i] = 1.0;
    v
}

#[test]
fn chunks_are_stemmed_in_their_language() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "lang");
    let mut store = kb.create();
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
        .put_file(&entry("/es.md", 1), &[es], &[unit(0)])
        .expect("put");
    store
        .put_file(&entry("/en.md", 1), &[en], &[unit(1)])
        .expect("put");
    assert_eq!(store.languages(), [Lang::En, Lang::Es]);
    assert_eq!(find(&store, "albergue"), 1);
    assert_eq!(find(&store, "boiler"), 1);
    drop(store);
    let store = PgStore::open(&url, &kb.name).expect("open");
    assert_eq!(store.languages(), [Lang::En, Lang::Es]);
    assert_eq!(store.info().language, Analyzer::Auto);
    assert_eq!(find(&store, "albergue"), 1);
    drop(store);
    let other = StoreInfo {
        language: Analyzer::Fixed(Lang::Es),
        ..info()
    };
    let Err(e) = PgStore::create(&url, &kb.name, other) else {
        panic!("another language was accepted");
    };
    assert!(
        matches!(&e, Error::Invalid(m) if m.contains("language auto")),
        "{e}"
    );
}

#[test]
fn a_knowledge_base_made_before_stemming_stays_plain() {
    let Some(url) = server() else { return };
    let kb = Kb::new(&url, "plain");
    let mut store = PgStore::create(
        &url,
        &kb.name,
        StoreInfo {
            language: Analyzer::Plain,
            ..info()
        },
    )
    .expect("create");
    let c = chunk(
        "/es.md",
        SourceKind::Markdown,
        0,
        "Los albergues de peregrinos",
    );
    store
        .put_file(&entry("/es.md", 1), &[c], &[unit(0)])
        .expect("put");
    let schema = store.schema().to_string();
    drop(store);
    // The info table as it was before stemming.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let sql = format!("ALTER TABLE {schema}.info DROP COLUMN language, DROP COLUMN languages");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("alter");
    });
    let store = PgStore::open(&url, &kb.name).expect("open");
    assert_eq!(store.info().language, Analyzer::Plain);
    assert_eq!(find(&store, "albergues"), 1);
    assert_eq!(
        find(&store, "albergue"),
        0,
        "no stems in an unstemmed index"
    );
}
