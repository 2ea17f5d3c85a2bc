//! What a request gets back: a stream of [`Event`]s, token by token, then exactly one [`Event::Done`].
//!
//! The engine thread never waits for a consumer. Tokens go through a bounded channel with `try_send`: a consumer
//! that falls `buffer` events behind is cancelled (its stream still ends with `Done`, saying so), and one that
//! dropped its stream is cancelled at the next step. The final event does not go through the channel, so it is
//! delivered even when the channel is full: the engine puts it in a slot shared with the stream and then drops its
//! sender, and the stream, once it has read every buffered token, takes it from the slot.
//!
//! A stream can be read from blocking code ([`EventStream::blocking_next`], or as an iterator) and from async code
//! ([`EventStream::next`]); it does not need a runtime.

use std::sync::{Arc, Mutex};

use lar_types::{FinishReason, GenerationStats, TokenEvent};
use tokio::sync::mpsc;

/// The end of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub reason: FinishReason,
    pub stats: GenerationStats,
    /// Text held back until the end (an incomplete character, a possible stop string that did not match).
    pub text: String,
    /// Why the request failed (`reason` is `Error`) or was cancelled by the engine (a consumer that fell behind).
    pub error: Option<String>,
    /// The prompt's own tokens scored (requests that asked): `None` for the first token, which nothing predicts.
    pub prompt_logprobs: Option<Vec<Option<crate::scoring::PromptLogprob>>>,
    /// The stop string that ended the text (`reason` is `Stop`), if one did rather than an end-of-turn token.
    pub stop_string: Option<String>,
    /// The end-of-turn token that ended the request, when one did: sampled like any other (its logprob and
    /// alternatives), but not text and not counted in `stats.completion_tokens`. OpenAI's legacy completions list
    /// it in `logprobs` and count it in usage, and lm-evaluation-harness relies on that.
    pub end_token: Option<TokenEvent>,
}

/// What a request's stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Token(TokenEvent),
    /// The last event of a request.
    Done(Finished),
}

type Slot = Arc<Mutex<Option<Finished>>>;

/// The engine's end of a request's stream.
pub(crate) struct Outbox {
    tx: mpsc::Sender<TokenEvent>,
    done: Slot,
}

/// Why a token could not be delivered.
pub(crate) enum Undelivered {
    /// The consumer is `buffer` events behind.
    Full,
    /// The consumer dropped its stream.
    Gone,
}

impl Outbox {
    pub(crate) fn send(&self, ev: TokenEvent) -> Result<(), Undelivered> {
        self.tx.try_send(ev).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Undelivered::Full,
            mpsc::error::TrySendError::Closed(_) => Undelivered::Gone,
        })
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.tx.is_closed()
    }

    /// Ends the stream with `f` (consumes the sender, so the stream sees its end after the buffered tokens).
    pub(crate) fn finish(self, f: Finished) {
        // A poisoned lock only means a reader panicked; the slot itself is still a plain Option.
        let mut slot = self.done.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(f);
    }
}

/// A request's events, read by whoever submitted it.
pub struct EventStream {
    id: u64,
    rx: mpsc::Receiver<TokenEvent>,
    done: Slot,
    ended: bool,
}

/// A stream and its engine end, with room for `buffer` tokens in between.
pub(crate) fn channel(id: u64, buffer: usize) -> (Outbox, EventStream) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let done = Slot::default();
    (
        Outbox {
            tx,
            done: done.clone(),
        },
        EventStream {
            id,
            rx,
            done,
            ended: false,
        },
    )
}

impl EventStream {
    /// The request's id (for [`crate::EngineHandle::abort`]).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event, waiting for it; `None` after `Done`. Must not be called from inside an async runtime.
    pub fn blocking_next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        match self.rx.blocking_recv() {
            Some(t) => Some(Event::Token(t)),
            None => Some(self.end()),
        }
    }

    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        match self.rx.recv().await {
            Some(t) => Some(Event::Token(t)),
            None => Some(self.end()),
        }
    }

    fn end(&mut self) -> Event {
        self.ended = true;
        let slot = self.done.lock().unwrap_or_else(|p| p.into_inner()).take();
        Event::Done(slot.unwrap_or_else(|| Finished {
            reason: FinishReason::Error,
            stats: GenerationStats::default(),
            text: String::new(),
            error: Some("the engine stopped before this request finished".into()),
            prompt_logprobs: None,
            stop_string: None,
            end_token: None,
        }))
    }
}

impl Iterator for EventStream {
    type Item = Event;
    fn next(&mut self) -> Option<Event> {
        self.blocking_next()
    }
}
