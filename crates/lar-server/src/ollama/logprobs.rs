//! Ollama's `logprobs` and `top_logprobs` (0 to 20) on `/api/generate` and `/api/chat`: each generated token's
//! text, log-probability and bytes, with its most likely alternatives, on the line that shows the token (or the
//! final line, for a token whose text is still held back). `top_logprobs` without `logprobs: true` is refused:
//! Ollama would drop it without a word.

use lar_engine::EngineHandle;
use lar_types::{MAX_TOP_LOGPROBS, SamplingParams, TokenEvent};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::body::{count, typed};
use crate::error::{ApiError, ApiResult};
use crate::openai::chat::token_entry;

#[derive(Deserialize)]
struct Ask {
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
}

/// The request's ask: `None` for no log-probabilities, else how many alternatives per token.
pub fn requested(obj: &Map<String, Value>) -> ApiResult<Option<usize>> {
    let ask: Ask = typed(obj)?;
    let on = ask.logprobs.unwrap_or(false);
    let top = match ask.top_logprobs {
        None => 0,
        Some(k) => {
            let k = count("top_logprobs", k, 0)?;
            if k > MAX_TOP_LOGPROBS {
                return Err(ApiError::field(
                    "top_logprobs",
                    format!("top_logprobs must be between 0 and {MAX_TOP_LOGPROBS} (got {k})"),
                ));
            }
            k
        }
    };
    if top > 0 && !on {
        return Err(ApiError::field(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    Ok(on.then_some(top))
}

/// Sets what [`requested`] asked for on the engine's parameters.
pub fn apply(ask: Option<usize>, p: &mut SamplingParams) {
    p.logprobs = ask.is_some();
    p.top_logprobs = ask.unwrap_or(0);
}

/// The entries gathered since the last line that carried them.
pub struct Logprobs {
    tokenizer: EngineHandle,
    pending: Vec<Value>,
}

impl Logprobs {
    pub fn new(tokenizer: EngineHandle) -> Self {
        Self {
            tokenizer,
            pending: Vec::new(),
        }
    }

    /// Records a generated token's entry (a token without a log-probability was not asked for: nothing).
    pub fn push(&mut self, t: &TokenEvent) {
        let Some(lp) = t.logprob else { return };
        let tok = self.tokenizer.tokenizer();
        let mut e = token_entry(tok, t.token, Some(lp));
        // Left out when none were asked for, as Ollama does.
        if !t.top_logprobs.is_empty() {
            e["top_logprobs"] = t
                .top_logprobs
                .iter()
                .map(|a| token_entry(tok, a.token, Some(a.logprob)))
                .collect();
        }
        self.pending.push(e);
    }

    /// Puts the entries gathered so far on `line` (as its `logprobs`), where there are any.
    pub fn attach(&mut self, line: &mut Value) {
        if !self.pending.is_empty() {
            line["logprobs"] = Value::Array(std::mem::take(&mut self.pending));
        }
    }
}
