//! The Ollama API, as ollama's docs/api.md describes it, so the `ollama` SDK and Open WebUI work unchanged: `/`,
//! `/api/version`, `/api/tags`, `/api/ps`, `/api/show`, `/api/generate`, `/api/chat`, `/api/embed`,
//! `/api/embeddings`, `/api/pull`, `/api/delete`, `/api/copy`. Errors are `{"error": "..."}`, also as a line inside
//! a stream. Requests wait for a model that is loading, as Ollama's do.
//!
//! Shared here: `options` (the sampling and context fields) and their mapping onto [`SamplingParams`], the
//! `keep_alive` field, timestamps, and the NDJSON stream of a generation.

pub mod chat;
pub mod embed;
pub mod generate;
pub mod logprobs;
pub mod models;
pub mod pull;

use std::convert::Infallible;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt};
use lar_engine::Event;
use lar_types::{FinishReason, GenerationStats, SamplingParams};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::body::{check_fields, count, refuse, typed_value};
use crate::error::{ApiError, ApiResult, Shape};
use crate::generation::{Generation, failed_error, failure};
use crate::manager::KeepAlive;

/// What Ollama's clients probe for; a browser (asking for HTML) is sent to the web UI instead.
pub async fn root(h: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if crate::web::wants_html(&h) {
        return axum::response::Redirect::to("/ui").into_response();
    }
    "Ollama is running".into_response()
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// An error in Ollama's shape.
pub fn err(e: ApiError) -> ApiError {
    e.shape(Shape::Ollama)
}

const OPTIONS: &[&str] = &[
    "num_ctx",
    "num_predict",
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "seed",
    "stop",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
];
/// Options about where and how the model runs, which do not change its output: accepted.
const RUNTIME_OPTIONS: &[&str] = &[
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "low_vram",
    "f16_kv",
    "vocab_only",
    "numa",
];
/// Samplers Lar does not implement: refused rather than ignored.
const REFUSED_OPTIONS: &[&str] = &[
    "typical_p",
    "tfs_z",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "penalize_newline",
];

#[derive(Deserialize, Default, Debug)]
pub struct Options {
    pub num_ctx: Option<i64>,
    pub num_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
}

impl Options {
    /// `options` of a request body, every key known.
    pub fn parse(obj: &Map<String, Value>) -> ApiResult<Self> {
        let Some(v) = obj.get("options").filter(|v| !v.is_null()) else {
            return Ok(Self::default());
        };
        let Value::Object(o) = v else {
            return Err(ApiError::field("options", "options must be an object"));
        };
        check_fields(o, &[OPTIONS, RUNTIME_OPTIONS, REFUSED_OPTIONS]).map_err(|mut e| {
            e.param = e.param.map(|p| format!("options.{p}"));
            e
        })?;
        refuse(
            o,
            REFUSED_OPTIONS,
            "(Lar's samplers are top-k, top-p, min-p, temperature and penalties)",
        )?;
        typed_value(Value::Object(o.clone())).map_err(|mut e| {
            e.message = format!("options.{}", e.message);
            e.param = e.param.map(|p| format!("options.{p}"));
            e
        })
    }

    /// The context asked for, checked.
    pub fn ctx(&self) -> ApiResult<Option<usize>> {
        self.num_ctx.map(|c| count("num_ctx", c, 1)).transpose()
    }

    /// Tokens to keep for an answer when fitting a prompt: `num_predict` when it is positive, else 384.
    pub fn answer_tokens(&self) -> usize {
        match self.num_predict {
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => 384,
        }
    }

    /// The engine's parameters for a prompt of `prompt_len` tokens in a context of `ctx` (the loaded one, or a
    /// smaller `num_ctx`). `num_predict` -1 or -2 (or none) generate until the context is full.
    pub fn params(&self, prompt_len: usize, ctx: usize) -> ApiResult<SamplingParams> {
        let ctx = match self.ctx()? {
            Some(c) => c.min(ctx),
            None => ctx,
        };
        if prompt_len >= ctx {
            return Err(ApiError::bad_request(format!(
                "the prompt has {prompt_len} tokens, which does not fit the context of {ctx} tokens (raise num_ctx)"
            )));
        }
        let room = ctx - prompt_len;
        let max_tokens = match self.num_predict {
            None | Some(-1) | Some(-2) => room,
            Some(n) if n <= 0 => {
                return Err(ApiError::field(
                    "num_predict",
                    format!("num_predict must be positive, -1 or -2 (got {n})"),
                ));
            }
            Some(n) => (n as usize).min(room),
        };
        let stop = self.stop.clone().unwrap_or_default();
        if stop.len() > crate::openai::MAX_STOP {
            return Err(ApiError::field(
                "stop",
                format!(
                    "at most {} stop strings (got {})",
                    crate::openai::MAX_STOP,
                    stop.len()
                ),
            ));
        }
        let d = SamplingParams::default();
        let p = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: match self.top_k {
                Some(k) => count("top_k", k, 0)?,
                None => d.top_k,
            },
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            repeat_last_n: match self.repeat_last_n {
                Some(-1) => ctx,
                Some(n) => count("repeat_last_n", n, 0)?,
                None => d.repeat_last_n,
            },
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            seed: self.seed.filter(|&s| s >= 0).map(|s| s as u64),
            max_tokens,
            stop,
            ..d
        };
        p.validate()
            .map_err(|e| ApiError::field(e.param, format!("options.{e}")))?;
        Ok(p)
    }
}

