//! The default store: one SQLite file per knowledge base (WAL), FTS5 for BM25 and sqlite-vec for vectors.
//!
//! Schema (version [`SCHEMA_VERSION`], kept in `PRAGMA user_version`; `PRAGMA application_id` marks the file as a Lar
//! knowledge base): `info` (embedder, dim, schema version, the full-text language and the languages seen; a file
//! without the last two is read as unstemmed), `files` (one row per ingested file), `chunks` (text and
//! metadata, id = the chunk id the other tables are keyed by), `fts` (contentless FTS5 over the folded, stemmed
//! title and text, see [`crate::lang`]) and `vec` (a sqlite-vec `vec0` table of unit vectors compared by L2 distance, i.e. by cosine). A file's rows in all of them change
//! in one transaction, so a killed ingest leaves every file fully old or fully new.

#[cfg(test)]
mod lang_tests;
mod search;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{FileEntry, Filter, Ranked, Stats, StoreInfo, StoredChunk};
use crate::lang::{Analyzer, Lang};
use crate::{Chunk, Error, Location, Meta, Result, SourceKind};

/// Version of the schema this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;
/// `PRAGMA application_id` of a Lar knowledge base: "LARK".
const APPLICATION_ID: i64 = 0x4C41_524B;
/// Largest vector length sqlite-vec accepts.
const MAX_DIM: usize = 8192;
/// Vectors per sqlite-vec chunk (its blob unit); the largest it allows, fewest blobs to walk per query.
const VEC_CHUNK_SIZE: usize = 4096;

/// A knowledge base in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    info: StoreInfo,
    /// The languages chunks were stemmed in (the `languages` info row).
    langs: Vec<Lang>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("info", &self.info)
            .finish()
    }
}

/// Registers sqlite-vec with every SQLite connection this process opens from now on (once).
fn register_sqlite_vec() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        type EntryPoint = unsafe extern "C" fn(
            *mut rusqlite::ffi::sqlite3,
            *mut *mut std::ffi::c_char,
            *const rusqlite::ffi::sqlite3_api_routines,
        ) -> std::ffi::c_int;
        // SAFETY: `sqlite3_vec_init` is sqlite-vec's extension entry point, a C function with exactly the
        // (db, pzErrMsg, pApi) -> int signature SQLite calls auto extensions with; the sqlite-vec crate merely declares
        // it without parameters, so casting the function pointer back to its real type is sound. It is compiled with
        // SQLITE_CORE against the same bundled SQLite that rusqlite links, and registering is thread-safe in SQLite.
        let rc = unsafe {
            let entry = std::mem::transmute::<*const (), EntryPoint>(
                sqlite_vec::sqlite3_vec_init as *const (),
            );
            rusqlite::ffi::sqlite3_auto_extension(Some(entry))
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::error!("could not register sqlite-vec (SQLite code {rc})");
        }
    });
}

/// Little-endian bytes of a vector, the blob format sqlite-vec reads.
/// A vector as sqlite-vec stores it, scaled to unit length: the table compares by L2 distance, whose ranking on unit
/// vectors is the cosine's (`cos = 1 - d^2 / 2`), because sqlite-vec has an AVX kernel for L2 and only scalar code
/// for cosine (4x slower at 100k chunks). A zero vector stays zero.
pub(crate) fn vector_blob(v: &[f32]) -> Vec<u8> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().flat_map(|x| (x * scale).to_le_bytes()).collect()
}

fn store_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Store(format!("{}: {what}", path.display()))
}

