//! Reasoning models think before they answer, between markers their chat template knows (`<think>` ...
//! `</think>` for Qwen3, DeepSeek-R1 and their distills; `[THINK]` ... `[/THINK]` for Magistral). [`ThinkFormat`]
//! reads the markers off the template; [`ThinkParser`] splits a streamed answer into thinking and text, holding back
//! what may be the start of a marker, so the thinking goes to `reasoning_content` / `thinking` and only the answer
//! to `content`; [`AfterThinking`] holds a grammar back until the thinking is over, so a JSON schema or a tool call
//! constrains the answer and not the thoughts.

use lar_engine::sampler::LogitsProcessor;

/// A template's thinking markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThinkFormat {
    pub open: &'static str,
    pub close: &'static str,
}

impl ThinkFormat {
    const KNOWN: [ThinkFormat; 2] = [
        ThinkFormat {
            open: "<think>",
            close: "</think>",
        },
        ThinkFormat {
            open: "[THINK]",
            close: "[/THINK]",
        },
    ];

    /// The markers a chat template writes or strips (it mentions both), if any.
    pub fn detect(template: &str) -> Option<ThinkFormat> {
        Self::KNOWN
            .into_iter()
            .find(|f| template.contains(f.open) && template.contains(f.close))
    }

    /// Whether a prompt ends inside the thinking: the template opened it for the model (DeepSeek-R1's
    /// `<think>\n` after the assistant's header), so what comes is thinking until the close marker. Only the end
    /// counts: a marker a user wrote in a message is text.
    pub fn opened_by(&self, prompt_text: &str) -> bool {
        prompt_text.trim_end().ends_with(self.open)
    }
}

/// A piece of a reasoning model's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Thinking(String),
    Text(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing seen yet: the answer may open with the open marker.
    Start,
    Thinking,
    /// After the thinking (or an answer that did not think).
    Answer,
}

/// Splits text as it streams into thinking and answer.
pub struct ThinkParser {
    format: ThinkFormat,
    state: State,
    /// Text held back: what may be the start of a marker, or whitespace that may end the thinking.
    held: String,
    /// Whitespace right after a marker is dropped.
    trim: bool,
}

impl ThinkParser {
    /// `inside`: the prompt left the model in its thinking ([`ThinkFormat::opened_by`]).
    pub fn new(format: ThinkFormat, inside: bool) -> Self {
        Self {
            format,
            state: if inside {
                State::Thinking
            } else {
                State::Start
            },
            held: String::new(),
            trim: inside,
        }
    }

    /// Whether the thinking is over (or never began).
    pub fn answering(&self) -> bool {
        self.state == State::Answer
    }

    /// The parts `text` completes.
    pub fn push(&mut self, text: &str) -> Vec<Part> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.trim && self.state != State::Start {
                let t = self.held.trim_start();
                if t.is_empty() {
                    self.held.clear();
                    return out;
                }
                self.held = t.to_string();
                self.trim = false;
            }
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        return out;
                    }
                    if let Some(rest) = t.strip_prefix(self.format.open) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                        self.trim = true;
                    } else if self.format.open.starts_with(t) {
                        return out;
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => {
                    if self.held.is_empty() {
                        return out;
                    }
                    if let Some(at) = self.held.find(self.format.close) {
                        let thought = self.held[..at].trim_end().to_string();
                        let rest = self.held[at + self.format.close.len()..].to_string();
                        if !thought.is_empty() {
                            out.push(Part::Thinking(thought));
                        }
                        self.held = rest;
                        self.state = State::Answer;
                        self.trim = true;
                    } else {
                        // Keep back a tail that may begin the close marker, and the whitespace before it (the
                        // thinking's last line break is not part of it).
                        let keep = partial_suffix(&self.held, self.format.close);
                        let cut = self.held[..self.held.len() - keep].trim_end().len();
                        if cut > 0 {
                            out.push(Part::Thinking(self.held[..cut].to_string()));
                            self.held.drain(..cut);
                        }
                        return out;
                    }
                }
                State::Answer => {
                    if !self.held.is_empty() {
                        out.push(Part::Text(std::mem::take(&mut self.held)));
                    }
                    return out;
                }
            }
        }
    }

    /// [`ThinkParser::push`] (and at the `last` piece [`ThinkParser::finish`]) joined: (thinking, answer) of
    /// what `text` completes. Within one piece the thinking comes before the answer, so nothing is reordered.
    pub fn take(&mut self, text: &str, last: bool) -> (String, String) {
        let mut parts = self.push(text);
        if last {
            parts.extend(self.finish());
        }
        let (mut thinking, mut answer) = (String::new(), String::new());
        for part in parts {
            match part {
                Part::Thinking(t) => thinking.push_str(&t),
                Part::Text(t) => answer.push_str(&t),
            }
        }
        (thinking, answer)
    }

    /// What is left at the end: thinking that never closed is thinking; anything else is text.
    pub fn finish(&mut self) -> Vec<Part> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            State::Thinking if !held.trim().is_empty() => vec![Part::Thinking(held)],
            State::Start | State::Answer if !held.trim().is_empty() => vec![Part::Text(held)],
            _ => Vec::new(),
        }
    }
}

