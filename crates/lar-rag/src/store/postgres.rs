//! The scale-out store: PostgreSQL with pgvector behind the same [`super::Store`] trait. One schema per knowledge base
//! (`lar_<name>`) with three tables: `info` (embedder, vector length, schema version), `files` (one row per ingested
//! file) and `chunks` (the chunk with its metadata, a `tsvector` and a `vector(DIM)`, deleted with their file).
//!
//! Full text: the `tsvector` is `to_tsvector('simple', ...)` of the chunk's title and text cut into words by
//! [`crate::fold::terms`] in Rust, stemmed as the knowledge base's [`crate::lang::Analyzer`] says, and joined by
//! spaces, so folding, stems and word boundaries are the same as the SQLite store's whatever the server's locale; queries are the same words OR-ed in `to_tsquery('simple', ...)` (only
//! letters and digits reach it, as a bind parameter) and ranked by `ts_rank_cd`. Vectors: an HNSW index with
//! `vector_cosine_ops` (vector lengths up to 2000; longer ones are searched exactly, without an index), searched with
//! pgvector 0.8's iterative scan so filtered searches still find `k` results, and exactly when it did not.
//!
//! The trait is synchronous: the store owns a current-thread tokio runtime and blocks on it, so it must not be used
//! from inside another tokio runtime's worker (use `spawn_blocking` there). It does not start or manage servers:
//! `scripts/postgres.sh` starts one for the tests.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use pgvector::Vector;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

mod rows;

pub use rows::glob_to_regex;
use rows::*;

use super::{FileEntry, Filter, Ranked, Stats, Store, StoreInfo, StoredChunk};
use crate::lang::{Analyzer, Lang};
use crate::{Chunk, Error, Result, fold};

/// Version of the schema below, recorded in `info` and checked on open.
const SCHEMA_VERSION: i32 = 1;
/// Longest vector pgvector's HNSW index takes for the `vector` type; longer ones are searched without an index.
const HNSW_MAX_DIM: usize = 2000;
/// Longest vector the `vector` type stores.
const MAX_DIM: usize = 16000;
/// Advisory lock key serializing knowledge base creation (CREATE EXTENSION races with itself otherwise).
const CREATE_LOCK: i64 = 0x006c_6172_5f72_6167; // "lar_rag"
/// The columns a [`StoredChunk`] is read from, in [`row_to_chunk`]'s order.
const CHUNK_COLUMNS: &str = "id, path, kind, title, date, sender, meta::text, page, heading, speaker, start_ts, \
                             end_ts, ord, text";

/// A knowledge base kept in a PostgreSQL schema.
pub struct PgStore {
    rt: tokio::runtime::Runtime,
    pool: PgPool,
    /// `lar_<kb>`: checked to be `[a-z0-9_]` only, so it is written into SQL as is.
    schema: String,
    info: StoreInfo,
    /// The languages chunks were stemmed in (the info row's `languages`).
    langs: Vec<Lang>,
}

