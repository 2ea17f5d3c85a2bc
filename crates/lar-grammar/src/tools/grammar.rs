//! [`ToolGrammar`]: the grammar of a request's tool calls in its model's syntax. Every call is one JSON object
//! naming one of the request's tools, with arguments that match that tool's schema. With `required` or a named
//! tool it holds from the first token; with `auto` it waits: the text is free until the model writes the call's
//! opening marker, and only then is the rest constrained (after the calls, the answer ends).

use lar_types::Tool;
use llguidance::toktrie::{TokEnv, TokTrie};
use serde_json::{Value, json};

use super::ToolFormat;
use crate::mask::GrammarMask;
use crate::{Constraint, Error, Grammar, Result, Vocabulary};
use lar_engine::sampler::LogitsProcessor;

/// Which calls the request allows (OpenAI's `tool_choice`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides: text, or calls.
    Auto,
    /// No calls: the tools are not offered.
    None,
    /// At least one call.
    Required,
    /// One call, to this tool.
    Function(String),
}

/// A request's tool-call grammar, compiled; [`ToolGrammar::mask`] gives each sequence its processor.
pub struct ToolGrammar {
    /// Forced: the whole answer; `auto`: what follows the opening marker.
    grammar: Grammar,
    lazy: Option<Lazy>,
}

fn call_schema(format: ToolFormat, tools: &[&Tool]) -> Result<Value> {
    let key = format.args_key();
    let mut alts = Vec::with_capacity(tools.len());
    for t in tools {
        let params = match &t.parameters {
            Value::Null => json!({"type": "object"}),
            Value::Object(o) if o.is_empty() => json!({"type": "object"}),
            p @ Value::Object(_) => {
                let mut p = p.clone();
                crate::constraint::close_objects(&mut p);
                p
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "the parameters of tool '{}' must be a JSON schema object, not {other}",
                    t.name
                )));
            }
        };
        alts.push(json!({
            "type": "object",
            "properties": {"name": {"const": t.name}, key: params},
            "required": ["name", key],
            "additionalProperties": false,
        }));
    }
    let mut schema = match alts.len() {
        1 => alts.remove(0),
        _ => json!({"anyOf": alts}),
    };
    schema["x-guidance"] =
        json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "});
    Ok(schema)
}

/// How a code model opens a call in a Markdown code block.
pub const FENCE: &str = "```json\n";

/// A Lark string literal.
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl ToolGrammar {
    /// The grammar for `tools` under `choice`, or `None` when nothing is to be enforced (`none`, or `auto` for a
    /// syntax with no marker to wait for).
    pub fn new(
        vocab: &Vocabulary,
        format: ToolFormat,
        tools: &[Tool],
        choice: &ToolChoice,
        parallel: bool,
    ) -> Result<Option<Self>> {
        let chosen: Vec<&Tool> = match choice {
            ToolChoice::None => return Ok(None),
            ToolChoice::Function(name) => {
                let t = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                    Error::Unsupported(format!(
                        "tool_choice names '{name}', which is not among the tools"
                    ))
                })?;
                vec![t]
            }
            ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
        };
        if chosen.is_empty() {
            return Ok(None);
        }
        let parallel = parallel && !matches!(choice, ToolChoice::Function(_));
        let schema = call_schema(format, &chosen)?;
        let body = format!("body: %json {schema}");
        let open = format.open();
        // A control-token marker is named as that token; otherwise it is text.
        let open_g = match vocab.control_token(open) {
            Some(id) => format!("<[{id}]>"),
            None => lit(open),
        };
        // After the opening marker: the first call, then (when parallel) more in the same syntax.
        let (first, more, tail) = match format {
            ToolFormat::Hermes | ToolFormat::Generic => (
                format!("\"\\n\" body {}", lit("\n</tool_call>")),
                format!("{} body {}", lit("\n<tool_call>\n"), lit("\n</tool_call>")),
                "",
            ),
            ToolFormat::Mistral => ("\"[\" body".into(), "\", \" body".into(), " \"]\""),
            ToolFormat::Llama3 => ("body".into(), "\";\" body".into(), ""),
        };
        let many = |more: &str| {
            if parallel {
                format!(" ({more})*")
            } else {
                String::new()
            }
        };
        let after_marker = format!("{first}{}{tail}", many(&more));
        // Calls written bare at the start of the answer, as small models often do (and Llama 3 always).
        let bare_sep = match format {
            ToolFormat::Llama3 => "\";\" body",
            _ => "\"\\n\" body",
        };
        let bare = format!("body{}", many(bare_sep));
        if *choice != ToolChoice::Auto {
            let lark = match format {
                ToolFormat::Llama3 => format!("start: {bare}\n{body}\n"),
                _ => format!("start: {open_g} {after_marker}\n{body}\n"),
            };
            let grammar = vocab.compile(&Constraint::Lark(lark))?;
            return Ok(Some(Self {
                grammar,
                lazy: None,
            }));
        }
        let grammar = vocab.compile(&Constraint::Lark(format!(
            "start: {after_marker}\n{body}\n"
        )))?;
        let (bare, fenced) = match format {
            ToolFormat::Mistral => (None, None),
            _ => (
                Some(vocab.compile(&Constraint::Lark(format!("start: {bare}\n{body}\n")))?),
                // A call in a Markdown code block, as code models write it: from the block's first line on.
                Some(vocab.compile(&Constraint::Lark(format!(
                    "start: {} body{} \"\\n```\"\n{body}\n",
                    lit(FENCE),
                    many("\"\\n\" body")
                )))?),
            ),
        };
        Ok(Some(Self {
            grammar,
            lazy: Some(Lazy {
                marker: open.as_bytes().to_vec(),
                env: vocab.env().clone(),
                bare,
                fenced,
            }),
        }))
    }

    /// A processor for one sequence.
    pub fn mask(&self) -> Box<dyn LogitsProcessor> {
        match &self.lazy {
            None => Box::new(self.grammar.mask()),
            Some(l) => Box::new(LazyMask {
                marker: l.marker.clone(),
                env: l.env.clone(),
                seen: Vec::new(),
                started: false,
                pending: Some(self.grammar.mask()),
                bare: l.bare.as_ref().map(Grammar::mask),
                fenced: l.fenced.as_ref().map(Grammar::mask),
                active: None,
            }),
        }
    }
}

