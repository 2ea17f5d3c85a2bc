//! Training data: JSONL lines turned into token sequences with the tokens the loss is taken on.
//!
//! Three kinds of line, as TRL reads them:
//! - chat, `{"messages": [{"role", "content"}, ...]}`: rendered with the model's own chat template; the loss is on
//!   the assistant turns only. Each assistant turn's span is found from renderings, never by searching the text:
//!   the conversation up to that turn with the generation prompt open, and up to its end; the characters between
//!   are the turn (its closing tokens included, so the model learns to stop). A template that rewrites earlier turns
//!   when a later one is added (so one rendering is not the prefix of the next) is refused by line.
//! - prompt/completion, `{"prompt", "completion"}`: the loss on the completion and the end-of-sequence token.
//! - plain text, `{"text"}`: the loss on every token and the end-of-sequence token.
//!
//! Bad lines are errors naming their line; examples longer than the sequence length and examples with nothing to
//! learn are skipped and reported, never cut.

use lar_tokenizer::{ChatTemplate, Tokenizer};
use lar_types::{ChatMessage, Role};
use serde_json::Value;

use crate::error::{Error, Result};
use lar_types::json_kind as kind;

/// One training sequence: its tokens and, per token, whether it is trained on.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The line of the data file it came from (1-based).
    pub line: usize,
    pub tokens: Vec<u32>,
    pub loss: Vec<bool>,
    /// Distillation: a teacher's top tokens for each position (the loss is the KL divergence from them).
    pub soft: Option<Vec<Vec<(u32, f32)>>>,
}

impl Example {
    pub fn n_loss(&self) -> usize {
        match &self.soft {
            Some(s) => s.iter().filter(|s| !s.is_empty()).count(),
            None => self.loss.iter().filter(|l| **l).count(),
        }
    }

    /// Adds this example to a batch.
    pub fn push_to(&self, b: &mut crate::net::Batch) {
        match &self.soft {
            Some(s) => b.push_soft(&self.tokens, s),
            None => b.push(&self.tokens, &self.loss),
        }
    }
}

/// What was left out, by line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Skipped {
    /// (line, tokens) of examples longer than the sequence length.
    pub too_long: Vec<(usize, usize)>,
    /// Lines with no token to train on (e.g. a conversation without an assistant turn).
    pub no_loss: Vec<usize>,
}

/// Turns data lines into examples for one model's tokenizer and template.
pub struct Encoder<'a> {
    tok: &'a Tokenizer,
    template: Option<ChatTemplate>,
    bos: String,
    eos: String,
}

/// The kinds of line.
enum Record {
    Chat(Vec<ChatMessage>),
    Completion(String, String),
    Text(String),
}

impl<'a> Encoder<'a> {
    /// `template`: the chat template's source (or a built-in name); chat lines are refused without one.
    pub fn new(tok: &'a Tokenizer, template: Option<&str>) -> Result<Self> {
        let text = |id: Option<u32>| id.map(|i| tok.decode(&[i], true)).unwrap_or_default();
        Ok(Self {
            tok,
            template: template.map(ChatTemplate::new).transpose()?,
            bos: text(tok.vocab.bos),
            eos: text(tok.vocab.eos),
        })
    }