impl PgStore {
    /// Creates knowledge base `kb` in the database at `url` (installing the `vector` extension if the database lacks
    /// it). If it exists already it is opened, provided it was made for the same embedder and vector length.
    pub fn create(url: &str, kb: &str, info: StoreInfo) -> Result<Self> {
        let schema = schema_name(kb)?;
        if info.dim == 0 || info.dim > MAX_DIM {
            return Err(Error::Invalid(format!(
                "vector length {} is not one PostgreSQL can store (1..={MAX_DIM})",
                info.dim
            )));
        }
        let (rt, pool) = connect(url)?;
        let stored = rt.block_on(async {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(CREATE_LOCK)
                .execute(&mut *tx)
                .await?;
            if let Some(stored) = read_info(&mut tx, kb, &schema).await? {
                return Ok::<_, Error>(Some(stored));
            }
            let has_vector: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')",
            )
            .fetch_one(&mut *tx)
            .await?;
            if !has_vector {
                sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        Error::Store(format!(
                            "the pgvector extension is not installed and cannot be created ({e})"
                        ))
                    })?;
            }
            for ddl in schema_ddl(&schema, info.dim) {
                sqlx::query(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
            }
            let sql = format!(
                "INSERT INTO {schema}.info (version, embedder, dim, language) VALUES ($1, $2, $3, $4)"
            );
            sqlx::query(AssertSqlSafe(sql))
                .bind(SCHEMA_VERSION)
                .bind(&info.embedder)
                .bind(dim_i32(info.dim)?)
                .bind(info.language.name())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(None)
        })?;
        let mut langs = Vec::new();
        if let Some((stored, seen)) = stored {
            if stored.embedder != info.embedder || stored.dim != info.dim {
                return Err(Error::Invalid(format!(
                    "knowledge base '{kb}' exists with embedder {} ({} dimensions), not {} ({} dimensions)",
                    stored.embedder, stored.dim, info.embedder, info.dim
                )));
            }
            if stored.language != info.language {
                return Err(Error::Invalid(format!(
                    "knowledge base '{kb}' exists with language {}, not {}",
                    stored.language.name(),
                    info.language.name()
                )));
            }
            langs = seen;
        }
        Ok(PgStore {
            rt,
            pool,
            schema,
            info,
            langs,
        })
    }

    /// Opens knowledge base `kb`; [`Error::NotFound`] if the database has none by that name.
    pub fn open(url: &str, kb: &str) -> Result<Self> {
        let schema = schema_name(kb)?;
        let (rt, pool) = connect(url)?;
        let info = rt.block_on(async {
            let mut conn = pool.acquire().await?;
            read_info(&mut conn, kb, &schema).await
        })?;
        let (info, langs) = info.ok_or_else(|| Error::NotFound(kb.to_string()))?;
        Ok(PgStore {
            rt,
            pool,
            schema,
            info,
            langs,
        })
    }

    /// Deletes knowledge base `kb` and everything in it; [`Error::NotFound`] if there is none by that name.
    pub fn drop_kb(url: &str, kb: &str) -> Result<()> {
        let schema = schema_name(kb)?;
        let (rt, pool) = connect(url)?;
        let dropped = rt.block_on(async {
            let mut tx = pool.begin().await?;
            // Only drop what looks like ours: a schema without our info table is left alone.
            let ours = has_info_table(&mut tx, &schema).await?;
            if ours {
                let sql = format!("DROP SCHEMA {schema} CASCADE");
                sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            pool.close().await;
            Ok::<_, Error>(ours)
        })?;
        if dropped {
            Ok(())
        } else {
            Err(Error::NotFound(kb.to_string()))
        }
    }

    /// The schema this knowledge base lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn check_dim(&self, len: usize) -> Result<()> {
        if len == self.info.dim {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "vector of length {len} for a knowledge base of {}-dimensional vectors ({})",
                self.info.dim, self.info.embedder
            )))
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Close the connections politely, unless this runs inside another runtime (block_on would panic there).
        if tokio::runtime::Handle::try_current().is_err() {
            self.rt.block_on(self.pool.close());
        }
    }
}

