//! The lab: the run records (`runs.sqlite`, the file `lar bench`, `lar eval`, `lar quantize` write) as a table
//! filtered by kind, a bar chart of one metric across them, one run's parameters, machine, lineage, metrics (a
//! metric with a history drawn as a chart) and artifacts; and a benchmark started from the page, run by the server
//! on the loaded model and recorded like `lar bench`'s (`prompt_tps`, `gen_tps`).

use std::path::PathBuf;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lar_engine::Event;
use lar_lab::runs::{Filter, NewRun, Run, RunStore};
use lar_types::SamplingParams;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::layout::{self, Section};
use crate::AppState;
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, failure};
use crate::http::JsonBody;
use crate::manager::Wait;

/// Largest benchmark the page may start (tokens of prompt, tokens generated).
pub const MAX_BENCH_TOKENS: usize = 4096;

fn db(st: &AppState) -> ApiResult<PathBuf> {
    st.cfg
        .runs_db
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this server keeps no run records"))
}

async fn with_store<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&RunStore) -> lar_lab::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let path = db(st)?;
    tokio::task::spawn_blocking(move || {
        let s = RunStore::open(&path).map_err(ApiError::internal)?;
        f(&s).map_err(|e| match e {
            lar_lab::Error::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            other => ApiError::internal(other),
        })
    })
    .await
    .map_err(ApiError::internal)?
}

#[derive(Deserialize)]
pub struct ListQuery {
    kind: Option<String>,
    metric: Option<String>,
}