/// Splits a whole answer: (thinking, answer).
pub fn split(format: ThinkFormat, inside: bool, text: &str) -> (String, String) {
    ThinkParser::new(format, inside).take(text, true)
}

/// The length of the longest suffix of `s` that is a proper prefix of `marker` (on character boundaries).
fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && marker.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

/// The single-token markers of a vocabulary, for [`AfterThinking`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThinkTokens {
    pub open: u32,
    pub close: u32,
    /// The end-of-generation tokens: not allowed while thinking, so a constrained answer always follows.
    pub eog: Vec<u32>,
    /// The prompt left the model inside its thinking.
    pub inside: bool,
    /// Tokens that are only whitespace: allowed between the close marker and the constrained answer.
    pub space: Vec<u32>,
}

/// Where [`AfterThinking`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Nothing seen yet: the answer may open with the open marker.
    Start,
    Thinking,
    /// Just after the close marker: the layout a model writes there (Qwen3's `</think>\n\n`) is let through
    /// before the grammar starts.
    Between,
    /// The grammar holds.
    Answer,
}

/// A logits processor (a grammar) that starts once the thinking is over: before, only the open marker may be
/// added to what it allows; while thinking, nothing is constrained but the answer cannot end; after the close
/// marker, whitespace may come before the grammar's first token.
pub struct AfterThinking {
    inner: Box<dyn LogitsProcessor>,
    t: ThinkTokens,
    state: Gate,
}

impl AfterThinking {
    pub fn new(inner: Box<dyn LogitsProcessor>, t: ThinkTokens) -> Self {
        let state = if t.inside {
            Gate::Thinking
        } else {
            Gate::Start
        };
        Self { inner, t, state }
    }
}