impl Store for PgStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn languages(&self) -> Vec<Lang> {
        self.langs.clone()
    }

    fn files(&self) -> Result<Vec<FileEntry>> {
        let sql = format!(
            "SELECT path, sha256, size, mtime, chunks FROM {}.files ORDER BY path",
            self.schema
        );
        let rows = self
            .rt
            .block_on(sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool))?;
        rows.iter()
            .map(|r| {
                Ok(FileEntry {
                    path: r.try_get(0)?,
                    sha256: r.try_get(1)?,
                    size: to_u64(r.try_get(2)?, "size")?,
                    mtime: r.try_get(3)?,
                    chunks: to_u64(r.try_get(4)?, "chunks")?,
                })
            })
            .collect()
    }

    fn put_file(&mut self, file: &FileEntry, chunks: &[Chunk], vectors: &[Vec<f32>]) -> Result<()> {
        if chunks.len() != vectors.len() {
            return Err(Error::Invalid(format!(
                "{}: {} chunks but {} vectors",
                file.path,
                chunks.len(),
                vectors.len()
            )));
        }
        for v in vectors {
            self.check_dim(v.len())?;
        }
        let size = i64::try_from(file.size)
            .map_err(|_| Error::Invalid(format!("{}: size too large", file.path)))?;
        let n =
            i64::try_from(chunks.len()).map_err(|_| Error::Invalid("too many chunks".into()))?;
        let mut langs = self.langs.clone();
        let rows = ChunkColumns::new(chunks, vectors, self.info.language, &mut langs)?;
        let s = &self.schema;
        // New languages are merged into the stored list in one statement (another writer may have added some).
        let codes: Vec<String> = langs.iter().map(|l| l.code().to_string()).collect();
        let new_langs = (langs != self.langs).then(|| {
            (
                format!(
                    "UPDATE {s}.info SET languages = (SELECT coalesce(string_agg(DISTINCT l, ',' ORDER BY l), '') \
                     FROM unnest(string_to_array(languages, ',') || $1::text[]) AS l WHERE l <> '') \
                     RETURNING languages"
                ),
                codes,
            )
        });
        let upsert = format!(
            "INSERT INTO {s}.files (path, sha256, size, mtime, chunks) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (path) DO UPDATE SET sha256 = EXCLUDED.sha256, size = EXCLUDED.size, \
             mtime = EXCLUDED.mtime, chunks = EXCLUDED.chunks"
        );
        let delete = format!("DELETE FROM {s}.chunks WHERE file = $1");
        let insert = format!(
            "INSERT INTO {s}.chunks (file, path, kind, title, date, sender, meta, page, heading, speaker, start_ts, \
             end_ts, ord, text, tsv, embedding) \
             SELECT $1, t.path, t.kind, t.title, t.date, t.sender, t.meta::jsonb, t.page, t.heading, t.speaker, \
             t.start_ts, t.end_ts, t.ord, t.text, to_tsvector('simple', t.words), t.embedding \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], $7::text[], $8::int8[], \
             $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], $14::text[], $15::text[], \
             $16::vector[]) WITH ORDINALITY \
             AS t(path, kind, title, date, sender, meta, page, heading, speaker, start_ts, end_ts, ord, text, words, \
             embedding, n) ORDER BY t.n"
        );
        let path = pg_text(&file.path);
        let merged = self
            .rt
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                sqlx::query(AssertSqlSafe(upsert))
                    .bind(&path)
                    .bind(pg_text(&file.sha256))
                    .bind(size)
                    .bind(file.mtime)
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(AssertSqlSafe(delete))
                    .bind(&path)
                    .execute(&mut *tx)
                    .await?;
                if !chunks.is_empty() {
                    let c = rows;
                    sqlx::query(AssertSqlSafe(insert))
                        .bind(&path)
                        .bind(c.path)
                        .bind(c.kind)
                        .bind(c.title)
                        .bind(c.date)
                        .bind(c.sender)
                        .bind(c.meta)
                        .bind(c.page)
                        .bind(c.heading)
                        .bind(c.speaker)
                        .bind(c.start)
                        .bind(c.end)
                        .bind(c.ord)
                        .bind(c.text)
                        .bind(c.words)
                        .bind(c.embedding)
                        .execute(&mut *tx)
                        .await?;
                }
                let mut merged = None;
                if let Some((sql, codes)) = new_langs {
                    let all: String = sqlx::query_scalar(AssertSqlSafe(sql))
                        .bind(codes)
                        .fetch_one(&mut *tx)
                        .await?;
                    merged = Some(all);
                }
                tx.commit().await?;
                Ok::<_, Error>(merged)
            })?
            .map(|all| {
                let mut l: Vec<Lang> = all.split(',').filter_map(Lang::parse).collect();
                l.sort();
                l
            });
        if let Some(l) = merged {
            self.langs = l;
        }
        Ok(())
    }

    fn remove_file(&mut self, path: &str) -> Result<()> {
        // The chunks go with the file row (ON DELETE CASCADE), in the statement's own transaction.
        let sql = format!("DELETE FROM {}.files WHERE path = $1", self.schema);
        self.rt.block_on(
            sqlx::query(AssertSqlSafe(sql))
                .bind(pg_text(path))
                .execute(&self.pool),
        )?;
        Ok(())
    }

    fn text_search(&self, terms: &[String], k: usize, filter: &Filter) -> Result<Vec<Ranked>> {
        let terms = self.info.language.query(terms, &self.langs);
        // Re-folding keeps only letters and digits, whatever the caller passed: nothing in the query string is
        // tsquery syntax but the `|` put here.
        let mut words: Vec<String> = terms.iter().flat_map(|t| fold::terms(t)).collect();
        words.sort();
        words.dedup();
        if words.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut q = SqlArgs::default();
        let query = q.bind(Arg::Text(words.join(" | ")));
        let cond = filter_sql(filter, &mut q);
        let sql = format!(
            "SELECT c.id, ts_rank_cd(c.tsv, q.q, 1)::float4 AS score \
             FROM {}.chunks c, to_tsquery('simple', {query}) AS q(q) \
             WHERE c.tsv @@ q.q{cond} ORDER BY score DESC, c.id LIMIT {}",
            self.schema,
            limit(k)
        );
        let rows = self.rt.block_on(q.query(&sql).fetch_all(&self.pool))?;
        rows.iter().map(to_ranked).collect()
    }

    fn vector_search(&self, vector: &[f32], k: usize, filter: &Filter) -> Result<Vec<Ranked>> {
        self.check_dim(vector.len())?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let mut q = SqlArgs::default();
        let v = q.bind(Arg::Vector(Vector::from(vector.to_vec())));
        let cond = filter_sql(filter, &mut q);
        // Relaxed order (iterative scan) may hand rows back slightly out of order: the outer query sorts them.
        let sql = format!(
            "WITH r AS MATERIALIZED (SELECT c.id, c.embedding <=> {v} AS d FROM {}.chunks c WHERE true{cond} \
             ORDER BY d LIMIT {}) SELECT id, (1 - d)::float4 AS score FROM r ORDER BY d + 0, id",
            self.schema,
            limit(k)
        );
        let ef_search = k.clamp(40, 1000).to_string();
        let exact_if_short = !filter.is_empty() || k > 1000;
        self.rt.block_on(async {
            let mut tx = self.pool.begin().await?;
            set_local(&mut tx, "hnsw.ef_search", &ef_search).await?;
            set_local(&mut tx, "hnsw.iterative_scan", "relaxed_order").await?;
            let mut rows = q.query(&sql).fetch_all(&mut *tx).await?;
            if rows.len() < k && exact_if_short {
                // The iterative scan gives up after hnsw.max_scan_tuples: when it found fewer than k rows, ask
                // again without the index, which is exact (and is what the planner picks for selective filters).
                set_local(&mut tx, "enable_indexscan", "off").await?;
                set_local(&mut tx, "enable_seqscan", "on").await?;
                rows = q.query(&sql).fetch_all(&mut *tx).await?;
            }
            tx.rollback().await?;
            rows.iter().map(to_ranked).collect()
        })
    }

    fn chunks(&self, ids: &[i64]) -> Result<Vec<StoredChunk>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM {}.chunks WHERE id = ANY($1)",
            self.schema
        );
        let rows = self.rt.block_on(
            sqlx::query(AssertSqlSafe(sql))
                .bind(ids.to_vec())
                .fetch_all(&self.pool),
        )?;
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in &rows {
            let c = row_to_chunk(row)?;
            by_id.insert(c.id, c);
        }
        Ok(ids.iter().filter_map(|id| by_id.get(id).cloned()).collect())
    }

    fn stats(&self) -> Result<Stats> {
        let s = &self.schema;
        let counts =
            format!("SELECT (SELECT count(*) FROM {s}.files), (SELECT count(*) FROM {s}.chunks)");
        let kinds = format!("SELECT kind, count(*) FROM {s}.chunks GROUP BY kind");
        let bytes = "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'";
        self.rt.block_on(async {
            let mut conn = self.pool.acquire().await?;
            let (files, chunks): (i64, i64) = sqlx::query_as(AssertSqlSafe(counts))
                .fetch_one(&mut *conn)
                .await?;
            let kind_rows: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(kinds))
                .fetch_all(&mut *conn)
                .await?;
            let bytes: i64 = sqlx::query_scalar(bytes)
                .bind(s)
                .fetch_one(&mut *conn)
                .await?;
            let mut by_kind = kind_rows
                .into_iter()
                .map(|(k, n)| Ok((parse_kind(&k)?, to_u64(n, "count")?)))
                .collect::<Result<Vec<_>>>()?;
            by_kind.sort();
            Ok(Stats {
                files: to_u64(files, "count")?,
                chunks: to_u64(chunks, "count")?,
                by_kind,
                bytes: to_u64(bytes, "size")?,
            })
        })
    }
}