/// `keep_alive` of a request body, if given.
pub fn keep_alive(obj: &Map<String, Value>) -> ApiResult<Option<KeepAlive>> {
    match obj.get("keep_alive").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(v) => KeepAlive::parse(v)
            .map(Some)
            .map_err(|e| ApiError::field("keep_alive", format!("keep_alive: {e}"))),
    }
}

/// A request without a prompt: loads `model` (waiting for it), or with `keep_alive: 0` unloads it. Returns
/// Ollama's `done_reason` for it: `load` or `unload`.
pub async fn load_or_unload(
    st: &crate::AppState,
    model: &str,
    load: &crate::catalog::LoadOptions,
    ka: Option<KeepAlive>,
) -> ApiResult<&'static str> {
    if ka == Some(KeepAlive::For(std::time::Duration::ZERO)) {
        st.manager.unload(model).await?;
        return Ok("unload");
    }
    drop(
        st.manager
            .get(model, load, ka, crate::manager::Wait::Yes)
            .await?,
    );
    Ok("load")
}

/// The time now as Ollama writes it (RFC 3339, UTC, nanoseconds).
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_nanos())
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Ollama's `done_reason`.
pub fn done_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// The timing and count fields of a final line, in nanoseconds.
pub fn final_fields(line: &mut Value, stats: &GenerationStats, started: Instant, load_secs: f64) {
    let ns = |s: f64| (s * 1e9) as u64;
    line["total_duration"] = json!(started.elapsed().as_nanos() as u64);
    line["load_duration"] = json!(ns(load_secs));
    line["prompt_eval_count"] = json!(stats.prompt_tokens);
    line["prompt_eval_duration"] = json!(ns(stats.prompt_secs));
    line["eval_count"] = json!(stats.completion_tokens);
    line["eval_duration"] = json!(ns(stats.gen_secs));
}

/// How a route turns a generation's events into lines: one for each piece of text, and the final one.
pub trait Lines: Send + 'static {
    /// Every generated token, before its text is shown.
    fn seen(&mut self, _token: u32) {}
    /// The line for a piece of text (`None`: nothing to show yet).
    fn piece(&mut self, text: &str) -> Option<Value>;
    fn done(&mut self, text: &str, f: &lar_engine::Finished) -> Value;
    /// The request's log-probabilities, where it asked for them: filled from every token, attached to the
    /// lines as they go.
    fn logprobs(&mut self) -> Option<&mut logprobs::Logprobs> {
        None
    }
}

/// A whole generation as one JSON object (`stream: false`): the pieces joined into the final line.
pub async fn whole(mut job: Generation, mut lines: impl Lines) -> ApiResult<Response> {
    let mut text = String::new();
    while let Some(ev) = job.next().await {
        match ev {
            Event::Token(t) => {
                lines.seen(t.token);
                if let Some(l) = lines.logprobs() {
                    l.push(&t);
                }
                text.push_str(&t.text);
            }
            Event::Done(f) if failure(&f).is_some() => {
                return Err(err(failed_error(failure(&f).unwrap_or_default())));
            }
            Event::Done(f) => {
                text.push_str(&f.text);
                let mut line = lines.done(&text, &f);
                if let Some(l) = lines.logprobs() {
                    l.attach(&mut line);
                }
                return Ok(Json(line).into_response());
            }
        }
    }
    Err(err(ApiError::internal("the stream ended early")))
}

/// A generation as NDJSON. While nothing comes for a while (a long prefill, a queue), a single space is sent:
/// JSON allows whitespace before a value, so every client still reads whole lines, and proxies see traffic.
pub fn ndjson(job: Generation, lines: impl Lines) -> Response {
    let s = stream::unfold(Some((job, lines)), |state| async move {
        let (mut job, mut lines) = state?;
        let every = job.keep_alive();
        let Some(ev) = job.next_or_tick(every).await else {
            return Some((Bytes::from_static(b" "), Some((job, lines))));
        };
        let (line, next) = match ev? {
            Event::Token(t) => {
                lines.seen(t.token);
                if let Some(l) = lines.logprobs() {
                    l.push(&t);
                }
                let mut line = (!t.text.is_empty()).then(|| lines.piece(&t.text)).flatten();
                if let (Some(line), Some(l)) = (line.as_mut(), lines.logprobs()) {
                    l.attach(line);
                }
                (line, Some((job, lines)))
            }
            Event::Done(f) if failure(&f).is_some() => {
                let e = err(failed_error(failure(&f).unwrap_or_default()));
                (Some(e.body()), None)
            }
            Event::Done(f) => {
                let mut line = lines.done(&f.text, &f);
                if let Some(l) = lines.logprobs() {
                    l.attach(&mut line);
                }
                (Some(line), None)
            }
        };
        let bytes = match line {
            Some(l) => Bytes::from(format!("{l}\n")),
            None => Bytes::new(),
        };
        Some((bytes, next))
    });
    ndjson_response(s.filter(|b| futures_util::future::ready(!b.is_empty())))
}

/// Lines of JSON as a streamed response.
pub fn ndjson_response(s: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(s.map(Ok::<_, Infallible>)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_796_472_000, 0), "2026-12-05T12:00:00.000000000Z");
    }
}
