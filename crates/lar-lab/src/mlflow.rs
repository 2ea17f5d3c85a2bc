//! `lar runs export --mlflow URL`: the record, copied to an MLflow tracking server through its REST API (2.0), so a
//! team that keeps its experiments there sees Lar's next to the rest. Each Lar run becomes an MLflow run in one
//! experiment (`lar` unless named): its kind and model as the run's name, the parameters flattened to
//! `dotted.keys`, every metric with its whole history (steps), the machine, lineage, model sha256, version and
//! error as tags (`lar.*`), its status and times, and its artifacts listed as tags (path, sha256, size) and, when
//! asked and small enough, uploaded through the server's artifact proxy. A run already exported (found by its
//! `lar.run_id` tag) is skipped, so exporting again only adds what is new.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::runs::{Run, RunStore, Status};
use crate::{Error, Result};

/// What to export.
#[derive(Clone, Debug)]
pub struct Options {
    /// The tracking server (`http://127.0.0.1:5000`).
    pub url: String,
    pub experiment: String,
    /// Upload artifacts up to this many bytes (`None`: list them only).
    pub upload_up_to: Option<u64>,
}

/// What an export did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    pub experiment_id: String,
    pub exported: Vec<String>,
    pub skipped: Vec<String>,
    pub uploaded: usize,
}

struct Api {
    http: Client,
    base: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        };
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(b.to_string()),
            None => req,
        };
        let resp = req
            .send()
            .map_err(|e| Error::Invalid(format!("MLflow at {}: {e}", self.base)))?;
        let status = resp.status();
        let text = resp
            .text()
            .map_err(|e| Error::Invalid(format!("MLflow at {}: {e}", self.base)))?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = v["message"].as_str().unwrap_or(text.as_str());
            return Err(Error::Invalid(format!(
                "MLflow {path}: {status}: {}",
                msg.chars().take(300).collect::<String>()
            )));
        }
        Ok(v)
    }

    fn experiment(&self, name: &str) -> Result<String> {
        let q = format!(
            "experiments/get-by-name?experiment_name={}",
            url_encode(name)
        );
        match self.call("GET", &q, None) {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Error::Invalid("MLflow returned no experiment id".into())),
            Err(Error::Invalid(e))
                if e.contains("RESOURCE_DOES_NOT_EXIST") || e.contains("404") =>
            {
                let v = self.call("POST", "experiments/create", Some(&json!({"name": name})))?;
                v["experiment_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Error::Invalid("MLflow created no experiment".into()))
            }
            Err(e) => Err(e),
        }
    }

    fn exported(&self, experiment: &str, run_id: &str) -> Result<bool> {
        let v = self.call(
            "POST",
            "runs/search",
            Some(&json!({"experiment_ids": [experiment],
                         "filter": format!("tags.`lar.run_id` = '{run_id}'"), "max_results": 1})),
        )?;
        Ok(v["runs"].as_array().is_some_and(|r| !r.is_empty()))
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `{"a": {"b": 1}}` as `("a.b", "1")` pairs (strings unquoted, arrays as JSON).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// MLflow's limits: keys of 250 characters, tag and param values of 6000.
fn kv(k: &str, v: &str) -> Value {
    json!({"key": k.chars().take(250).collect::<String>(), "value": v.chars().take(6000).collect::<String>()})
}

fn ms(t: f64) -> i64 {
    (t * 1000.0) as i64
}

/// Exports the runs `ids` (all of them when empty) of `store` to the server `o.url`.
pub fn export(store: &RunStore, ids: &[String], o: &Options) -> Result<Summary> {
    let http = Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
    let base = o.url.trim_end_matches('/').to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(Error::Invalid(format!(
            "--mlflow '{}' is not an http:// or https:// URL",
            o.url
        )));
    }
    let api = Api { http, base };
    let runs: Vec<Run> = if ids.is_empty() {
        let mut all = store.list(&Default::default())?;
        all.reverse();
        all
    } else {
        ids.iter().map(|i| store.get(i)).collect::<Result<_>>()?
    };
    let experiment = api.experiment(&o.experiment)?;
    let mut s = Summary {
        experiment_id: experiment.clone(),
        ..Default::default()
    };
    for run in runs {
        if matches!(run.status, Status::Running) {
            s.skipped.push(run.id);
            continue;
        }
        if api.exported(&experiment, &run.id)? {
            s.skipped.push(run.id);
            continue;
        }
        s.uploaded += export_run(&api, store, &experiment, &run, o)?;
        s.exported.push(run.id);
    }
    Ok(s)
}