/// `lar_<kb>` for a knowledge base name of lower-case ASCII letters, digits and `_` (at most 59, PostgreSQL's
/// identifiers being 63 bytes long); any other name is refused rather than rewritten, so that two names never share
/// a schema.
pub fn schema_name(kb: &str) -> Result<String> {
    let ok = !kb.is_empty()
        && kb.len() <= 59
        && kb
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(format!("lar_{kb}"))
    } else {
        Err(Error::Invalid(format!(
            "knowledge base name '{kb}' cannot be used with PostgreSQL: use 1 to 59 lower-case letters (a-z), digits \
             and '_'"
        )))
    }
}

/// The tables and indexes of a knowledge base in `schema` (already checked to be a plain identifier).
fn schema_ddl(s: &str, dim: usize) -> Vec<String> {
    let mut ddl = vec![
        format!("CREATE SCHEMA {s}"),
        format!(
            "CREATE TABLE {s}.info (one bool PRIMARY KEY DEFAULT true CHECK (one), version int4 NOT NULL, \
             embedder text NOT NULL, dim int4 NOT NULL, language text NOT NULL DEFAULT 'none', \
             languages text NOT NULL DEFAULT '')"
        ),
        format!(
            "CREATE TABLE {s}.files (path text PRIMARY KEY, sha256 text NOT NULL, size int8 NOT NULL, \
             mtime int8 NOT NULL, chunks int8 NOT NULL)"
        ),
        format!(
            "CREATE TABLE {s}.chunks (id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             file text NOT NULL REFERENCES {s}.files (path) ON DELETE CASCADE, \
             path text NOT NULL, kind text NOT NULL, title text, date int8, sender text, \
             meta jsonb NOT NULL DEFAULT '{{}}', page int8, heading text, speaker text, start_ts text, end_ts text, \
             ord int8 NOT NULL, text text NOT NULL, tsv tsvector NOT NULL, embedding vector({dim}) NOT NULL)"
        ),
        format!("CREATE INDEX chunks_file ON {s}.chunks (file)"),
        format!("CREATE INDEX chunks_tsv ON {s}.chunks USING gin (tsv)"),
    ];
    if dim <= HNSW_MAX_DIM {
        ddl.push(format!(
            "CREATE INDEX chunks_embedding ON {s}.chunks USING hnsw (embedding vector_cosine_ops)"
        ));
    }
    ddl
}