/// Settings every connection gets: WAL (a killed writer loses at most its open transaction; readers never block the
/// writer), NORMAL sync (durable against a killed process; a power cut may lose the last commits, never consistency),
/// foreign keys, a busy timeout for a second process on the same file, and memory-mapped reads.
fn configure(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(store_err(
            path,
            format!("could not switch to WAL (journal mode is {mode})"),
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 1073741824; \
         PRAGMA cache_size = -32768;",
    )?;
    let version: std::result::Result<String, _> =
        conn.query_row("SELECT vec_version()", [], |r| r.get(0));
    if let Err(e) = version {
        return Err(store_err(
            path,
            format!("the sqlite-vec extension is not available ({e})"),
        ));
    }
    Ok(())
}

impl SqliteStore {
    /// Creates a new knowledge base at `path` (which must not exist) for vectors of `info.dim` from `info.embedder`.
    pub fn create(path: &Path, info: StoreInfo) -> Result<Self> {
        if info.dim == 0 || info.dim > MAX_DIM {
            return Err(Error::Invalid(format!(
                "vector length {} is out of range (1 to {MAX_DIM})",
                info.dim
            )));
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Invalid(format!(
                    "{}: already exists",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
        let made = Self::init(path, &info);
        if made.is_err() {
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
        made
    }

    fn init(path: &Path, info: &StoreInfo) -> Result<Self> {
        register_sqlite_vec();
        let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        // 8 KiB pages: fewer overflow pages to walk through sqlite-vec's large vector blobs.
        conn.execute_batch("PRAGMA page_size = 8192")?;
        configure(&conn, path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             CREATE TABLE info(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE files(
                 path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
                 chunks INTEGER NOT NULL);
             CREATE TABLE chunks(
                 id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL REFERENCES files(path),
                 kind TEXT NOT NULL, title TEXT, date INTEGER, sender TEXT, meta TEXT NOT NULL, loc TEXT NOT NULL,
                 ord INTEGER NOT NULL, text TEXT NOT NULL);
             CREATE INDEX chunks_path ON chunks(path, ord);
             CREATE INDEX chunks_kind ON chunks(kind);
             CREATE INDEX chunks_date ON chunks(date) WHERE date IS NOT NULL;
             CREATE VIRTUAL TABLE fts USING fts5(
                 title, body, content = '', contentless_delete = 1,
                 tokenize = 'unicode61 remove_diacritics 2');
             CREATE VIRTUAL TABLE vec USING vec0(
                 id INTEGER PRIMARY KEY, embedding float[{dim}] distance_metric=l2,
                 chunk_size={VEC_CHUNK_SIZE});",
            dim = info.dim
        ))?;
        {
            let mut put = tx.prepare("INSERT INTO info(key, value) VALUES (?1, ?2)")?;
            put.execute(params!["schema_version", SCHEMA_VERSION.to_string()])?;
            put.execute(params!["embedder", info.embedder])?;
            put.execute(params!["dim", info.dim.to_string()])?;
            put.execute(params!["language", info.language.name()])?;
        }
        tx.commit()?;
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            info: info.clone(),
            langs: Vec::new(),
        })
    }

    /// Opens an existing knowledge base and reads back what it was created with.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NotFound(path.display().to_string()));
        }
        register_sqlite_vec();
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let not_ours = |why: String| store_err(path, format!("not a Lar knowledge base ({why})"));
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(|e| not_ours(e.to_string()))?;
        if app != APPLICATION_ID {
            return Err(not_ours(format!("SQLite application id {app:#x}")));
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(store_err(
                path,
                format!(
                    "knowledge base schema version {version}; this Lar reads version {SCHEMA_VERSION}"
                ),
            ));
        }
        configure(&conn, path)?;
        let get = |key: &str| -> Result<String> {
            conn.query_row("SELECT value FROM info WHERE key = ?1", [key], |r| r.get(0))
                .optional()?
                .ok_or_else(|| store_err(path, format!("'{key}' is missing from the info table")))
        };
        let embedder = get("embedder")?;
        let dim_text = get("dim")?;
        let dim = dim_text
            .parse::<usize>()
            .ok()
            .filter(|d| (1..=MAX_DIM).contains(d))
            .ok_or_else(|| {
                store_err(
                    path,
                    format!("invalid vector length '{dim_text}' in the info table"),
                )
            })?;
        let optional = |key: &str| -> Result<Option<String>> {
            Ok(conn
                .query_row("SELECT value FROM info WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        };
        // Knowledge bases made before stemming have no language: folded words only, as they were indexed.
        let language = match optional("language")? {
            None => Analyzer::Plain,
            Some(l) => Analyzer::parse(&l).map_err(|e| store_err(path, e.to_string()))?,
        };
        let mut langs: Vec<Lang> = optional("languages")?
            .unwrap_or_default()
            .split(',')
            .filter_map(Lang::parse)
            .collect();
        langs.sort();
        Ok(SqliteStore {
            conn,
            path: path.to_path_buf(),
            info: StoreInfo {
                embedder,
                dim,
                language,
            },
            langs,
        })
    }

    /// Checks the file and the store's own invariants: SQLite's integrity check, the full-text index's, every file's
    /// chunk count matching its chunks, and one full-text entry and one vector per chunk. Returns the problems found.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        for row in st.query_map([], |r| r.get::<_, String>(0))? {
            let row = row?;
            if row != "ok" {
                problems.push(format!("integrity_check: {row}"));
            }
        }
        if let Err(e) = self
            .conn
            .execute("INSERT INTO fts(fts) VALUES ('integrity-check')", [])
        {
            problems.push(format!("full-text index: {e}"));
        }
        let mut st = self.conn.prepare(
            "SELECT f.path, f.chunks, (SELECT count(*) FROM chunks c WHERE c.path = f.path) FROM files f
             WHERE f.chunks != (SELECT count(*) FROM chunks c WHERE c.path = f.path)",
        )?;
        for row in st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            let (path, said, has) = row?;
            problems.push(format!("{path}: recorded {said} chunks, has {has}"));
        }
        let count = |sql: &str| -> Result<i64> { Ok(self.conn.query_row(sql, [], |r| r.get(0))?) };
        let chunks = count("SELECT count(*) FROM chunks")?;
        for (name, sql) in [
            ("full-text rows", "SELECT count(*) FROM fts"),
            ("vectors", "SELECT count(*) FROM vec"),
        ] {
            let n = count(sql)?;
            if n != chunks {
                problems.push(format!("{n} {name} for {chunks} chunks"));
            }
        }
        let missing = count("SELECT count(*) FROM chunks WHERE id NOT IN (SELECT id FROM vec)")?;
        if missing > 0 {
            problems.push(format!("{missing} chunks without a vector"));
        }
        Ok(problems)
    }

    /// Deletes every row of `path` from chunks, fts and vec (inside the caller's transaction).
    fn delete_chunks(conn: &Connection, path: &str) -> Result<()> {
        let ids = {
            let mut st = conn.prepare_cached("SELECT id FROM chunks WHERE path = ?1")?;
            st.query_map([path], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?
        };
        let mut del_fts = conn.prepare_cached("DELETE FROM fts WHERE rowid = ?1")?;
        let mut del_vec = conn.prepare_cached("DELETE FROM vec WHERE id = ?1")?;
        for id in &ids {
            del_fts.execute([id])?;
            del_vec.execute([id])?;
        }
        conn.prepare_cached("DELETE FROM chunks WHERE path = ?1")?
            .execute([path])?;
        Ok(())
    }

    fn validate(&self, file: &FileEntry, chunks: &[Chunk], vectors: &[Vec<f32>]) -> Result<()> {
        if chunks.len() != vectors.len() {
            return Err(Error::Invalid(format!(
                "{}: {} chunks but {} vectors",
                file.path,
                chunks.len(),
                vectors.len()
            )));
        }
        if let Some(c) = chunks.iter().find(|c| c.path != file.path) {
            return Err(Error::Invalid(format!(
                "{}: chunk {} belongs to {}",
                file.path, c.ord, c.path
            )));
        }
        for (i, v) in vectors.iter().enumerate() {
            if v.len() != self.info.dim {
                return Err(Error::Invalid(format!(
                    "{}: vector {i} has length {}, the knowledge base holds vectors of {} ({})",
                    file.path,
                    v.len(),
                    self.info.dim,
                    self.info.embedder
                )));
            }
            if !v.iter().all(|x| x.is_finite()) {
                return Err(Error::Invalid(format!(
                    "{}: vector {i} is not finite",
                    file.path
                )));
            }
        }
        Ok(())
    }
}

fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Invalid(format!("{what} {v} is too large")))
}