    /// Reads a whole JSONL file's text: the examples of at most `seq_len` tokens with something to learn, and what
    /// was skipped. A malformed line is an error naming it; so is a file with nothing to train on.
    pub fn read(&self, text: &str, seq_len: usize) -> Result<(Vec<Example>, Skipped)> {
        let mut out = Vec::new();
        let mut skipped = Skipped::default();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let ex = self.encode(line, raw)?;
            if ex.tokens.len() > seq_len {
                skipped.too_long.push((line, ex.tokens.len()));
            } else if ex.n_loss() == 0 {
                skipped.no_loss.push(line);
            } else {
                out.push(ex);
            }
        }
        if out.is_empty() {
            return Err(Error::Invalid(format!(
                "the data has no example to train on ({} too long for --seq-len {seq_len}, {} with no trainable tokens)",
                skipped.too_long.len(),
                skipped.no_loss.len()
            )));
        }
        Ok((out, skipped))
    }

    /// One line as an example.
    pub fn encode(&self, line: usize, raw: &str) -> Result<Example> {
        let bad = |msg: String| Error::Data { line, msg };
        let v: Value = serde_json::from_str(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let mut tokens = Vec::new();
        let mut loss = Vec::new();
        match parse(&v).map_err(bad)? {
            Record::Text(t) => {
                self.push(&mut tokens, &mut loss, &t, true);
                self.push_eos(&mut tokens, &mut loss).map_err(bad)?;
            }
            Record::Completion(p, c) => {
                self.push(&mut tokens, &mut loss, &p, false);
                self.push(&mut tokens, &mut loss, &c, true);
                self.push_eos(&mut tokens, &mut loss).map_err(bad)?;
            }
            Record::Chat(msgs) => {
                let spans = self.assistant_spans(&msgs).map_err(bad)?;
                let full = self.render(&msgs, false).map_err(bad)?;
                let mut at = 0;
                for (start, end) in spans {
                    self.push(&mut tokens, &mut loss, &full[at..start], false);
                    self.push(&mut tokens, &mut loss, &full[start..end], true);
                    at = end;
                }
                self.push(&mut tokens, &mut loss, &full[at..], false);
            }
        }
        if let Some(b) = self.tok.vocab.bos
            && self.tok.vocab.add_bos
            && tokens.first() != Some(&b)
        {
            tokens.insert(0, b);
            loss.insert(0, false);
        }
        Ok(Example {
            line,
            tokens,
            loss,
            soft: None,
        })
    }

    fn push(&self, tokens: &mut Vec<u32>, loss: &mut Vec<bool>, text: &str, trained: bool) {
        if text.is_empty() {
            return;
        }
        let ids = self.tok.encode(text, false, true);
        loss.extend(std::iter::repeat_n(trained, ids.len()));
        tokens.extend(ids);
    }

    fn push_eos(
        &self,
        tokens: &mut Vec<u32>,
        loss: &mut Vec<bool>,
    ) -> std::result::Result<(), String> {
        let eos = self
            .tok
            .vocab
            .eos
            .ok_or("the model has no end-of-sequence token to end a completion with")?;
        tokens.push(eos);
        loss.push(true);
        Ok(())
    }

    fn render(&self, msgs: &[ChatMessage], open: bool) -> std::result::Result<String, String> {
        let t = self
            .template
            .as_ref()
            .ok_or("a chat line, but the model has no chat template (pass one with --template)")?;
        t.render(msgs, open, &self.bos, &self.eos)
            .map_err(|e| e.to_string())
    }

    /// The byte spans of the assistant turns in the rendering of the whole conversation.
    fn assistant_spans(
        &self,
        msgs: &[ChatMessage],
    ) -> std::result::Result<Vec<(usize, usize)>, String> {
        let full = self.render(msgs, false)?;
        let mut spans = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            if m.role != Role::Assistant {
                continue;
            }
            let before = self.render(&msgs[..i], true)?;
            let through = self.render(&msgs[..=i], false)?;
            if !through.starts_with(&before) || !full.starts_with(&through) {
                return Err(format!(
                    "the chat template renders message {} differently once later messages follow; its span \
                     cannot be found from the rendering",
                    i + 1
                ));
            }
            if through.len() > before.len() {
                spans.push((before.len(), through.len()));
            }
        }
        Ok(spans)
    }
}

/// The record a JSON line holds.
fn parse(v: &Value) -> std::result::Result<Record, String> {
    let obj = v.as_object().ok_or("expected a JSON object")?;
    let string = |k: &str| -> std::result::Result<String, String> {
        match obj.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("\"{k}\" must be a string, not {}", kind(other))),
            None => Err(format!("\"{k}\" is missing")),
        }
    };
    if let Some(m) = obj.get("messages") {
        let list = m.as_array().ok_or("\"messages\" must be an array")?;
        let mut msgs = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or(format!("message {}: \"role\" must be a string", i + 1))?;
            let role = match role {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => {
                    return Err(format!(
                        "message {}: role \"{other}\" (system, user or assistant)",
                        i + 1
                    ));
                }
            };
            let content = m
                .get("content")
                .and_then(Value::as_str)
                .ok_or(format!("message {}: \"content\" must be a string", i + 1))?;
            msgs.push(ChatMessage::new(role, content));
        }
        if msgs.is_empty() {
            return Err("\"messages\" is empty".into());
        }
        return Ok(Record::Chat(msgs));
    }
    if obj.contains_key("prompt") || obj.contains_key("completion") {
        return Ok(Record::Completion(string("prompt")?, string("completion")?));
    }
    if obj.contains_key("text") {
        return Ok(Record::Text(string("text")?));
    }
    Err("expected \"messages\", \"prompt\" and \"completion\", or \"text\"".into())
}