/// Connects with a small pool (the store is used from one thread at a time) on a runtime of its own.
fn connect(url: &str) -> Result<(tokio::runtime::Runtime, PgPool)> {
    let opts = PgConnectOptions::from_str(url)
        .map_err(|e| Error::Invalid(format!("PostgreSQL URL {}: {e}", redact(url))))?
        .application_name("lar");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the PostgreSQL client runtime", e))?;
    // One connection first, alone: the pool retries refused connections until its acquire timeout, and a wrong
    // URL should fail at once.
    let pool = rt.block_on(async {
        let conn = PgConnection::connect_with(&opts).await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(30))
                .connect_lazy_with(opts),
        )
    });
    let pool = pool.map_err(|e| {
        Error::Store(format!(
            "cannot connect to PostgreSQL at {}: {e}",
            redact(url)
        ))
    })?;
    Ok((rt, pool))
}

/// The URL with its password (if any) replaced by `***`, for messages and listings.
pub fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..]),
        None => url.to_string(),
    }
}

/// The stored settings of knowledge base `kb`, or `None` if its schema does not exist.
/// The info row: what the knowledge base was made with, and the languages its chunks were stemmed in. Knowledge
/// bases made before stemming have no language columns: they read as unstemmed.
async fn read_info(
    conn: &mut PgConnection,
    kb: &str,
    schema: &str,
) -> Result<Option<(StoreInfo, Vec<Lang>)>> {
    if !has_info_table(conn, schema).await? {
        let has_schema: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&mut *conn)
                .await?;
        if has_schema {
            return Err(Error::Invalid(format!(
                "schema {schema} exists but is not a lar knowledge base; knowledge base '{kb}' cannot use it"
            )));
        }
        return Ok(None);
    }
    let sql = format!(
        "SELECT version, embedder, dim, to_jsonb(i)->>'language', to_jsonb(i)->>'languages' FROM {schema}.info i"
    );
    type Row = (i32, String, i32, Option<String>, Option<String>);
    let row: Option<Row> = sqlx::query_as(AssertSqlSafe(sql))
        .fetch_optional(&mut *conn)
        .await?;
    let Some((version, embedder, dim, language, languages)) = row else {
        return Err(Error::Store(format!(
            "knowledge base '{kb}': its info row is missing"
        )));
    };
    if version != SCHEMA_VERSION {
        return Err(Error::Invalid(format!(
            "knowledge base '{kb}' has schema version {version}; this lar reads version {SCHEMA_VERSION}"
        )));
    }
    let dim = usize::try_from(dim)
        .map_err(|_| Error::Store(format!("knowledge base '{kb}': bad dim {dim}")))?;
    let language = match language {
        None => Analyzer::Plain,
        Some(l) => {
            Analyzer::parse(&l).map_err(|e| Error::Store(format!("knowledge base '{kb}': {e}")))?
        }
    };
    let mut langs: Vec<Lang> = languages
        .unwrap_or_default()
        .split(',')
        .filter_map(Lang::parse)
        .collect();
    langs.sort();
    Ok(Some((
        StoreInfo {
            embedder,
            dim,
            language,
        },
        langs,
    )))
}