fn export_run(
    api: &Api,
    store: &RunStore,
    experiment: &str,
    run: &Run,
    o: &Options,
) -> Result<usize> {
    let mut tags = vec![
        kv("lar.run_id", &run.id),
        kv("lar.kind", &run.kind),
        kv("lar.version", &run.lar_version),
        kv("mlflow.source.name", "lar"),
    ];
    if let Some(m) = &run.model {
        tags.push(kv("lar.model", m));
    }
    if let Some(sha) = &run.model_sha256 {
        tags.push(kv("lar.model_sha256", sha));
    }
    if let Some(e) = &run.error {
        tags.push(kv("lar.error", e));
    }
    for (prefix, v) in [("lar.machine", &run.machine), ("lar.lineage", &run.lineage)] {
        let mut flat = Vec::new();
        flatten(prefix, v, &mut flat);
        tags.extend(flat.iter().map(|(k, v)| kv(k, v)));
    }
    for (i, a) in run.artifacts.iter().enumerate() {
        let desc = format!(
            "{} sha256={} bytes={}",
            a.path,
            a.sha256.as_deref().unwrap_or("-"),
            a.bytes.map_or("-".to_string(), |b| b.to_string())
        );
        tags.push(kv(&format!("lar.artifact.{i}"), &desc));
    }
    let name = match &run.model {
        Some(m) => format!("{} {}", run.kind, m.rsplit('/').next().unwrap_or(m)),
        None => run.kind.clone(),
    };
    let created = api.call(
        "POST",
        "runs/create",
        Some(
            &json!({"experiment_id": experiment, "start_time": ms(run.started_at), "run_name": name,
                     "tags": tags[..tags.len().min(100)]}),
        ),
    )?;
    let info = &created["run"]["info"];
    let run_id = info["run_id"]
        .as_str()
        .ok_or_else(|| Error::Invalid("MLflow created a run without an id".into()))?
        .to_string();
    let mut params = Vec::new();
    flatten("", &run.params, &mut params);
    let when = ms(run.finished_at.unwrap_or(run.started_at));
    let mut metrics = Vec::new();
    for key in run.metrics.keys() {
        for (i, p) in store.history(&run.id, key)?.iter().enumerate() {
            metrics.push(json!({"key": key, "value": p.value, "timestamp": when,
                                "step": p.step.unwrap_or(i as i64)}));
        }
    }
    let extra_tags: Vec<Value> = tags.iter().skip(100).cloned().collect();
    let params: Vec<Value> = params.iter().map(|(k, v)| kv(k, v)).collect();
    // log-batch takes at most 1000 metrics, 100 params and 100 tags at a time.
    let rounds = metrics
        .len()
        .div_ceil(1000)
        .max(params.len().div_ceil(100))
        .max(extra_tags.len().div_ceil(100));
    for r in 0..rounds {
        let part =
            |v: &[Value], n: usize| v.iter().skip(r * n).take(n).cloned().collect::<Vec<_>>();
        api.call(
            "POST",
            "runs/log-batch",
            Some(&json!({"run_id": run_id, "metrics": part(&metrics, 1000), "params": part(&params, 100),
                         "tags": part(&extra_tags, 100)})),
        )?;
    }
    let mut uploaded = 0;
    if let Some(limit) = o.upload_up_to {
        let root = info["artifact_uri"].as_str().unwrap_or("");
        let dest = root
            .strip_prefix("mlflow-artifacts:/")
            .map(|p| p.trim_start_matches('/').to_string());
        for a in &run.artifacts {
            let path = std::path::Path::new(&a.path);
            let size = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
            let (Some(dest), true) = (&dest, size <= limit) else {
                continue;
            };
            let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(file) = file else { continue };
            let bytes = std::fs::read(path).map_err(|e| Error::Io(a.path.clone(), e))?;
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{dest}/{}",
                api.base,
                url_encode(&file)
            );
            let resp = api
                .http
                .put(&url)
                .body(bytes)
                .send()
                .map_err(|e| Error::Invalid(format!("MLflow artifact upload: {e}")))?;
            if !resp.status().is_success() {
                return Err(Error::Invalid(format!(
                    "MLflow artifact upload of {}: {}",
                    a.path,
                    resp.status()
                )));
            }
            uploaded += 1;
        }
    }
    let status = match run.status {
        Status::Failed => "FAILED",
        _ => "FINISHED",
    };
    api.call(
        "POST",
        "runs/update",
        Some(&json!({"run_id": run_id, "status": status, "end_time": when})),
    )?;
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_flatten_to_dotted_keys() {
        let mut out = Vec::new();
        flatten(
            "",
            &json!({"ctx": 512, "text": "wiki.txt", "opts": {"top_k": 40, "stop": ["a"]}, "none": null}),
            &mut out,
        );
        out.sort();
        assert_eq!(
            out,
            [
                ("ctx".to_string(), "512".to_string()),
                ("opts.stop".into(), "[\"a\"]".into()),
                ("opts.top_k".into(), "40".into()),
                ("text".into(), "wiki.txt".into()),
            ]
        );
        assert_eq!(url_encode("lar runs/é"), "lar%20runs%2F%C3%A9");
    }
}
