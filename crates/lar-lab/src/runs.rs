//! The record of every experiment: `$LAR_HOME/runs.sqlite`. A run is one bench, evaluation, quantization or
//! (later) fine-tune: when it started and ended, its kind, the model (name and sha256) and where it came from
//! (lineage), its parameters, the machine, its metrics (each a history of `(step, value)`, the last value being
//! the result), its artifacts, its status (`running`, `finished`, `failed` with the error) and the Lar version.
//! The file is shared by the CLI and the server (WAL, a busy timeout), and a run's metrics and artifacts go with
//! it when it is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    model TEXT,
    model_sha256 TEXT,
    params TEXT NOT NULL,
    machine TEXT NOT NULL,
    lineage TEXT NOT NULL,
    lar_version TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    step INTEGER,
    value REAL NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, key);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT,
    bytes INTEGER
);
";

/// A run as it starts.
#[derive(Clone, Debug, Default)]
pub struct NewRun {
    /// `bench`, `eval.perplexity`, `quantize`, ...
    pub kind: String,
    pub model: Option<String>,
    pub model_sha256: Option<String>,
    pub params: Value,
    pub machine: Value,
    /// Where the model came from (its source's sha256, the type it was quantized to, ...).
    pub lineage: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "finished" => Self::Finished,
            "failed" => Self::Failed,
            _ => Self::Running,
        }
    }
}

/// A file a run made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Artifact {
    pub path: String,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
}

/// One metric value; `step` orders a history (a loss per step, a running estimate per chunk).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub step: Option<i64>,
    pub value: f64,
}

/// A recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub id: String,
    pub kind: String,
    pub status: Status,
    /// Seconds since the Unix epoch.
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub model: Option<String>,
    pub model_sha256: Option<String>,
    pub params: Value,
    pub machine: Value,
    pub lineage: Value,
    pub lar_version: String,
    pub error: Option<String>,
    /// Each metric's last value.
    pub metrics: BTreeMap<String, f64>,
    pub artifacts: Vec<Artifact>,
}

/// Which runs to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Runs of this kind, or of kinds under it (`eval` lists `eval.perplexity`).
    pub kind: Option<String>,
    /// Runs of this model (its name as recorded).
    pub model: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A new run's id: the start time in milliseconds and a counter, in hex (sortable, short, unique per file).
fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let salt =
        (std::process::id() ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(40503)) & 0xffff;
    format!("{ms:011x}{salt:04x}")
}

fn json_text(v: &Value) -> String {
    if v.is_null() {
        "{}".into()
    } else {
        v.to_string()
    }
}

/// The runs database.
pub struct RunStore {
    conn: Connection,
    path: PathBuf,
}

impl RunStore {
    /// Opens (creating it when needed) the runs database of the Lar home `home`.
    pub fn open_home(home: &Path) -> Result<Self> {
        std::fs::create_dir_all(home).map_err(|e| Error::Io(home.display().to_string(), e))?;
        Self::open(&home.join("runs.sqlite"))
    }

