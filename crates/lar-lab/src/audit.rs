//! The audit log: one record per generation (`lar serve --audit`, `lar run --audit`), for whoever must later show
//! what a model was asked and answered: when, by which route and key, with which model file (its sha256) and
//! parameters, the prompt's and the output's sha256 (or their full text when asked), the knowledge-base sources put
//! before the model, token counts and how it ended. Off unless asked for, and private by construction: it lives in
//! `$LAR_HOME/audit.sqlite` on this machine, keys appear only as a fingerprint (`key-` and 8 hex digits of their
//! sha256), and without `--audit-text` no text at all. Append-only: SQLite triggers refuse every UPDATE and DELETE.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS generations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    route TEXT,
    request_id TEXT,
    key TEXT,
    model TEXT NOT NULL,
    model_sha256 TEXT,
    params TEXT NOT NULL,
    prompt_sha256 TEXT NOT NULL,
    output_sha256 TEXT NOT NULL,
    prompt TEXT,
    output TEXT,
    sources TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS generations_time ON generations(time);
CREATE TRIGGER IF NOT EXISTS generations_no_update BEFORE UPDATE ON generations
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS generations_no_delete BEFORE DELETE ON generations
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// One generation, as recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Assigned by the log.
    #[serde(default)]
    pub id: i64,
    /// Unix seconds; set by [`AuditLog::append`] when 0.
    pub time: f64,
    /// `serve` or `run`.
    pub source: String,
    pub route: Option<String>,
    pub request_id: Option<String>,
    /// The key's fingerprint ([`key_fingerprint`]).
    pub key: Option<String>,
    pub model: String,
    pub model_sha256: Option<String>,
    /// The sampling parameters, as JSON.
    pub params: serde_json::Value,
    pub prompt_sha256: String,
    pub output_sha256: String,
    /// The full texts, only with `--audit-text`.
    pub prompt: Option<String>,
    pub output: Option<String>,
    /// The knowledge-base sources given to the model (their paths).
    pub sources: Vec<String>,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// `stop`, `length`, `tool_calls`, `cancelled`, `error`...
    pub finish: String,
}

impl Record {
    /// A record of `prompt` and `output`: their sha256 always, the texts themselves only when `keep_text`.
    pub fn of_texts(prompt: &str, output: &str, keep_text: bool) -> Record {
        Record {
            prompt_sha256: sha256_hex(prompt.as_bytes()),
            output_sha256: sha256_hex(output.as_bytes()),
            prompt: keep_text.then(|| prompt.to_string()),
            output: keep_text.then(|| output.to_string()),
            ..Record::default()
        }
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// What the log shows of an API key: `key-` and the first 8 hex digits of its sha256.
pub fn key_fingerprint(key: &str) -> String {
    format!("key-{}", &sha256_hex(key.as_bytes())[..8])
}

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Unix seconds, inclusive.
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// The model's name, or a prefix of its sha256.
    pub model: Option<String>,
    /// A key's fingerprint, or the key itself.
    pub key: Option<String>,
    pub source: Option<String>,
    /// The newest this many (all by default).
    pub limit: Option<usize>,
}

/// The audit log of a Lar home; shared by the server's requests (one connection behind a lock).
pub struct AuditLog {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.path.display())
    }
}

