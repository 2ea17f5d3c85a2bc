//! What the PostgreSQL store's test files share: the server from `LAR_TEST_POSTGRES_URL` (skipped without it
//! unless `LAR_REQUIRE_POSTGRES=1`), a knowledge base per test dropped at its end, and small chunk builders.
#![allow(dead_code)]

use lar_rag::store::postgres::PgStore;
use lar_rag::store::{FileEntry, StoreInfo};
use lar_rag::{Chunk, Location, Meta, SourceKind};

pub const DIM: usize = 16;

pub fn server() -> Option<String> {
    match std::env::var("LAR_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("LAR_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "LAR_REQUIRE_POSTGRES=1 but LAR_TEST_POSTGRES_URL is not set (scripts/postgres.sh start)"
                );
            }
            // Straight to stderr (test capture would hide eprintln!), once per run.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** lar-rag postgres tests SKIPPED: LAR_TEST_POSTGRES_URL not set \
                     (scripts/test.sh starts a server) ***\n"
                );
            });
            None
        }
    }
}

/// A knowledge base name unique to this test and process, dropped (with whatever it holds) when the test ends.
pub struct Kb {
    pub url: String,
    pub name: String,
}

impl Kb {
    pub fn new(url: &str, test: &str) -> Kb {
        let name = format!("t{}_{test}", std::process::id());
        let _ = PgStore::drop_kb(url, &name); // a leftover of a killed run with the same pid
        Kb {
            url: url.to_string(),
            name,
        }
    }

    pub fn create(&self) -> PgStore {
        PgStore::create(&self.url, &self.name, info()).expect("create")
    }
}

impl Drop for Kb {
    fn drop(&mut self) {
        let _ = PgStore::drop_kb(&self.url, &self.name);
    }
}

pub fn info() -> StoreInfo {
    StoreInfo {
        embedder: "test-embedder".into(),
        dim: DIM,
        language: lar_rag::lang::Analyzer::Auto,
    }
}

pub fn chunk(path: &str, kind: SourceKind, ord: u32, text: &str) -> Chunk {
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

pub fn entry(path: &str, chunks: usize) -> FileEntry {
    FileEntry {
        path: path.into(),
        sha256: format!("{:064x}", chunks),
        size: 100 + chunks as u64,
        mtime: 1_700_000_000,
        chunks: chunks as u64,
    }
}
