//! The two retrievers of the SQLite store and their filters. A [`Filter`] becomes SQL conditions on `chunks` (kind,
//! date range, sender; the path glob is matched in Rust against the `files` table and enters as a list of paths), so
//! both retrievers apply it exactly: BM25 through a join with FTS5, vectors through sqlite-vec's `rowid IN (...)`
//! restriction of its KNN scan, which returns the true top k among the matching chunks.

use globset::GlobBuilder;
use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use super::vector_blob;
use crate::fold::fold;
use crate::store::{Filter, Ranked};
use crate::{Error, Result};

/// Most results sqlite-vec returns from one KNN query.
pub const MAX_K: usize = 4096;

/// BM25 weights of the FTS columns (title, body): a title hit counts double.
const BM25_WEIGHTS: &str = "2.0, 1.0";

/// A filter as SQL over `chunks c`: ` AND `-joined conditions and their parameters, in order.
struct Conditions {
    sql: String,
    params: Vec<Value>,
}

/// The filter's conditions, or `None` when no chunk can match (the glob matches no file).
fn conditions(conn: &Connection, filter: &Filter) -> Result<Option<Conditions>> {
    let mut parts: Vec<String> = Vec::new();
    let mut params = Vec::new();
    if !filter.kinds.is_empty() {
        parts.push(format!(
            "c.kind IN ({})",
            vec!["?"; filter.kinds.len()].join(", ")
        ));
        params.extend(
            filter
                .kinds
                .iter()
                .map(|k| Value::Text(k.as_str().to_string())),
        );
    }
    if let Some(since) = filter.since {
        parts.push("c.date >= ?".into());
        params.push(Value::Integer(since));
    }
    if let Some(until) = filter.until {
        parts.push("c.date <= ?".into());
        params.push(Value::Integer(until));
    }
    if let Some(sender) = &filter.sender {
        parts.push("instr(lower(c.sender), ?) > 0".into());
        params.push(Value::Text(sender.to_lowercase()));
    }
    if let Some(glob) = &filter.path_glob {
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::Invalid(format!("path filter '{glob}': {e}")))?
            .compile_matcher();
        let mut st = conn.prepare_cached("SELECT path FROM files")?;
        let mut paths = Vec::new();
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let p: String = r.get(0)?;
            if matcher.is_match(&p) {
                paths.push(p);
            }
        }
        if paths.is_empty() {
            return Ok(None);
        }
        parts.push("c.path IN (SELECT value FROM json_each(?))".into());
        params.push(Value::Text(
            serde_json::to_string(&paths).map_err(|e| Error::Invalid(e.to_string()))?,
        ));
    }
    if parts.is_empty() {
        parts.push("1".into());
    }
    Ok(Some(Conditions {
        sql: parts.join(" AND "),
        params,
    }))
}

/// The FTS5 query for `terms`: each folded term as a quoted string (so nothing a user types is FTS syntax), any of
/// them matching. `None` when no term has a letter or digit.
fn match_query(terms: &[String]) -> Option<String> {
    let quoted: Vec<String> = terms
        .iter()
        .map(|t| fold(t))
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!quoted.is_empty()).then(|| quoted.join(" OR "))
}

pub(super) fn text(
    conn: &Connection,
    terms: &[String],
    k: usize,
    filter: &Filter,
) -> Result<Vec<Ranked>> {
    let Some(query) = match_query(terms) else {
        return Ok(Vec::new());
    };
    if k == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    let (sql, mut params) = if filter.is_empty() {
        (
            format!(
                "SELECT rowid, -bm25(fts, {BM25_WEIGHTS}) FROM fts WHERE fts MATCH ?
                 ORDER BY bm25(fts, {BM25_WEIGHTS}) LIMIT ?"
            ),
            vec![Value::Text(query)],
        )
    } else {
        let Some(cond) = conditions(conn, filter)? else {
            return Ok(Vec::new());
        };
        let mut params = vec![Value::Text(query)];
        params.extend(cond.params);
        (
            format!(
                "SELECT fts.rowid, -bm25(fts, {BM25_WEIGHTS}) FROM fts JOIN chunks c ON c.id = fts.rowid
                 WHERE fts MATCH ? AND {} ORDER BY bm25(fts, {BM25_WEIGHTS}) LIMIT ?",
                cond.sql
            ),
            params,
        )
    };
    params.push(Value::Integer(limit));
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(params), |r| {
        Ok(Ranked {
            id: r.get(0)?,
            score: r.get::<_, f64>(1)? as f32,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The `k` nearest chunks (at most [`MAX_K`]) by cosine similarity among those passing `filter`.
pub(super) fn vector(
    conn: &Connection,
    vector: &[f32],
    k: usize,
    filter: &Filter,
) -> Result<Vec<Ranked>> {
    if !vector.iter().all(|x| x.is_finite()) {
        return Err(Error::Invalid("query vector is not finite".into()));
    }
    if k == 0 || vector.iter().all(|x| *x == 0.0) {
        // A zero vector has no direction: nothing is similar to it.
        return Ok(Vec::new());
    }
    let k = k.min(MAX_K) as i64;
    let mut params = vec![Value::Blob(vector_blob(vector)), Value::Integer(k)];
    let sql = if filter.is_empty() {
        "SELECT id, distance FROM vec WHERE embedding MATCH ? AND k = ? ORDER BY distance"
            .to_string()
    } else {
        let Some(cond) = conditions(conn, filter)? else {
            return Ok(Vec::new());
        };
        params.extend(cond.params);
        format!(
            "SELECT id, distance FROM vec WHERE embedding MATCH ? AND k = ?
             AND id IN (SELECT c.id FROM chunks c WHERE {}) ORDER BY distance",
            cond.sql
        )
    };
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(params), |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, distance) = row?;
        // Unit vectors: cosine = 1 - d^2 / 2.
        if distance.is_finite() {
            out.push(Ranked {
                id,
                score: (1.0 - distance * distance / 2.0) as f32,
            });
        }
    }
    Ok(out)
}
