//! Waiting for a request's prompt scores: the evaluations submit prompts with `prompt_logprobs` and read each
//! one's scores back here, a failed or cancelled generation (or one that came back unscored) being an error that
//! names what was being scored.

use lar_engine::scoring::PromptLogprob;
use lar_engine::{Event, EventStream};
use lar_types::FinishReason;

use crate::{Error, Result};

/// The prompt scores of the request behind `stream` (`what` names it in errors).
pub fn prompt_scores(stream: EventStream, what: &str) -> Result<Vec<Option<PromptLogprob>>> {
    let done = stream
        .into_iter()
        .find_map(|ev| match ev {
            Event::Done(f) => Some(f),
            Event::Token(_) => None,
        })
        .ok_or(lar_engine::Error::EngineStopped)?;
    let failed = |why: String| Error::Engine(lar_engine::Error::Failed(format!("{what}: {why}")));
    if matches!(done.reason, FinishReason::Error | FinishReason::Cancelled) {
        return Err(failed(done.error.unwrap_or_default()));
    }
    done.prompt_logprobs
        .ok_or_else(|| failed("came back unscored".into()))
}
