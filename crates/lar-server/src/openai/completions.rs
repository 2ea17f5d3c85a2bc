//! `POST /v1/completions`: raw prompts (a string, a list of strings, token ids, or a list of token-id lists; control
//! tokens parsed as llama.cpp does), `n` choices each, `echo`, and `logprobs` in the legacy shape (`tokens`,
//! `token_logprobs`, `top_logprobs`, `text_offset`), with the prompt's own logprobs when `echo` is set, so
//! lm-evaluation-harness's log-likelihood tasks run against Lar.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use lar_engine::Event;
use lar_types::TokenEvent;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    DESCRIPTIVE_FIELDS, SAMPLING_FIELDS, Sampling, Usage, finish_reason, new_id, start_choices,
};
use crate::AppState;
use crate::body::{check_fields, count, refuse, typed};
use crate::catalog::LoadOptions;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, engine, failure};
use crate::http::{JsonBody, unix_now};
use crate::manager::Wait;

const FIELDS: &[&str] = &[
    "prompt",
    "echo",
    "logprobs",
    "suffix",
    "best_of",
    "response_format",
    "structured_outputs",
];
/// Most alternatives per token in the legacy `logprobs` (OpenAI allows 5; the engine gives up to 20).
const MAX_LOGPROBS: usize = lar_types::MAX_TOP_LOGPROBS;

#[derive(Deserialize)]
#[serde(untagged)]
enum Prompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct Extra {
    prompt: Prompt,
    echo: Option<bool>,
    logprobs: Option<i64>,
    best_of: Option<i64>,
}

pub async fn handle(State(st): State<AppState>, JsonBody(obj): JsonBody) -> ApiResult<Response> {
    check_fields(&obj, &[SAMPLING_FIELDS, FIELDS, DESCRIPTIVE_FIELDS])?;
    refuse(
        &obj,
        &["suffix"],
        "(fill-in-the-middle needs the model's FIM tokens; send them in the prompt)",
    )?;
    let s: Sampling = typed(&obj)?;
    let x: Extra = typed(&obj)?;
    let (constraint, param) = crate::structured::of_openai(&obj)?;
    let n = s.n()?;
    if let Some(b) = x.best_of
        && b != n as i64
    {
        return Err(ApiError::unsupported("best_of", "unless it equals n"));
    }
    let top = match x.logprobs {
        None => None,
        Some(k) => {
            let k = count("logprobs", k, 0)?;
            if k > MAX_LOGPROBS {
                return Err(ApiError::field(
                    "logprobs",
                    format!("logprobs must be at most {MAX_LOGPROBS} (got {k})"),
                ));
            }
            Some(k)
        }
    };
    let echo = x.echo.unwrap_or(false);
    if s.stream() {
        // The streamed shape carries neither; refused rather than dropped.
        if echo {
            return Err(ApiError::unsupported(
                "echo",
                "with stream: true (ask without streaming)",
            ));
        }
        if top.is_some() {
            return Err(ApiError::unsupported(
                "logprobs",
                "with stream: true (ask without streaming)",
            ));
        }
    }
    let n_prompts = match &x.prompt {
        Prompt::Text(_) | Prompt::Tokens(_) => 1,
        Prompt::Texts(v) => v.len(),
        Prompt::TokenLists(v) => v.len(),
    };
    if n_prompts == 0 {
        return Err(ApiError::field(
            "prompt",
            "prompt must not be an empty list",
        ));
    }
    if n_prompts * n > super::MAX_N {
        return Err(ApiError::field(
            "prompt",
            format!(
                "{n_prompts} prompts x n={n} choices is more than {} in one request",
                super::MAX_N
            ),
        ));
    }
    let lease = Arc::new(
        st.manager
            .get(&s.model, &LoadOptions::default(), None, Wait::No)
            .await?,
    );
    let h = engine(&lease)?.clone();
    // Tokenizing a large body is real work: off the async threads.
    let h2 = h.clone();
    let prompts: Vec<Vec<u32>> = tokio::task::spawn_blocking(move || {
        let tok = h2.tokenizer();
        match x.prompt {
            Prompt::Text(t) => vec![tok.encode(&t, true, true)],
            Prompt::Texts(ts) => ts.iter().map(|t| tok.encode(t, true, true)).collect(),
            Prompt::Tokens(ids) => vec![ids],
            Prompt::TokenLists(l) => l,
        }
    })
    .await
    .map_err(ApiError::internal)?;
    let grammar = crate::structured::compile(&lease, constraint, param).await?;
    let tok = h.tokenizer();
    let mut gens = Vec::new();
    let scored = if echo { top } else { None };
    for p in &prompts {
        let params = s.params(p.len(), lease.model.ctx, top)?;
        let choices = super::Choices {
            prompt: p,
            params: &params,
            n,
            prompt_logprobs: scored,
            constrained: grammar.as_ref(),
            lora: super::lora_slot(s.lora.as_deref())?,
        };
        start_choices(&st, &lease, &mut gens, &choices)?;
    }
    let id = new_id("cmpl");
    let created = unix_now();
    let model = lease.name();
    if s.stream() {
        let with_usage = s.include_usage();
        return Ok(stream_response(id, created, model, gens, n, with_usage).into_response());
    }
    let done = futures_util::future::join_all(gens.into_iter().map(|g| g.collect())).await;
    let done: Vec<_> = done.into_iter().collect::<ApiResult<_>>()?;
    let stats: Vec<_> = done
        .iter()
        .map(|c| Some(c.finished.stats.clone()))
        .collect();
    let usage = Usage::of(&stats, n);
    let mut choices = Vec::new();
    for (i, c) in done.into_iter().enumerate() {
        let prompt = &prompts[i / n];
        let mut text = String::new();
        let mut lp = top.map(|_| Legacy::default());
        if echo {
            let prompt_text = tok.decode(prompt, false);
            if let Some(l) = lp.as_mut() {
                let scored = c.finished.prompt_logprobs.as_deref().unwrap_or(&[]);
                for (j, &t) in prompt.iter().enumerate() {
                    let s = scored.get(j).and_then(|x| x.as_ref());
                    l.push(
                        tok,
                        t,
                        s.map(|x| x.logprob),
                        s.map(|x| &x.top[..]).unwrap_or(&[]),
                        &text,
                    );
                    text.push_str(&tok.decode(&[t], false));
                }
            }
            text = prompt_text;
        }
        if let Some(l) = lp.as_mut() {
            for t in &c.tokens {
                l.push_sampled(tok, t, &text);
                text.push_str(&t.text);
            }
            text.push_str(&c.finished.text);
            // The end-of-turn token that ended the choice is listed last (in `tokens`, not in `text`),
            // as OpenAI and vLLM list it: lm-evaluation-harness drops the last entry as the generated token.
            if let Some(t) = &c.finished.end_token {
                l.push_sampled(tok, t, &text);
            }
        } else {
            text.push_str(&c.text);
        }
        choices.push(json!({
            "index": i,
            "text": text,
            "logprobs": lp.map(|l| l.json()),
            "finish_reason": finish_reason(c.finished.reason),
        }));
    }
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": super::chat::fingerprint(),
        "choices": choices,
        "usage": usage.json(),
    }))
    .into_response())
}

