//! Runs recorded by the commands that measure or make something (`bench`, `eval`, later `quantize`): a run is
//! started before the work with the model's name and sha256, the parameters and the machine, given its metrics,
//! and finished (or marked failed with the error). `--no-record` skips it; a runs database that cannot be opened
//! is a warning, never the end of the experiment.

use std::path::Path;

use lar_lab::runs::{NewRun, RunStore};
use serde_json::Value;

/// A run being recorded (or not).
pub struct Recording {
    store: Option<RunStore>,
    pub id: Option<String>,
    /// The model file's size, recorded as the metric `model_bytes` (for charts of size against quality).
    bytes: Option<u64>,
}

impl Recording {
    /// Starts a run of `kind` on the model named `name` (the file at `path`).
    pub fn start(
        enabled: bool,
        kind: &str,
        name: &str,
        path: &Path,
        params: Value,
        threads: usize,
        device: &str,
    ) -> Self {
        if !enabled {
            return Self {
                store: None,
                id: None,
                bytes: None,
            };
        }
        let bytes = std::fs::metadata(path).ok().map(|m| m.len());
        let home = lar_store::default_home();
        let opened = RunStore::open_home(&home).and_then(|store| {
            let sha = lar_lab::digest::file_sha256(&store, path)?;
            let id = store.start(&NewRun {
                kind: kind.into(),
                model: Some(name.into()),
                model_sha256: Some(sha),
                params,
                machine: lar_lab::machine::describe(threads, device),
                lineage: Value::Null,
            })?;
            Ok((store, id))
        });
        match opened {
            Ok((store, id)) => Self {
                store: Some(store),
                id: Some(id),
                bytes,
            },
            Err(e) => {
                eprintln!("warning: not recording this run: {e}");
                Self {
                    store: None,
                    id: None,
                    bytes: None,
                }
            }
        }
    }

    /// The sha256 recorded for the run's model.
    pub fn model_sha256(&self) -> Option<String> {
        let (s, id) = (self.store.as_ref()?, self.id.as_ref()?);
        s.get(id).ok()?.model_sha256
    }

    /// Records where the run's model came from.
    pub fn lineage(&mut self, lineage: Value) {
        if let (Some(s), Some(id)) = (&self.store, &self.id)
            && let Err(e) = s.set_lineage(id, &lineage)
        {
            eprintln!("warning: recording the lineage: {e}");
        }
    }

    /// Records a file the run made with its size and sha256 (computed here); the sha256.
    pub fn artifact(&self, path: &Path) -> Option<String> {
        let (s, id) = (self.store.as_ref()?, self.id.as_ref()?);
        let sha = lar_lab::digest::file_sha256(s, path).ok();
        let a = lar_lab::runs::Artifact {
            path: std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
            sha256: sha.clone(),
            bytes: std::fs::metadata(path).ok().map(|m| m.len()),
        };
        if let Err(e) = s.artifact(id, &a) {
            eprintln!("warning: recording {}: {e}", path.display());
        }
        sha
    }

    /// Adds a point of a metric's history.
    pub fn step(&self, key: &str, step: i64, value: f64) {
        if let (Some(s), Some(id)) = (&self.store, &self.id)
            && let Err(e) = s.log(id, key, Some(step), value)
        {
            eprintln!("warning: recording {key}: {e}");
        }
    }

    /// Ends the run with its final metrics, or as failed.
    pub fn finish<T>(&self, result: &anyhow::Result<T>, metrics: &[(&str, f64)]) {
        let (Some(s), Some(id)) = (&self.store, &self.id) else {
            return;
        };
        let done = match result {
            Ok(_) => s
                .log_all(id, metrics)
                .and_then(|_| match self.bytes {
                    Some(b) => s.log(id, "model_bytes", None, b as f64),
                    None => Ok(()),
                })
                .and_then(|_| s.finish(id, None)),
            Err(e) => s.finish(id, Some(&format!("{e:#}"))),
        };
        if let Err(e) = done {
            eprintln!("warning: recording run {id}: {e}");
        }
    }
}
