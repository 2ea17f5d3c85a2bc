//! `kb:NAME` and `kb:NAME@MODEL` as chat model names: the last user message is the question, the knowledge base's
//! relevant chunks become numbered sources in a system prompt that asks for `[n]` citations (lar-rag's
//! `build_prompt`, as `lar ask` uses it), and the chat model (`MODEL`, or the server's default) answers. The
//! routes return the sources, machine-readable, beside the answer. When nothing relevant is found the answer is
//! lar-rag's "I don't know" sentence, held to that exact text by a grammar, so a small model cannot make one up.

use lar_grammar::Constraint;
use lar_rag::answer::{AskOptions, DONT_KNOW, Source, attribute, build_prompt, citations};
use lar_types::{ChatMessage, Role};
use serde_json::Value;

use super::Caller;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::generation::engine;
use crate::manager::Lease;

/// A chat request addressed to a knowledge base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KbModel {
    pub kb: String,
    /// The chat model that answers (a store name).
    pub model: String,
}

/// A conversation grounded in a knowledge base.
pub struct Grounding {
    pub messages: Vec<ChatMessage>,
    /// Numbered from 1, as the prompt numbers them; empty when nothing relevant was found.
    pub sources: Vec<Source>,
    /// The answer's constraint when nothing was found: exactly [`DONT_KNOW`].
    pub forced: Option<Constraint>,
}

impl KbModel {
    /// `kb:NAME[@MODEL]` (`None` for any other model name).
    pub fn parse(st: &AppState, model: &str) -> ApiResult<Option<KbModel>> {
        let Some(rest) = model.strip_prefix("kb:") else {
            return Ok(None);
        };
        let (kb, chat) = match rest.split_once('@') {
            Some((k, m)) => (k, Some(m)),
            None => (rest, None),
        };
        lar_rag::kb::check_name(kb)
            .map_err(|e| ApiError::field("model", format!("'{model}': {e}")))?;
        let chat = match chat {
            Some("") => {
                return Err(ApiError::field(
                    "model",
                    format!("'{model}': name the chat model after '@' (kb:{kb}@MODEL)"),
                ));
            }
            Some(m) => m.to_string(),
            None => st.kb.cfg.default_model.clone().ok_or_else(|| {
                ApiError::field(
                    "model",
                    format!(
                        "'{model}' is answered by the server's default chat model and this server has none: name \
                         one (kb:{kb}@MODEL) or start the server with --model"
                    ),
                )
            })?,
        };
        if chat.starts_with("kb:") {
            return Err(ApiError::field(
                "model",
                format!("'{model}': the model after '@' is a chat model, not a knowledge base"),
            ));
        }
        Ok(Some(KbModel {
            kb: kb.to_string(),
            model: chat,
        }))
    }

    /// Retrieves the sources for the conversation's last user message and grounds the conversation in them.
    /// `answer_tokens` of the chat model's context are kept for the answer.
    pub async fn ground(
        &self,
        st: &AppState,
        caller: &Caller,
        lease: &Lease,
        msgs: Vec<ChatMessage>,
        answer_tokens: usize,
    ) -> ApiResult<Grounding> {
        let question = match msgs.last() {
            Some(m) if m.role == Role::User && !m.content.trim().is_empty() => m.content.clone(),
            _ => {
                return Err(ApiError::field(
                    "messages",
                    "a knowledge-base model answers the conversation's last message, which must be a user's \
                     question",
                ));
            }
        };
        let opts = AskOptions::default();
        let hits = st
            .kb
            .search(st, caller, &self.kb, &question, opts.search.clone())
            .await?;
        let sources = lar_rag::answer::sources_for(&hits, &opts);
        if sources.is_empty() {
            return Ok(Grounding {
                messages: msgs,
                sources,
                forced: Some(Constraint::Lark(format!(
                    "start: {}",
                    serde_json::to_string(DONT_KNOW).map_err(ApiError::internal)?
                ))),
            });
        }
        let h = engine(lease)?.clone();
        let count = |s: &str| h.tokenizer().encode(s, false, false).len();
        let (system, history): (Vec<_>, Vec<_>) = msgs[..msgs.len() - 1]
            .iter()
            .cloned()
            .partition(|m| m.role == Role::System);
        let used: usize = history.iter().map(|m| count(&m.content) + 8).sum();
        let budget = lease.model.ctx.saturating_sub(
            answer_tokens + used + system.iter().map(|m| count(&m.content)).sum::<usize>(),
        );
        let (mut grounded, sources) = build_prompt(&question, &sources, budget, &count);
        crate::http::note_sources(sources.iter().map(|s| s.path.as_str()));
        // The client's own instructions follow the grounding rules; earlier turns stay in order before the question.
        let asked = grounded
            .pop()
            .unwrap_or_else(|| ChatMessage::new(Role::User, question));
        for s in system {
            grounded[0].content.push_str("\n\n");
            grounded[0].content.push_str(&s.content);
        }
        grounded.extend(history);
        grounded.push(asked);
        Ok(Grounding {
            messages: grounded,
            sources,
            forced: None,
        })
    }
}

/// The sources a streamed answer cites by its own `[n]` (`sources`: the numbered list it was given); a stream
/// cannot add citations to text already sent.
pub fn cited_in(text: &str, sources: &Value) -> Vec<usize> {
    citations(text, sources.as_array().map_or(0, Vec::len))
}

impl Grounding {
    pub fn sources_json(&self) -> Value {
        serde_json::to_value(&self.sources).unwrap_or_default()
    }

    /// A whole answer with its citations: the model's own `[n]`, or when it wrote none (small models often do not),
    /// each sentence attributed to the source it shares the most words with, as `lar ask` does. The second value
    /// lists the sources cited; the third says whether Lar added them.
    pub fn cite(&self, text: &str) -> (String, Vec<usize>, bool) {
        if self.sources.is_empty() {
            return (text.to_string(), Vec::new(), false);
        }
        let cited = citations(text, self.sources.len());
        if !cited.is_empty() {
            return (text.to_string(), cited, false);
        }
        let (text, cited) = attribute(text, &self.sources);
        (text, cited, true)
    }
}