/// The legacy logprobs object, built token by token.
#[derive(Default)]
struct Legacy {
    tokens: Vec<String>,
    token_logprobs: Vec<Option<f32>>,
    top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    text_offset: Vec<usize>,
}

impl Legacy {
    fn push(
        &mut self,
        tok: &lar_tokenizer::Tokenizer,
        id: u32,
        lp: Option<f32>,
        alts: &[(u32, f32)],
        text_so_far: &str,
    ) {
        // Tokens by their own text, control tokens included (`<|im_end|>`, where `text` has nothing): two of them
        // would otherwise be the same empty key among the alternatives.
        self.tokens.push(tok.decode(&[id], true));
        self.token_logprobs.push(lp);
        self.top_logprobs.push(lp.map(|_| {
            alts.iter()
                .map(|&(t, l)| (tok.decode(&[t], true), l))
                .collect()
        }));
        self.text_offset.push(text_so_far.len());
    }

    /// A sampled token with its alternatives.
    fn push_sampled(&mut self, tok: &lar_tokenizer::Tokenizer, t: &TokenEvent, text_so_far: &str) {
        let alts: Vec<(u32, f32)> = t
            .top_logprobs
            .iter()
            .map(|a| (a.token, a.logprob))
            .collect();
        self.push(tok, t.token, t.logprob, &alts, text_so_far);
    }

    fn json(self) -> Value {
        json!({
            "tokens": self.tokens,
            "token_logprobs": self.token_logprobs,
            "top_logprobs": self.top_logprobs,
            "text_offset": self.text_offset,
        })
    }
}

fn stream_response(
    id: String,
    created: u64,
    model: String,
    gens: Vec<Generation>,
    n: usize,
    with_usage: bool,
) -> Response {
    let meta = Arc::new((id, created, model));
    let every = gens
        .first()
        .map_or(crate::DEFAULT_STREAM_KEEPALIVE, Generation::keep_alive);
    let usage = Arc::new(std::sync::Mutex::new(vec![None; gens.len()]));
    let chunk = move |meta: &(String, u64, String), choices: Value, with_usage: bool| {
        let mut c = json!({
            "id": meta.0, "object": "text_completion", "created": meta.1, "model": meta.2,
            "choices": choices,
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        SseEvent::default().data(c.to_string())
    };
    let per_choice = gens.into_iter().enumerate().map(|(i, g)| {
        let (meta, usage) = (meta.clone(), usage.clone());
        stream::unfold(Some(g), move |g| {
            let (meta, usage) = (meta.clone(), usage.clone());
            async move {
                let mut g = g?;
                let ev = g.next().await?;
                let (text, reason, next) = match ev {
                    Event::Token(TokenEvent { text, .. }) if text.is_empty() => {
                        return Some((None, Some(g)));
                    }
                    Event::Token(t) => (t.text, Value::Null, Some(g)),
                    Event::Done(f) if failure(&f).is_some() => {
                        let e = crate::generation::failed_error(failure(&f).unwrap_or_default());
                        return Some((Some(SseEvent::default().data(e.body().to_string())), None));
                    }
                    Event::Done(f) => {
                        usage.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(f.stats.clone());
                        (f.text, finish_reason(f.reason).into(), None)
                    }
                };
                let c = chunk(
                    &meta,
                    json!([{"index": i, "text": text, "logprobs": null, "finish_reason": reason}]),
                    with_usage,
                );
                Some((Some(c), next))
            }
        })
        .filter_map(|c| async move { c })
        .boxed()
    });
    let per_choice: Vec<_> = per_choice.collect();
    let tail_meta = meta.clone();
    let tail = stream::once(async move {
        let mut out = Vec::new();
        if with_usage {
            let u = Usage::of(&usage.lock().unwrap_or_else(|p| p.into_inner()), n);
            let c = json!({
                "id": tail_meta.0, "object": "text_completion", "created": tail_meta.1, "model": tail_meta.2,
                "choices": [], "usage": u.json(),
            });
            out.push(SseEvent::default().data(c.to_string()));
        }
        out.push(SseEvent::default().data("[DONE]"));
        out
    })
    .flat_map(stream::iter);
    crate::generation::sse(stream::select_all(per_choice).chain(tail).map(Ok), every)
}
