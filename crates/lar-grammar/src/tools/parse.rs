//! [`ToolParser`]: the model's text, as it streams, split into plain text and tool calls. Text that might be the
//! start of a call's marker is held back until it is clear; a call is given whole once its closing marker (or the
//! end of the text) arrives. What does not parse as a call is given back as text: nothing the model wrote is lost.

use lar_types::ToolCall;
use serde_json::Value;

use super::ToolFormat;
use super::grammar::FENCE;

/// A piece of the model's answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    Text(String),
    Call(ToolCall),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Plain text (watching for the opening marker).
    Text,
    /// Inside `<tool_call>`, until `</tool_call>` (Hermes, generic).
    Call,
    /// After Mistral's or Llama 3's marker, or a `{` that starts the answer: calls until the end.
    Rest,
    /// Inside a JSON code block that starts the answer (code models write calls so), until its closing fence.
    Fence,
}

pub struct ToolParser {
    format: ToolFormat,
    buf: String,
    state: State,
    /// Nothing but whitespace has been given yet (Llama 3 calls start the answer).
    at_start: bool,
    /// The last thing given was a call (the whitespace that follows is layout).
    after_call: bool,
    calls: usize,
    id_prefix: String,
}

const CLOSE: &str = "</tool_call>";
/// A code block's closing fence.
const FENCE_CLOSE: &str = "\n```";

impl ToolParser {
    /// A parser for `format`; calls get ids `{id_prefix}_{n}`.
    pub fn new(format: ToolFormat, id_prefix: impl Into<String>) -> Self {
        Self {
            format,
            buf: String::new(),
            state: State::Text,
            at_start: true,
            after_call: false,
            calls: 0,
            id_prefix: id_prefix.into(),
        }
    }

