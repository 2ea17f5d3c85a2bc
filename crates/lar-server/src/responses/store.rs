//! Where `/v1/responses` keeps its answers for `previous_response_id`: a SQLite file (`responses.sqlite` in Lar's
//! home; in memory when none is set), one row per response with the conversation it ended (the messages, its own
//! output included) and the response object. A response asked with `store: false` is never written. Retention:
//! rows older than `max_age` and all but the newest `max_rows` are deleted as new ones come.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lar_types::ChatMessage;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

pub struct ResponseStore {
    path: Option<PathBuf>,
    conn: Mutex<Option<Connection>>,
    pub max_rows: usize,
    pub max_age: Duration,
}

/// A stored response: the conversation up to and including its output, and the response object.
pub struct Stored {
    pub messages: Vec<ChatMessage>,
    pub response: Value,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl ResponseStore {
    /// A store in the file `path` (created on first use), or in memory.
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            conn: Mutex::new(None),
            max_rows: 10_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> ApiResult<T> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let c = match &self.path {
                Some(p) => Connection::open(p),
                None => Connection::open_in_memory(),
            }
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode=WAL;
                     CREATE TABLE IF NOT EXISTS responses (
                         id TEXT PRIMARY KEY, created INTEGER NOT NULL,
                         messages TEXT NOT NULL, response TEXT NOT NULL);
                     CREATE INDEX IF NOT EXISTS responses_created ON responses(created);",
                )?;
                Ok(c)
            })
            .map_err(|e| ApiError::internal(format!("the responses store: {e}")))?;
            *g = Some(c);
        }
        let c = g
            .as_ref()
            .ok_or_else(|| ApiError::internal("the responses store is not open"))?;
        f(c).map_err(|e| ApiError::internal(format!("the responses store: {e}")))
    }

    pub fn put(&self, id: &str, messages: &[ChatMessage], response: &Value) -> ApiResult<()> {
        let msgs = serde_json::to_string(messages).map_err(ApiError::internal)?;
        let (max_rows, oldest) = (self.max_rows as i64, now() - self.max_age.as_secs() as i64);
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO responses (id, created, messages, response) VALUES (?1, ?2, ?3, ?4)",
                params![id, now(), msgs, response.to_string()],
            )?;
            c.execute("DELETE FROM responses WHERE created < ?1", params![oldest])?;
            c.execute(
                "DELETE FROM responses WHERE id NOT IN (SELECT id FROM responses ORDER BY created DESC, rowid DESC LIMIT ?1)",
                params![max_rows],
            )?;
            Ok(())
        })
    }

    pub fn get(&self, id: &str) -> ApiResult<Option<Stored>> {
        let row: Option<(String, String)> = self.with(|c| {
            c.query_row(
                "SELECT messages, response FROM responses WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })?;
        let Some((m, r)) = row else { return Ok(None) };
        Ok(Some(Stored {
            messages: serde_json::from_str(&m).map_err(ApiError::internal)?,
            response: serde_json::from_str(&r).map_err(ApiError::internal)?,
        }))
    }

    /// Deletes a response; whether there was one.
    pub fn delete(&self, id: &str) -> ApiResult<bool> {
        self.with(|c| c.execute("DELETE FROM responses WHERE id = ?1", params![id]))
            .map(|n| n > 0)
    }
}