impl LogitsProcessor for AfterThinking {
    fn process(&mut self, history: &[u32], logits: &mut [f32]) {
        match self.state {
            Gate::Start => {
                let open = self.t.open as usize;
                let keep = logits.get(open).copied();
                self.inner.process(history, logits);
                if let (Some(v), Some(l)) = (keep, logits.get_mut(open)) {
                    *l = v;
                }
            }
            Gate::Thinking => {
                for &e in &self.t.eog {
                    if let Some(l) = logits.get_mut(e as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            Gate::Answer => self.inner.process(history, logits),
            Gate::Between => {
                let keep: Vec<(usize, f32)> = self
                    .t
                    .space
                    .iter()
                    .filter_map(|&t| logits.get(t as usize).map(|&l| (t as usize, l)))
                    .collect();
                self.inner.process(history, logits);
                for (t, l) in keep {
                    logits[t] = l;
                }
            }
        }
    }

    fn accept(&mut self, token: u32) {
        match self.state {
            Gate::Start if token == self.t.open => self.state = Gate::Thinking,
            Gate::Thinking if token == self.t.close => self.state = Gate::Between,
            Gate::Thinking => {}
            Gate::Between if self.t.space.contains(&token) => {}
            Gate::Start | Gate::Answer | Gate::Between => {
                self.state = Gate::Answer;
                self.inner.accept(token);
            }
        }
    }

    fn failed(&self) -> Option<String> {
        self.inner.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3: ThinkFormat = ThinkFormat {
        open: "<think>",
        close: "</think>",
    };

    #[test]
    fn markers_come_from_the_template() {
        let qwen3 = "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}";
        assert_eq!(ThinkFormat::detect(qwen3), Some(QWEN3));
        assert_eq!(
            ThinkFormat::detect("{{ '<|im_start|>assistant\\n' }}"),
            None
        );
        assert!(QWEN3.opened_by("<|im_start|>assistant\n<think>\n"));
        assert!(!QWEN3.opened_by("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
        assert!(!QWEN3.opened_by("<|im_start|>assistant\n"));
        assert!(
            !QWEN3
                .opened_by("<|im_start|>user\nwhat is <think>?<|im_end|>\n<|im_start|>assistant\n")
        );
    }

    #[test]
    fn every_split_of_the_text_gives_the_same_parts() {
        let cases = [
            (
                "<think>\nLet me add 2 and 2.\n</think>\n\nIt is 4.",
                false,
                "Let me add 2 and 2.",
                "It is 4.",
            ),
            (
                "It is 4, <think> is a tag.",
                false,
                "",
                "It is 4, <think> is a tag.",
            ),
            (
                "2 + 2 = 4, so... </think>\n\nFour.",
                true,
                "2 + 2 = 4, so...",
                "Four.",
            ),
            (
                "Still thinking about </thi",
                true,
                "Still thinking about </thi",
                "",
            ),
            ("  <thi", false, "", "  <thi"),
            ("<think></think>Ok", false, "", "Ok"),
        ];
        for (text, inside, thinking, answer) in cases {
            assert_eq!(
                split(QWEN3, inside, text),
                (thinking.into(), answer.into()),
                "{text:?}"
            );
            for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                let mut p = ThinkParser::new(QWEN3, inside);
                let mut parts = p.push(&text[..cut]);
                parts.extend(p.push(&text[cut..]));
                parts.extend(p.finish());
                let (mut t, mut a) = (String::new(), String::new());
                for part in parts {
                    match part {
                        Part::Thinking(s) => t.push_str(&s),
                        Part::Text(s) => a.push_str(&s),
                    }
                }
                assert_eq!(
                    (t.as_str(), a.as_str()),
                    (thinking, answer),
                    "{text:?} cut at {cut}"
                );
            }
        }
    }

    /// Allows only token 7.
    struct Only7(Vec<u32>);

    impl LogitsProcessor for Only7 {
        fn process(&mut self, _: &[u32], logits: &mut [f32]) {
            for (i, l) in logits.iter_mut().enumerate() {
                if i != 7 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        fn accept(&mut self, t: u32) {
            self.0.push(t);
        }
    }

    #[test]
    fn the_grammar_waits_for_the_thinking_to_end() {
        let t = ThinkTokens {
            open: 1,
            close: 2,
            eog: vec![0],
            inside: false,
            space: vec![9],
        };
        let mut p = AfterThinking::new(Box::new(Only7(Vec::new())), t.clone());
        let allowed = |p: &mut AfterThinking| {
            let mut l = vec![0.0f32; 10];
            p.process(&[], &mut l);
            (0..10u32)
                .filter(|&i| l[i as usize].is_finite())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            allowed(&mut p),
            [1, 7],
            "the open marker or the grammar's first token"
        );
        p.accept(1);
        assert_eq!(
            allowed(&mut p),
            [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "thinking: anything but the end"
        );
        p.accept(5);
        p.accept(2);
        assert_eq!(
            allowed(&mut p),
            [7, 9],
            "after the close marker: whitespace, or the grammar"
        );
        p.accept(9);
        assert_eq!(allowed(&mut p), [7, 9]);
        p.accept(7);
        assert_eq!(allowed(&mut p), [7], "then the grammar alone");
        // A prompt that opened the thinking; an answer that skips it is held to the grammar at once.
        let mut q = AfterThinking::new(
            Box::new(Only7(Vec::new())),
            ThinkTokens {
                inside: true,
                ..t.clone()
            },
        );
        assert!(allowed(&mut q).contains(&3));
        let mut r = AfterThinking::new(Box::new(Only7(Vec::new())), t);
        r.accept(7);
        assert_eq!(allowed(&mut r), [7]);
    }
}
