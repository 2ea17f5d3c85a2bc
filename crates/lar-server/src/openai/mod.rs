//! The OpenAI API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`. What is shared by
//! the two generation routes lives here: the sampling fields and their mapping onto [`SamplingParams`] (ranges are
//! `SamplingParams::validate`'s, so the CLI and the server refuse the same values), the room left in the context,
//! ids, and the usage object.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod models;
pub mod tools;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use lar_types::SamplingParams;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::body::count;
use crate::error::{ApiError, ApiResult};

/// Most choices one request may ask for (`n`).
pub const MAX_N: usize = 16;
/// Most stop strings.
pub const MAX_STOP: usize = 16;

/// Fields that only describe the caller: accepted, and they change nothing.
pub const DESCRIPTIVE_FIELDS: &[&str] = &["user", "metadata", "store", "service_tier"];

/// The sampling fields both generation routes take.
pub const SAMPLING_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "n",
    "ignore_eos",
    "lora",
];

#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields of [`SAMPLING_FIELDS`], typed.
#[derive(Deserialize, Debug, Default)]
pub struct Sampling {
    pub model: String,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub logit_bias: Option<HashMap<String, f32>>,
    pub n: Option<i64>,
    /// Keep generating past end-of-sequence tokens (vLLM's and llama-server's extension, for benchmarks).
    pub ignore_eos: Option<bool>,
    /// llama-server's per-request adapters: `[{"id": N, "scale": S}]`, ids as `GET /lora-adapters` lists them.
    pub lora: Option<Vec<LoraPick>>,
}

/// One entry of the `lora` field.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct LoraPick {
    pub id: i64,
    pub scale: f32,
}

/// The adapter a `lora` field picks. Lar runs one adapter per request: at most one entry may have a nonzero
/// scale (an entry at scale 0 leaves that adapter off, as in llama-server); the id's existence and the scale's
/// range are the engine's checks.
pub fn lora_slot(picks: Option<&[LoraPick]>) -> ApiResult<Option<lar_models::LoraSlot>> {
    let on: Vec<&LoraPick> = picks
        .unwrap_or(&[])
        .iter()
        .filter(|p| p.scale != 0.0)
        .collect();
    match on.as_slice() {
        [] => Ok(None),
        [p] => {
            let id = u32::try_from(p.id).map_err(|_| {
                ApiError::field("lora", format!("lora id {} is not an adapter id", p.id))
            })?;
            Ok(Some(lar_models::LoraSlot { id, scale: p.scale }))
        }
        _ => Err(ApiError::field(
            "lora",
            format!(
                "{} adapters have a nonzero scale: Lar runs one adapter per request",
                on.len()
            ),
        )),
    }
}

impl Sampling {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// `n`, checked.
    pub fn n(&self) -> ApiResult<usize> {
        let n = count("n", self.n.unwrap_or(1), 1)?;
        if n > MAX_N {
            return Err(ApiError::field(
                "n",
                format!("n must be at most {MAX_N} (got {n})"),
            ));
        }
        Ok(n)
    }

    /// The engine's parameters for a prompt of `prompt_len` tokens in a context of `ctx`; `logprobs` is `None`
    /// when the request wants none, else how many alternatives per token. Asking for more tokens than the context has room for is a 400 naming both.
    pub fn params(
        &self,
        prompt_len: usize,
        ctx: usize,
        logprobs: Option<usize>,
    ) -> ApiResult<SamplingParams> {
        if prompt_len >= ctx {
            return Err(ApiError::bad_request(format!(
                "the prompt has {prompt_len} tokens, which does not fit the model's context of {ctx} tokens"
            ))
            .param("messages")
            .code("context_length_exceeded"));
        }
        let room = ctx - prompt_len;
        let (field, asked) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => ("max_completion_tokens", Some(m)),
            (None, Some(m)) => ("max_tokens", Some(m)),
            (None, None) => ("max_tokens", None),
        };
        let max_tokens = match asked {
            Some(m) => {
                let m = count(field, m, 1)?;
                if m > room {
                    return Err(ApiError::field(
                        field,
                        format!(
                            "{field} is {m}, but the model's context is {ctx} tokens and the prompt has {prompt_len}: \
                             at most {room} can be generated"
                        ),
                    )
                    .code("context_length_exceeded"));
                }
                m
            }
            None => room,
        };
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP {
            return Err(ApiError::field(
                "stop",
                format!("at most {MAX_STOP} stop strings (got {})", stop.len()),
            ));
        }
        let mut logit_bias = Vec::new();
        for (k, b) in self.logit_bias.iter().flatten() {
            let t: u32 = k.parse().map_err(|_| {
                ApiError::field(
                    "logit_bias",
                    format!("logit_bias keys are token ids; '{k}' is not one"),
                )
            })?;
            logit_bias.push((t, *b));
        }
        logit_bias.sort_by_key(|(t, _)| *t);
        let d = SamplingParams::default();
        let p = SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: match self.top_k {
                // -1 is how vLLM and llama-server spell "off".
                Some(-1) => 0,
                Some(k) => count("top_k", k, 0)?,
                None => d.top_k,
            },
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repetition_penalty.unwrap_or(1.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            seed: self.seed.map(|s| s as u64),
            max_tokens,
            stop,
            logprobs: logprobs.is_some(),
            top_logprobs: logprobs.unwrap_or(0),
            logit_bias,
            ignore_eos: self.ignore_eos.unwrap_or(false),
            ..d
        };
        p.validate()
            .map_err(|e| ApiError::field(e.param, e.to_string()))?;
        Ok(p)
    }
}