impl AuditLog {
    /// Opens (creating it when needed) the audit log of the Lar home `home`.
    pub fn open_home(home: &Path) -> Result<AuditLog> {
        std::fs::create_dir_all(home).map_err(|e| Error::Io(home.display().to_string(), e))?;
        let path = home.join("audit.sqlite");
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(AuditLog {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `r` (stamped now when its time is 0); its id.
    pub fn append(&self, r: &Record) -> Result<i64> {
        let time = if r.time > 0.0 {
            r.time
        } else {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let params_json = serde_json::to_string(&r.params).unwrap_or_else(|_| "null".into());
        let sources_json = serde_json::to_string(&r.sources).unwrap_or_else(|_| "[]".into());
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT INTO generations (time, source, route, request_id, key, model, model_sha256, params,
                prompt_sha256, output_sha256, prompt, output, sources, prompt_tokens, completion_tokens, finish)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                time,
                r.source,
                r.route,
                r.request_id,
                r.key,
                r.model,
                r.model_sha256,
                params_json,
                r.prompt_sha256,
                r.output_sha256,
                r.prompt,
                r.output,
                sources_json,
                r.prompt_tokens as i64,
                r.completion_tokens as i64,
                r.finish,
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The records `f` selects, oldest first.
    pub fn query(&self, f: &Filter) -> Result<Vec<Record>> {
        let key = f.key.as_ref().map(|k| {
            if k.starts_with("key-") && k.len() == 12 {
                k.clone()
            } else {
                key_fingerprint(k)
            }
        });
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = conn.prepare(
            "SELECT id, time, source, route, request_id, key, model, model_sha256, params, prompt_sha256,
                    output_sha256, prompt, output, sources, prompt_tokens, completion_tokens, finish
             FROM generations
             WHERE (?1 IS NULL OR time >= ?1) AND (?2 IS NULL OR time <= ?2)
               AND (?3 IS NULL OR model = ?3 OR model_sha256 LIKE ?3 || '%')
               AND (?4 IS NULL OR key = ?4) AND (?5 IS NULL OR source = ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let limit = f.limit.map_or(-1, |n| n as i64);
        let rows = st.query_map(
            params![f.since, f.until, f.model, key, f.source, limit],
            |row| {
                let params: String = row.get(8)?;
                let sources: String = row.get(13)?;
                Ok(Record {
                    id: row.get(0)?,
                    time: row.get(1)?,
                    source: row.get(2)?,
                    route: row.get(3)?,
                    request_id: row.get(4)?,
                    key: row.get(5)?,
                    model: row.get(6)?,
                    model_sha256: row.get(7)?,
                    params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
                    prompt_sha256: row.get(9)?,
                    output_sha256: row.get(10)?,
                    prompt: row.get(11)?,
                    output: row.get(12)?,
                    sources: serde_json::from_str(&sources).unwrap_or_default(),
                    prompt_tokens: row.get::<_, i64>(14)? as usize,
                    completion_tokens: row.get::<_, i64>(15)? as usize,
                    finish: row.get(16)?,
                })
            },
        )?;
        let mut out = rows.collect::<std::result::Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_queries_and_refuses_to_forget() {
        let d = tempfile::tempdir().unwrap();
        let log = AuditLog::open_home(d.path()).unwrap();
        let mut a = Record::of_texts("What is the rent?", "1,250 euros [1].", false);
        a.source = "serve".into();
        a.model = "smollm2".into();
        a.model_sha256 = Some("abcdef0123".into());
        a.key = Some(key_fingerprint("secret"));
        a.sources = vec!["/docs/lease.pdf".into()];
        a.params = serde_json::json!({"temperature": 0.0});
        a.finish = "stop".into();
        let mut b = Record::of_texts("hi", "hello", true);
        b.source = "run".into();
        b.model = "qwen".into();
        b.finish = "length".into();
        let ia = log.append(&a).unwrap();
        let ib = log.append(&b).unwrap();
        assert!(ib > ia);
        let all = log.query(&Filter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].prompt, None, "no text unless asked");
        assert_eq!(all[0].prompt_sha256, sha256_hex(b"What is the rent?"));
        assert_eq!(all[0].sources, ["/docs/lease.pdf"]);
        assert_eq!(all[1].output.as_deref(), Some("hello"));
        let by_key = |k: &str| {
            log.query(&Filter {
                key: Some(k.into()),
                ..Filter::default()
            })
            .unwrap()
            .len()
        };
        assert_eq!(by_key("secret"), 1);
        assert_eq!(by_key(&key_fingerprint("secret")), 1);
        assert_eq!(by_key("other"), 0);
        let by_model = log
            .query(&Filter {
                model: Some("abcdef".into()),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(by_model.len(), 1);
        assert_eq!(by_model[0].model, "smollm2");
        let newest = log
            .query(&Filter {
                limit: Some(1),
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(newest[0].model, "qwen");
        // Append-only, even to SQL.
        let conn = Connection::open(log.path()).unwrap();
        for sql in [
            "DELETE FROM generations",
            "UPDATE generations SET output = 'x'",
        ] {
            let e = conn.execute(sql, []).unwrap_err().to_string();
            assert!(e.contains("append-only"), "{e}");
        }
        assert_eq!(log.query(&Filter::default()).unwrap().len(), 2);
    }
}