fn when(secs: f64) -> String {
    crate::ollama::rfc3339(secs as u64, 0)
        .get(..16)
        .unwrap_or_default()
        .replace('T', " ")
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// `GET /ui/lab[?kind=K&metric=M]`.
pub async fn page(
    State(st): State<AppState>,
    Query(q): Query<ListQuery>,
    h: HeaderMap,
) -> Response {
    let kind = q.kind.clone().filter(|k| !k.is_empty());
    let filter = Filter {
        kind: kind.clone(),
        limit: Some(200),
        ..Default::default()
    };
    let runs = match with_store(&st, move |s| s.list(&filter)).await {
        Ok(r) => r,
        Err(e) => return super::html_error(e.status, &e.message),
    };
    let mut kinds: Vec<&str> = runs.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut metrics: Vec<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
    metrics.sort_unstable();
    metrics.dedup();
    let metric = q
        .metric
        .clone()
        .filter(|m| metrics.contains(&m))
        .or_else(|| {
            metrics
                .iter()
                .find(|m| m.as_str() == "gen_tps")
                .map(|m| m.to_string())
        });
    let models: Vec<String> = {
        let cat = st.manager.catalog().clone();
        tokio::task::spawn_blocking(move || cat.list())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.kind == crate::catalog::Kind::Chat)
            .map(|m| m.name)
            .collect()
    };
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let shown = [
        "prompt_tps",
        "gen_tps",
        "perplexity",
        "kld_mean",
        "model_bytes",
    ];
    let body = html! {
        main #main.lab {
            h1 { "Lab" }
            form #bench.pull {
                label { "Benchmark a model"
                    select #bench-model { @for m in &models { option value=(m) { (m) } } }
                }
                label { "Prompt tokens" input #bench-p type="number" min="1" max=(MAX_BENCH_TOKENS) value="128"; }
                label { "Generated" input #bench-n type="number" min="1" max=(MAX_BENCH_TOKENS) value="32"; }
                button type="submit" { "Run" }
                span #bench-status role="status" {}
            }
            form.filters method="get" {
                label { "Kind"
                    select name="kind" {
                        option value="" { "all" }
                        @for k in &kinds {
                            @if Some(*k) == kind.as_deref() { option value=(k) selected { (k) } }
                            @else { option value=(k) { (k) } }
                        }
                    }
                }
                label { "Chart"
                    select name="metric" {
                        @for m in &metrics {
                            @if Some(m.as_str()) == metric.as_deref() { option value=(m) selected { (m) } }
                            @else { option value=(m) { (m) } }
                        }
                    }
                }
                button type="submit" { "Show" }
            }
            @if let Some(m) = &metric {
                img.chart src={"/ui/lab/chart.svg?metric=" (layout::url_escape(m))
                    "&kind=" (layout::url_escape(kind.as_deref().unwrap_or("")))}
                    alt={"Bar chart of " (m) " across the runs below"};
            }
            @if runs.is_empty() {
                p.empty { "No runs yet: `lar bench`, `lar eval`, `lar quantize` record theirs here, or run a benchmark above." }
            } @else {
                div.table-wrap { table #runs {
                    thead { tr {
                        th { "Run" } th { "Kind" } th { "Model" } th { "Status" } th { "Started" }
                        @for k in shown { th { (k) } }
                    } }
                    tbody {
                        @for r in &runs {
                            tr data-run=(r.id) {
                                td { a href={"/ui/lab/" (r.id)} { code { (r.id) } } }
                                td { (r.kind) }
                                td { (r.model.as_deref().unwrap_or("")) }
                                td { (format!("{:?}", r.status).to_lowercase()) }
                                td { (when(r.started_at)) }
                                @for k in shown {
                                    td.num { @if let Some(v) = r.metrics.get(k) { (short(*v)) } }
                                }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout::page("Lab", Section::Lab, &csrf, signed_in, body)
}

/// A run's label in a chart: its model and the end of its id (the start is a time, shared by runs close together).
fn label(r: &Run) -> String {
    format!(
        "{} {}",
        r.model.as_deref().unwrap_or(&r.kind),
        r.id.get(r.id.len().saturating_sub(6)..).unwrap_or(&r.id)
    )
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            // An image only: nothing in it may run, even opened on its own.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /ui/lab/chart.svg?metric=M[&kind=K]`: one bar per run that has the metric.
pub async fn chart(State(st): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let Some(metric) = q.metric.filter(|m| !m.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "metric is required").into_response();
    };
    let filter = Filter {
        kind: q.kind.filter(|k| !k.is_empty()),
        limit: Some(40),
        ..Default::default()
    };
    match with_store(&st, move |s| s.list(&filter)).await {
        Ok(runs) => {
            let items: Vec<(String, f64)> = runs
                .iter()
                .filter_map(|r| Some((label(r), *r.metrics.get(&metric)?)))
                .collect();
            svg(lar_lab::chart::bars(&metric, &metric, &items))
        }
        Err(e) => (e.status, e.message).into_response(),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    metric: String,
}

/// `GET /ui/lab/{id}/history.svg?metric=M`: a metric's values by step (a loss curve, a running estimate).
pub async fn history(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let metric = q.metric.clone();
    match with_store(&st, move |s| s.history(&id, &metric)).await {
        Ok(points) => {
            let pts: Vec<(String, f64, f64)> = points
                .iter()
                .enumerate()
                .map(|(i, p)| (String::new(), p.step.unwrap_or(i as i64) as f64, p.value))
                .collect();
            svg(lar_lab::chart::scatter(&q.metric, "step", &q.metric, &pts))
        }
        Err(e) => (e.status, e.message).into_response(),
    }
}

/// `GET /ui/lab/{id}`: one run.
pub async fn run(State(st): State<AppState>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let got = with_store(&st, move |s| {
        let r = s.get(&s.resolve(&id)?)?;
        let histories: Vec<(String, usize)> = r
            .metrics
            .keys()
            .map(|k| Ok((k.clone(), s.history(&r.id, k)?.len())))
            .collect::<lar_lab::Result<_>>()?;
        Ok((r, histories))
    })
    .await;
    let (r, histories) = match got {
        Ok(x) => x,
        Err(e) => return super::html_error(e.status, &e.message),
    };
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let body = html! {
        main #main.lab {
            p { a href="/ui/lab" { "← Lab" } }
            h1 { (r.kind) " · " (r.model.as_deref().unwrap_or("")) }
            dl.facts {
                dt { "Run" } dd { code { (r.id) } }
                dt { "Status" } dd { (format!("{:?}", r.status).to_lowercase()) @if let Some(e) = &r.error { ": " (e) } }
                dt { "Started" } dd { (when(r.started_at)) }
                @if let Some(f) = r.finished_at { dt { "Took" } dd { (format!("{:.1} s", f - r.started_at)) } }
                @if let Some(s) = &r.model_sha256 { dt { "Model sha256" } dd { code { (s) } } }
                dt { "Lar" } dd { (r.lar_version) }
            }
            h2 { "Metrics" }
            table #metrics {
                @for (k, v) in &r.metrics { tr { th scope="row" { (k) } td.num { (short(*v)) } } }
            }
            @for (k, n) in &histories {
                @if *n > 1 {
                    img.chart src={"/ui/lab/" (r.id) "/history.svg?metric=" (layout::url_escape(k))}
                        alt={(k) " by step"};
                }
            }
            @if !r.artifacts.is_empty() {
                h2 { "Artifacts" }
                ul { @for a in &r.artifacts { li { code { (a.path) } @if let Some(s) = &a.sha256 { " · " code { (s) } } } } }
            }
            details { summary { "Parameters" } pre { (pretty(&r.params)) } }
            details { summary { "Machine" } pre { (pretty(&r.machine)) } }
            details { summary { "Lineage" } pre { (pretty(&r.lineage)) } }
        }
    };
    layout::page(&r.kind, Section::Lab, &csrf, signed_in, body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BenchReq {
    model: String,
    #[serde(default = "default_p")]
    prompt_tokens: usize,
    #[serde(default = "default_n")]
    gen_tokens: usize,
}

fn default_p() -> usize {
    128
}

fn default_n() -> usize {
    32
}

/// A prompt nobody sent before (so the prefix cache cannot answer it): ids spread over the vocabulary's middle.
fn bench_prompt(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let span = (n_vocab / 2).max(1) as u64;
    let base = (n_vocab / 4) as u64;
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (base + x % span) as u32
        })
        .collect()
}

/// `POST /ui/api/lab/bench` with `{"model", "prompt_tokens", "gen_tokens"}`: one measured generation on the
/// served model (sharing it with whatever else it serves), recorded as a `bench` run.
pub async fn bench(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Json<Value>> {
    let r: BenchReq = crate::body::typed(&obj)?;
    for (name, v) in [
        ("prompt_tokens", r.prompt_tokens),
        ("gen_tokens", r.gen_tokens),
    ] {
        if v == 0 || v > MAX_BENCH_TOKENS {
            return Err(ApiError::field(
                name,
                format!("{name} must be 1 to {MAX_BENCH_TOKENS}"),
            ));
        }
    }
    let path = db(&st)?;
    let lease = std::sync::Arc::new(
        st.manager
            .get(&r.model, &LoadOptions::default(), None, Wait::Yes)
            .await?,
    );
    let h = crate::generation::engine(&lease)?;
    if r.prompt_tokens + r.gen_tokens > h.ctx() {
        return Err(ApiError::bad_request(format!(
            "{} prompt + {} generated tokens do not fit the model's context of {}",
            r.prompt_tokens,
            r.gen_tokens,
            h.ctx()
        )));
    }
    let n_vocab = h.model().n_vocab;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    let params = SamplingParams {
        max_tokens: r.gen_tokens,
        ignore_eos: true,
        temperature: 0.0,
        ..Default::default()
    };
    let req = lar_engine::Request::new(bench_prompt(r.prompt_tokens, n_vocab, seed), params);
    let entry = lease.model.entry.clone();
    let mut g = Generation::start(lease.clone(), &st, req)?;
    let t0 = Instant::now();
    let (mut first, mut tokens) = (None, 0usize);
    let finished = loop {
        match g.next().await {
            Some(Event::Token(_)) => {
                tokens += 1;
                first.get_or_insert_with(Instant::now);
            }
            Some(Event::Done(f)) => break f,
            None => {
                return Err(ApiError::internal(
                    "the engine ended a stream without its end",
                ));
            }
        }
    };
    if let Some(e) = failure(&finished) {
        return Err(crate::generation::failed_error(e));
    }
    let end = Instant::now();
    let ttft = first.map_or(end - t0, |f| f - t0).as_secs_f64();
    let prompt_tps = r.prompt_tokens as f64 / ttft.max(1e-9);
    let decode = first.map_or(0.0, |f| (end - f).as_secs_f64());
    let gen_tps = if tokens > 1 {
        (tokens - 1) as f64 / decode.max(1e-9)
    } else {
        0.0
    };
    let threads = lar_plan::hw::physical_cores();
    let id = tokio::task::spawn_blocking(move || -> lar_lab::Result<String> {
        let s = RunStore::open(&path)?;
        let id = s.start(&NewRun {
            kind: "bench".into(),
            model: Some(entry.name.clone()),
            model_sha256: Some(entry.digest.clone()),
            params: json!({"prompt_tokens": r.prompt_tokens, "gen_tokens": r.gen_tokens, "source": "web UI, on the serving engine"}),
            machine: lar_lab::machine::describe(threads, "cpu"),
            lineage: Value::Null,
        })?;
        s.log_all(
            &id,
            &[
                ("prompt_tps", prompt_tps),
                ("gen_tps", gen_tps),
                ("model_bytes", entry.size as f64),
            ],
        )?;
        s.finish(&id, None)?;
        Ok(id)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"id": id, "prompt_tps": prompt_tps, "gen_tps": gen_tps}),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn bench_prompts_differ_and_stay_in_the_vocabulary() {
        let a = super::bench_prompt(64, 1000, 1);
        let b = super::bench_prompt(64, 1000, 2);
        assert_ne!(a, b);
        assert!(a.iter().chain(&b).all(|&t| (250..750).contains(&t)));
    }
}