/// A fresh id with the API's prefix (`chatcmpl-...`, `cmpl-...`).
pub fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "{prefix}-{:x}{:04x}",
        t,
        N.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

/// Token counts of a request: each prompt once (its `n` choices share it), the completions summed, the prompt
/// tokens that came from the prefix cache.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt: usize,
    pub completion: usize,
    pub cached: usize,
}

impl Usage {
    /// The usage of choices laid out prompt by prompt, `n` per prompt (`None`: a choice that did not finish).
    pub fn of(stats: &[Option<lar_types::GenerationStats>], n: usize) -> Self {
        let mut u = Usage::default();
        for group in stats.chunks(n.max(1)) {
            let done = || group.iter().flatten();
            u.prompt += done().map(|s| s.prompt_tokens).max().unwrap_or(0);
            u.cached += done().map(|s| s.cached_tokens).max().unwrap_or(0);
            u.completion += done().map(|s| s.completion_tokens).sum::<usize>();
        }
        u
    }

    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(r: lar_types::FinishReason) -> &'static str {
    match r {
        lar_types::FinishReason::Length => "length",
        _ => "stop",
    }
}

/// How a request's choices start: `n` of them on one prompt, with its own logprobs scored or not, each held to a
/// constraint or not.
pub struct Choices<'a> {
    pub prompt: &'a [u32],
    pub params: &'a SamplingParams,
    pub n: usize,
    pub prompt_logprobs: Option<usize>,
    pub constrained: Option<&'a crate::structured::Constrained>,
    /// The adapter the request's `lora` field picks.
    pub lora: Option<lar_models::LoraSlot>,
}

/// Starts the choices of one prompt, appended to `gens`: the first computes the prompt, the others follow it and
/// share its blocks (unless the prompt's own logprobs are asked for: then each computes it whole). Every sequence
/// takes a lease, so the queue limit counts sequences.
pub fn start_choices(
    st: &crate::AppState,
    lease: &std::sync::Arc<crate::manager::Lease>,
    gens: &mut Vec<crate::generation::Generation>,
    c: &Choices<'_>,
) -> ApiResult<()> {
    use crate::generation::Generation;
    let first = gens.len();
    let prompt_logprobs = c.prompt_logprobs;
    for i in 0..c.n {
        let mut req = lar_engine::Request::new(c.prompt.to_vec(), seed_of(c.params, i));
        req.prompt_logprobs = prompt_logprobs;
        req.lora = c.lora;
        if let Some(k) = c.constrained {
            req.processors.push(k.mask());
        }
        if prompt_logprobs.is_none() {
            req.follows = gens.get(first).map(Generation::id);
        }
        let l = if gens.is_empty() {
            lease.clone()
        } else {
            std::sync::Arc::new(st.manager.lease_again(lease)?)
        };
        gens.push(Generation::start(l, st, req)?);
    }
    Ok(())
}

/// The seed of choice `i`: distinct choices from one seed, reproducibly.
pub fn seed_of(p: &SamplingParams, i: usize) -> SamplingParams {
    let mut p = p.clone();
    if let Some(s) = p.seed {
        p.seed = Some(s.wrapping_add(i as u64));
    }
    p
}