/// Whether `schema` has the `info` table of a knowledge base.
async fn has_info_table(conn: &mut PgConnection, schema: &str) -> Result<bool> {
    let has: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'info')",
    )
    .bind(schema)
    .fetch_one(conn)
    .await?;
    Ok(has)
}

/// `SET LOCAL name = value`, with the value bound.
async fn set_local(conn: &mut PgConnection, name: &str, value: &str) -> Result<()> {
    sqlx::query("SELECT set_config($1, $2, true)")
        .bind(name)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! What needs no server; tests/postgres.rs runs the store against one.
    use super::*;

    #[test]
    fn schema_names() {
        assert_eq!(schema_name("notes_2024").unwrap(), "lar_notes_2024");
        for bad in [
            "",
            "Notes",
            "my-notes",
            "a b",
            "x;drop",
            "ñ",
            &"a".repeat(60),
        ] {
            assert!(
                matches!(schema_name(bad), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(schema_name(&"a".repeat(59)).is_ok());
    }

    #[test]
    fn globs() {
        assert_eq!(glob_to_regex("/a/*.md"), "^\\/a\\/[^/]*\\.md$");
        assert_eq!(glob_to_regex("**/x?"), "^(.*/)?x[^/]$");
        assert_eq!(glob_to_regex("/a/**"), "^\\/a\\/.*$");
        assert_eq!(
            glob_to_regex("(a)[b]{c}+|$^"),
            "^\\(a\\)\\[b\\]\\{c\\}\\+\\|\\$\\^$"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(pg_text("a\0b"), "ab");
    }
}