/// For `auto`: what switches the grammar on.
struct Lazy {
    /// The opening marker, and the tokenizer to watch for it with.
    marker: Vec<u8>,
    env: TokEnv,
    /// The grammar of calls written bare from the start of the answer (`{"name": ...`), for syntaxes that allow it.
    bare: Option<Grammar>,
    /// The grammar of calls in a code block that starts the answer (```` ```json ````).
    fenced: Option<Grammar>,
}

/// `auto`: no constraint until the opening marker appears in the text (then the call grammar from just after it),
/// or the answer starts with `{` (then the bare-call grammar from that brace) or with a JSON code block (then the
/// fenced-call grammar from its first line).
struct LazyMask {
    marker: Vec<u8>,
    env: TokEnv,
    /// The end of the text so far (enough to find a marker split over tokens).
    seen: Vec<u8>,
    /// Something other than whitespace has been written.
    started: bool,
    pending: Option<GrammarMask>,
    bare: Option<GrammarMask>,
    fenced: Option<GrammarMask>,
    active: Option<GrammarMask>,
}

impl LazyMask {
    /// Switches `m` on, fed the text it has already been given.
    fn activate(&mut self, mut m: GrammarMask, text: &[u8]) {
        for t in self.env.tokenize_bytes(text) {
            m.accept(t);
        }
        self.active = Some(m);
    }
}

impl LogitsProcessor for LazyMask {
    fn process(&mut self, history: &[u32], logits: &mut [f32]) {
        if let Some(m) = &mut self.active {
            m.process(history, logits);
        }
    }

    fn accept(&mut self, token: u32) {
        if let Some(m) = &mut self.active {
            m.accept(token);
            return;
        }
        let trie = self.env.tok_trie();
        let bytes = trie.token(token);
        let bytes = match bytes.first() {
            Some(&TokTrie::SPECIAL_TOKEN_MARKER) => &bytes[1..],
            _ => bytes,
        };
        self.seen.extend_from_slice(bytes);
        if !self.started {
            let text = self.seen.trim_ascii_start().to_vec();
            let fence = FENCE.as_bytes();
            // A code block is known once its whole first line is there.
            let may_fence = self.fenced.is_some()
                && !text.is_empty()
                && fence.starts_with(&text[..text.len().min(fence.len())]);
            if may_fence && text.len() < fence.len() {
                return;
            }
            if !text.is_empty() {
                self.started = true;
                if may_fence && let Some(m) = self.fenced.take() {
                    self.activate(m, &text);
                    return;
                }
                if text[0] == b'{'
                    && let Some(m) = self.bare.take()
                {
                    self.activate(m, &text);
                    return;
                }
            }
        }
        let Some(at) = find(&self.seen, &self.marker) else {
            let keep = self.marker.len();
            if self.seen.len() > 4 * keep + 256 {
                self.seen.drain(..self.seen.len() - keep);
            }
            return;
        };
        let after = self.seen[at + self.marker.len()..].to_vec();
        self.seen.clear();
        if let Some(m) = self.pending.take() {
            // The rest of the token that finished the marker is already the call's first text.
            self.activate(m, &after);
        }
    }

    fn failed(&self) -> Option<String> {
        self.active.as_ref().and_then(|m| m.failed())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}