    /// Calls found so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The next piece of text; returns what can be given now.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Text => {
                    if self.at_start && self.format != ToolFormat::Mistral {
                        // A call written bare at the start: `{"name": ...}` (Llama 3's way; small models' too).
                        let t = self.buf.trim_start();
                        let llama = self.format == ToolFormat::Llama3;
                        if t.starts_with('{') || (llama && t.starts_with(self.format.open())) {
                            self.state = State::Rest;
                            continue;
                        }
                        if let Some(body) = t.strip_prefix(FENCE) {
                            self.buf = body.to_string();
                            self.state = State::Fence;
                            continue;
                        }
                        if t.is_empty()
                            || (llama && self.format.open().starts_with(t))
                            || FENCE.starts_with(t)
                        {
                            break;
                        }
                    }
                    let open = self.format.open();
                    if let Some(i) = self.buf.find(open) {
                        let before: String = self.buf.drain(..i).collect();
                        self.text(&mut out, before);
                        self.buf.drain(..open.len());
                        self.state = if self.format == ToolFormat::Hermes
                            || self.format == ToolFormat::Generic
                        {
                            State::Call
                        } else {
                            State::Rest
                        };
                        continue;
                    }
                    let keep = partial_suffix(&self.buf, open);
                    let give: String = self.buf.drain(..self.buf.len() - keep).collect();
                    self.text(&mut out, give);
                    break;
                }
                State::Call => {
                    let Some(i) = self.buf.find(CLOSE) else { break };
                    let body: String = self.buf.drain(..i).collect();
                    self.buf.drain(..CLOSE.len());
                    self.state = State::Text;
                    self.hermes(&mut out, &body, true);
                }
                State::Fence => {
                    let Some(i) = self.buf.find(FENCE_CLOSE) else {
                        break;
                    };
                    let body: String = self.buf.drain(..i).collect();
                    self.buf.drain(..FENCE_CLOSE.len());
                    self.state = State::Text;
                    self.fenced(&mut out, &body, true);
                }
                State::Rest => break,
            }
        }
        out
    }

    /// The end of the text: whatever was held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.buf);
        match self.state {
            State::Text => self.text(&mut out, rest),
            // The model ended without the closing marker: still a call if its JSON is whole.
            State::Call => self.hermes(&mut out, &rest, false),
            State::Rest => self.rest(&mut out, &rest),
            State::Fence => self.fenced(&mut out, &rest, false),
        }
        self.state = State::Text;
        out
    }

    fn text(&mut self, out: &mut Vec<Piece>, mut t: String) {
        if self.after_call {
            // The newlines between and after calls are layout, not an answer.
            t = t.trim_start().to_string();
        }
        if t.is_empty() {
            return;
        }
        self.after_call = false;
        if !t.trim().is_empty() {
            self.at_start = false;
        }
        match out.last_mut() {
            Some(Piece::Text(prev)) => prev.push_str(&t),
            _ => out.push(Piece::Text(t)),
        }
    }

    fn hermes(&mut self, out: &mut Vec<Piece>, body: &str, closed: bool) {
        match self.call(body.trim()) {
            Some(c) => out.push(Piece::Call(c)),
            None => {
                let close = if closed { CLOSE } else { "" };
                let raw = format!("{}{body}{close}", self.format.open());
                self.text(out, raw);
            }
        }
    }

    /// The calls of a code block, all or nothing (what does not parse is given back with its fences).
    fn fenced(&mut self, out: &mut Vec<Piece>, body: &str, closed: bool) {
        let start = self.calls;
        let calls: Option<Vec<ToolCall>> =
            values(body.trim()).and_then(|v| v.iter().map(|v| self.call_of(v)).collect());
        match calls {
            Some(calls) if !calls.is_empty() => out.extend(calls.into_iter().map(Piece::Call)),
            _ => {
                self.calls = start;
                self.after_call = false;
                let close = if closed { FENCE_CLOSE } else { "" };
                self.text(out, format!("{FENCE}{body}{close}"));
            }
        }
    }

    /// Mistral's array or Llama 3's `;`-separated objects, all or nothing.
    fn rest(&mut self, out: &mut Vec<Piece>, body: &str) {
        let t = body.trim();
        let t = t
            .strip_prefix(ToolFormat::Llama3.open())
            .unwrap_or(t)
            .trim();
        let start = self.calls;
        let calls: Option<Vec<ToolCall>> =
            values(t).and_then(|v| v.iter().map(|v| self.call_of(v)).collect());
        match calls {
            Some(calls) if !calls.is_empty() => {
                out.extend(calls.into_iter().map(Piece::Call));
            }
            _ => {
                self.calls = start;
                self.after_call = false;
                let open = if self.format == ToolFormat::Mistral {
                    self.format.open()
                } else {
                    ""
                };
                self.text(out, format!("{open}{body}"));
            }
        }
    }

    fn call(&mut self, body: &str) -> Option<ToolCall> {
        let v: Value = serde_json::from_str(body).ok()?;
        self.call_of(&v)
    }

    fn call_of(&mut self, v: &Value) -> Option<ToolCall> {
        let o = v.as_object()?;
        let name = o.get("name")?.as_str()?.to_string();
        let args = o
            .get(self.format.args_key())
            .or_else(|| o.get("arguments"))
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        // Some models write the arguments as a JSON string.
        let arguments = match args {
            Value::String(s) => serde_json::from_str(&s).ok()?,
            a @ Value::Object(_) => a,
            _ => return None,
        };
        let id = match o.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => format!("{}_{}", self.id_prefix, self.calls),
        };
        self.calls += 1;
        self.after_call = true;
        Some(ToolCall {
            id,
            name,
            arguments,
        })
    }
}

/// A JSON array's items, or JSON values one after another (separated by whitespace or `;`); `None` unless all of
/// `t` parses.
fn values(t: &str) -> Option<Vec<Value>> {
    if t.is_empty() {
        return None;
    }
    if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(t) {
        return Some(items);
    }
    let mut values = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        values.push(it.next()?.ok()?);
        rest = rest[it.byte_offset()..].trim_start();
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
    }
    Some(values)
}

/// The length of the longest end of `s` that `marker` starts with (text that may yet become the marker).
fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1))
        .rev()
        .find(|&k| s.is_char_boundary(s.len() - k) && marker.starts_with(&s[s.len() - k..]))
        .unwrap_or(0)
}