    /// Opens (creating it when needed) the runs database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a run that starts now; its id.
    pub fn start(&self, r: &NewRun) -> Result<String> {
        if r.kind.trim().is_empty() {
            return Err(Error::Invalid("a run needs a kind".into()));
        }
        let id = new_id();
        self.conn.execute(
            "INSERT INTO runs (id, kind, status, started_at, model, model_sha256, params, machine, lineage, lar_version)
             VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                r.kind,
                now(),
                r.model,
                r.model_sha256,
                json_text(&r.params),
                json_text(&r.machine),
                json_text(&r.lineage),
                env!("CARGO_PKG_VERSION"),
            ],
        )?;
        Ok(id)
    }

    /// Adds a value to metric `key` of run `id`.
    pub fn log(&self, id: &str, key: &str, step: Option<i64>, value: f64) -> Result<()> {
        if !value.is_finite() {
            return Err(Error::Invalid(format!(
                "metric {key} of run {id} is not a finite number ({value})"
            )));
        }
        self.exists(id)?;
        self.conn.execute(
            "INSERT INTO metrics (run_id, key, step, value, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, key, step, value, now()],
        )?;
        Ok(())
    }

    /// Adds several final values at once.
    pub fn log_all(&self, id: &str, metrics: &[(&str, f64)]) -> Result<()> {
        for (k, v) in metrics {
            self.log(id, k, None, *v)?;
        }
        Ok(())
    }

    /// Records a file run `id` made.
    pub fn artifact(&self, id: &str, a: &Artifact) -> Result<()> {
        self.exists(id)?;
        self.conn.execute(
            "INSERT INTO artifacts (run_id, path, sha256, bytes) VALUES (?1, ?2, ?3, ?4)",
            params![id, a.path, a.sha256, a.bytes.map(|b| b as i64)],
        )?;
        Ok(())
    }

    /// Sets the lineage of run `id` (where its model came from).
    pub fn set_lineage(&self, id: &str, lineage: &Value) -> Result<()> {
        self.exists(id)?;
        self.conn.execute(
            "UPDATE runs SET lineage = ?2 WHERE id = ?1",
            params![id, json_text(lineage)],
        )?;
        Ok(())
    }

    /// Ends run `id`: finished, or failed with `error`.
    pub fn finish(&self, id: &str, error: Option<&str>) -> Result<()> {
        let status = if error.is_some() {
            Status::Failed
        } else {
            Status::Finished
        };
        let n = self.conn.execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
            params![id, status.as_str(), now(), error],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!("no run has the id '{id}'")));
        }
        Ok(())
    }

    fn exists(&self, id: &str) -> Result<()> {
        let found: Option<i64> = self
            .conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |r| r.get(0))
            .optional()?;
        found
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(format!("no run has the id '{id}'")))
    }

    /// The full id of the one run whose id starts with `prefix`.
    pub fn resolve(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!(
                "'{prefix}' is not a run id (run ids are hexadecimal)"
            )));
        }
        let mut st = self
            .conn
            .prepare("SELECT id FROM runs WHERE substr(id, 1, length(?1)) = ?1 LIMIT 2")?;
        let ids: Vec<String> = st
            .query_map([prefix], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::NotFound(format!(
                "no run has an id starting '{prefix}'"
            ))),
            _ => Err(Error::NotFound(format!(
                "several runs have ids starting '{prefix}': give more of it"
            ))),
        }
    }

    /// Run `id` (a full id or a unique prefix).
    pub fn get(&self, id: &str) -> Result<Run> {
        let id = self.resolve(id)?;
        let mut run = self.conn.query_row(
            "SELECT id, kind, status, started_at, finished_at, model, model_sha256, params, machine, lineage,
                    lar_version, error FROM runs WHERE id = ?1",
            [&id],
            row_to_run,
        )?;
        let mut st = self.conn.prepare(
            "SELECT key, value FROM metrics WHERE run_id = ?1 ORDER BY COALESCE(step, -1), rowid",
        )?;
        for kv in st.query_map([&id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))? {
            let (k, v) = kv?;
            run.metrics.insert(k, v);
        }
        let mut st = self.conn.prepare(
            "SELECT path, sha256, bytes FROM artifacts WHERE run_id = ?1 ORDER BY rowid",
        )?;
        for a in st.query_map([&id], |r| {
            Ok(Artifact {
                path: r.get(0)?,
                sha256: r.get(1)?,
                bytes: r.get::<_, Option<i64>>(2)?.map(|b| b as u64),
            })
        })? {
            run.artifacts.push(a?);
        }
        Ok(run)
    }

    /// Metric `key`'s history in run `id`, in step order.
    pub fn history(&self, id: &str, key: &str) -> Result<Vec<Point>> {
        let id = self.resolve(id)?;
        let mut st = self.conn.prepare(
            "SELECT step, value FROM metrics WHERE run_id = ?1 AND key = ?2 ORDER BY COALESCE(step, -1), rowid",
        )?;
        let points = st
            .query_map(params![id, key], |r| {
                Ok(Point {
                    step: r.get(0)?,
                    value: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(points)
    }

    /// The runs `f` selects, newest first, with their metrics.
    pub fn list(&self, f: &Filter) -> Result<Vec<Run>> {
        let mut st = self.conn.prepare(
            "SELECT id FROM runs
             WHERE (?1 IS NULL OR kind = ?1 OR substr(kind, 1, length(?1) + 1) = ?1 || '.')
               AND (?2 IS NULL OR model = ?2)
             ORDER BY started_at DESC, id DESC LIMIT ?3",
        )?;
        let limit = f.limit.map_or(-1, |l| l as i64);
        let ids: Vec<String> = st
            .query_map(params![f.kind, f.model, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids.iter().map(|id| self.get(id)).collect()
    }

    /// Removes run `id` (a full id or a unique prefix) with its metrics and artifacts' records (not the files);
    /// its full id.
    pub fn remove(&self, id: &str) -> Result<String> {
        let id = self.resolve(id)?;
        self.conn.execute("DELETE FROM runs WHERE id = ?1", [&id])?;
        Ok(id)
    }

    /// The sha256 recorded for the file at `path` with this size and modification time, if one was.
    pub fn cached_digest(&self, path: &str, size: u64, mtime: i64) -> Result<Option<String>> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
             mtime INTEGER NOT NULL, sha256 TEXT NOT NULL)",
        )?;
        Ok(self
            .conn
            .query_row(
                "SELECT sha256 FROM digests WHERE path = ?1 AND size = ?2 AND mtime = ?3",
                params![path, size as i64, mtime],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Remembers the sha256 of the file at `path` (see [`RunStore::cached_digest`]).
    pub fn cache_digest(&self, path: &str, size: u64, mtime: i64, sha256: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO digests (path, size, mtime, sha256) VALUES (?1, ?2, ?3, ?4)",
            params![path, size as i64, mtime, sha256],
        )?;
        Ok(())
    }
}

fn row_to_run(r: &rusqlite::Row) -> rusqlite::Result<Run> {
    let json = |i: usize| -> rusqlite::Result<Value> {
        let s: String = r.get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(Value::Null))
    };
    Ok(Run {
        id: r.get(0)?,
        kind: r.get(1)?,
        status: Status::parse(&r.get::<_, String>(2)?),
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        model: r.get(5)?,
        model_sha256: r.get(6)?,
        params: json(7)?,
        machine: json(8)?,
        lineage: json(9)?,
        lar_version: r.get(10)?,
        error: r.get(11)?,
        metrics: BTreeMap::new(),
        artifacts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_is_recorded_read_back_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = RunStore::open_home(dir.path()).unwrap();
        let id = s
            .start(&NewRun {
                kind: "eval.perplexity".into(),
                model: Some("smollm2".into()),
                model_sha256: Some("ab".repeat(32)),
                params: json!({"ctx": 256}),
                ..Default::default()
            })
            .unwrap();
        for (i, v) in [90.0, 80.0, 75.5].into_iter().enumerate() {
            s.log(&id, "perplexity", Some(i as i64 + 1), v).unwrap();
        }
        s.log_all(&id, &[("tokens", 1530.0)]).unwrap();
        s.artifact(
            &id,
            &Artifact {
                path: "/tmp/x.gguf".into(),
                sha256: None,
                bytes: Some(7),
            },
        )
        .unwrap();
        assert!(s.log(&id, "bad", None, f64::NAN).is_err());
        s.finish(&id, None).unwrap();

        let r = s.get(&id[..8]).unwrap();
        assert_eq!(r.status, Status::Finished);
        assert_eq!(r.metrics["perplexity"], 75.5, "the last step is the result");
        assert_eq!(r.metrics["tokens"], 1530.0);
        assert_eq!(r.params["ctx"], 256);
        assert_eq!(r.artifacts.len(), 1);
        assert_eq!(s.history(&id, "perplexity").unwrap().len(), 3);

        let other = s
            .start(&NewRun {
                kind: "bench".into(),
                ..Default::default()
            })
            .unwrap();
        s.finish(&other, Some("out of memory")).unwrap();
        let all = s.list(&Filter::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, other, "newest first");
        assert_eq!(all[0].status, Status::Failed);
        let evals = s
            .list(&Filter {
                kind: Some("eval".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(evals.len(), 1);
        assert_eq!(evals[0].id, id);

        assert_eq!(s.remove(&id).unwrap(), id);
        assert!(matches!(s.get(&id), Err(Error::NotFound(_))));
        assert!(s.history(&other, "perplexity").unwrap().is_empty());
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM metrics", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "metrics go with their run");
        assert!(matches!(s.get("zz"), Err(Error::NotFound(_))));
        assert!(matches!(s.get(""), Err(Error::NotFound(_))));
    }
}