/// Builds a stored chunk from a `chunks` row selected as `id, path, kind, title, date, sender, meta, loc, ord, text`.
fn read_chunk(r: &rusqlite::Row<'_>) -> Result<StoredChunk> {
    let id: i64 = r.get(0)?;
    let corrupt = |what: &str| Error::Store(format!("chunk {id}: invalid {what}"));
    let kind: String = r.get(2)?;
    let meta: String = r.get(6)?;
    let loc: String = r.get(7)?;
    let ord: i64 = r.get(8)?;
    Ok(StoredChunk {
        id,
        chunk: Chunk {
            path: r.get(1)?,
            kind: SourceKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
            title: r.get(3)?,
            date: r.get(4)?,
            sender: r.get(5)?,
            meta: serde_json::from_str::<Meta>(&meta).map_err(|_| corrupt("metadata"))?,
            loc: serde_json::from_str::<Location>(&loc).map_err(|_| corrupt("location"))?,
            ord: u32::try_from(ord).map_err(|_| corrupt("position"))?,
            text: r.get(9)?,
        },
    })
}

impl super::Store for SqliteStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn files(&self) -> Result<Vec<FileEntry>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, sha256, size, mtime, chunks FROM files ORDER BY path")?;
        let rows = st.query_map([], |r| {
            Ok(FileEntry {
                path: r.get(0)?,
                sha256: r.get(1)?,
                size: r.get::<_, i64>(2)?.max(0) as u64,
                mtime: r.get(3)?,
                chunks: r.get::<_, i64>(4)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn put_file(&mut self, file: &FileEntry, chunks: &[Chunk], vectors: &[Vec<f32>]) -> Result<()> {
        self.validate(file, chunks, vectors)?;
        let size = to_i64("file size", file.size)?;
        let count = to_i64("chunk count", chunks.len() as u64)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::delete_chunks(&tx, &file.path)?;
        // The languages as stored now (another writer may have added one since this store was opened).
        let mut stored: Vec<Lang> = tx
            .query_row("SELECT value FROM info WHERE key = 'languages'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .unwrap_or_default()
            .split(',')
            .filter_map(Lang::parse)
            .collect();
        stored.sort();
        let mut langs = stored.clone();
        tx.prepare_cached(
            "INSERT INTO files(path, sha256, size, mtime, chunks) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
                 mtime = excluded.mtime, chunks = excluded.chunks",
        )?
        .execute(params![file.path, file.sha256, size, file.mtime, count])?;
        {
            let mut ins_chunk = tx.prepare_cached(
                "INSERT INTO chunks(path, kind, title, date, sender, meta, loc, ord, text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut ins_fts =
                tx.prepare_cached("INSERT INTO fts(rowid, title, body) VALUES (?1, ?2, ?3)")?;
            let mut ins_vec =
                tx.prepare_cached("INSERT INTO vec(id, embedding) VALUES (?1, ?2)")?;
            for (c, v) in chunks.iter().zip(vectors) {
                let (title, body, lang) = self
                    .info
                    .language
                    .index(c.title.as_deref().unwrap_or_default(), &c.text);
                if let Some(l) = lang.filter(|l| !langs.contains(l)) {
                    langs.push(l);
                }
                let meta =
                    serde_json::to_string(&c.meta).map_err(|e| Error::Invalid(e.to_string()))?;
                let loc =
                    serde_json::to_string(&c.loc).map_err(|e| Error::Invalid(e.to_string()))?;
                ins_chunk.execute(params![
                    file.path,
                    c.kind.as_str(),
                    c.title,
                    c.date,
                    c.sender,
                    meta,
                    loc,
                    c.ord,
                    c.text
                ])?;
                let id = tx.last_insert_rowid();
                ins_fts.execute(params![id, title, body])?;
                ins_vec.execute(params![id, vector_blob(v)])?;
            }
        }
        langs.sort();
        if langs != stored {
            let codes: Vec<&str> = langs.iter().map(|l| l.code()).collect();
            tx.prepare_cached("INSERT OR REPLACE INTO info(key, value) VALUES ('languages', ?1)")?
                .execute([codes.join(",")])?;
        }
        tx.commit()?;
        self.langs = langs;
        Ok(())
    }

    fn remove_file(&mut self, path: &str) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::delete_chunks(&tx, path)?;
        tx.prepare_cached("DELETE FROM files WHERE path = ?1")?
            .execute([path])?;
        tx.commit()?;
        Ok(())
    }

    fn text_search(&self, terms: &[String], k: usize, filter: &Filter) -> Result<Vec<Ranked>> {
        let terms = self.info.language.query(terms, &self.langs);
        search::text(&self.conn, &terms, k, filter)
    }

    fn languages(&self) -> Vec<Lang> {
        self.langs.clone()
    }

    fn vector_search(&self, vector: &[f32], k: usize, filter: &Filter) -> Result<Vec<Ranked>> {
        if vector.len() != self.info.dim {
            return Err(Error::Invalid(format!(
                "query vector has length {}, the knowledge base holds vectors of {} ({})",
                vector.len(),
                self.info.dim,
                self.info.embedder
            )));
        }
        search::vector(&self.conn, vector, k, filter)
    }

    fn chunks(&self, ids: &[i64]) -> Result<Vec<StoredChunk>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = serde_json::to_string(ids).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut st = self.conn.prepare_cached(
            "SELECT id, path, kind, title, date, sender, meta, loc, ord, text FROM chunks
             WHERE id IN (SELECT value FROM json_each(?1))",
        )?;
        let mut found = HashMap::new();
        let mut rows = st.query([list])?;
        while let Some(r) = rows.next()? {
            let c = read_chunk(r)?;
            found.insert(c.id, c);
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    fn stats(&self) -> Result<Stats> {
        let count = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))?.max(0) as u64)
        };
        let mut by_kind = Vec::new();
        let mut st = self
            .conn
            .prepare_cached("SELECT kind, count(*) FROM chunks GROUP BY kind ORDER BY kind")?;
        for row in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (kind, n) = row?;
            let kind = SourceKind::parse(&kind)
                .ok_or_else(|| Error::Store(format!("invalid chunk kind '{kind}'")))?;
            by_kind.push((kind, n.max(0) as u64));
        }
        by_kind.sort();
        let mut bytes = 0;
        for suffix in ["", "-wal"] {
            let mut p = self.path.as_os_str().to_owned();
            p.push(suffix);
            bytes += std::fs::metadata(PathBuf::from(p))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok(Stats {
            files: count("SELECT count(*) FROM files")?,
            chunks: count("SELECT count(*) FROM chunks")?,
            by_kind,
            bytes,
        })
    }
}
