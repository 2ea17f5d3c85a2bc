//! Plain data shared by every Lar crate.
//!
//! Nothing here computes anything: these are the words the engine, the server and the CLI use to talk to each other
//! (sampling parameters, chat messages, token events, finish reasons). They carry `serde` derives so the server can
//! map them to its JSON shapes, but no crate below the server ever sees JSON.

use serde::{Deserialize, Serialize};

/// How the next token is chosen. The defaults are llama.cpp's (`temperature` 0.8, `top_k` 40, `top_p` 0.95,
/// `min_p` 0.05), except that penalties are off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: usize,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repetition penalty (CTRL-style: divide positive logits, multiply negative ones).
    pub repeat_penalty: f32,
    /// How many of the most recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// OpenAI-style frequency penalty: subtract `count * frequency_penalty`.
    pub frequency_penalty: f32,
    /// OpenAI-style presence penalty: subtract `presence_penalty` once a token has appeared.
    pub presence_penalty: f32,
    /// Seed of the sampler's random generator; `None` picks one from the clock.
    pub seed: Option<u64>,
    /// Stop after this many generated tokens.
    pub max_tokens: usize,
    /// Stop strings; the text is cut before the first match, also when a match spans several tokens.
    pub stop: Vec<String>,
    /// Report each generated token's log-probability ([`TokenEvent::logprob`]). Off by default: it is a pass
    /// over the whole vocabulary per token, a few percent of a small model's decode.
    #[serde(default)]
    pub logprobs: bool,
    /// Return this many most likely alternatives (with log-probabilities) for each generated token; more than 0
    /// implies `logprobs`.
    pub top_logprobs: usize,
    /// Keep generating past end-of-sequence tokens (for benchmarks).
    pub ignore_eos: bool,
    /// Added to a token's logit before sampling (OpenAI's `logit_bias`: -100 bans a token, +100 forces it).
    pub logit_bias: Vec<(u32, f32)>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
            max_tokens: 512,
            stop: Vec::new(),
            logprobs: false,
            top_logprobs: 0,
            ignore_eos: false,
            logit_bias: Vec::new(),
        }
    }
}

impl SamplingParams {
    /// Whether each token's log-probability is computed: asked for, or implied by `top_logprobs`.
    pub fn wants_logprobs(&self) -> bool {
        self.logprobs || self.top_logprobs > 0
    }

    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            max_tokens,
            ..Self::default()
        }
    }
}

/// Most alternatives [`SamplingParams::top_logprobs`] may ask for (OpenAI allows 20).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// A sampling parameter out of its range. The message names the parameter as the API field is named
/// (`temperature`, `top_p`, ...), never a command-line flag: the CLI and the server both show it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamError {
    /// The parameter, as `SamplingParams` names it.
    pub param: &'static str,
    /// What it must be.
    pub expected: String,
    /// What it was.
    pub got: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} must be {} (got {})",
            self.param, self.expected, self.got
        )
    }
}

impl std::error::Error for ParamError {}

impl SamplingParams {
    /// Checks every field's range; the first one out of range is the error. The engine calls this on every
    /// request, so each caller gets the same rules.
    pub fn validate(&self) -> Result<(), ParamError> {
        let err = |param, expected: &str, got: String| {
            Err(ParamError {
                param,
                expected: expected.into(),
                got,
            })
        };
        let finite_at_least_0 = |x: f32| x.is_finite() && x >= 0.0;
        if !finite_at_least_0(self.temperature) {
            return err("temperature", "a number >= 0", self.temperature.to_string());
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return err("top_p", "between 0 and 1", self.top_p.to_string());
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", "between 0 and 1", self.min_p.to_string());
        }
        if !finite_at_least_0(self.repeat_penalty) {
            return err(
                "repeat_penalty",
                "a number >= 0 (1 is off)",
                self.repeat_penalty.to_string(),
            );
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if !(v.is_finite() && (-2.0..=2.0).contains(&v)) {
                return err(name, "between -2 and 2", v.to_string());
            }
        }
        if self.max_tokens == 0 {
            return err("max_tokens", "at least 1", "0".into());
        }
        if self.top_logprobs > MAX_TOP_LOGPROBS {
            return err(
                "top_logprobs",
                &format!("at most {MAX_TOP_LOGPROBS}"),
                self.top_logprobs.to_string(),
            );
        }
        if let Some(s) = self.stop.iter().find(|s| s.is_empty()) {
            return err("stop", "non-empty strings", format!("{s:?}"));
        }
        if let Some((t, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| !(b.is_finite() && (-100.0..=100.0).contains(b)))
        {
            return err(
                "logit_bias",
                "between -100 and 100",
                format!("{b} for token {t}"),
            );
        }
        Ok(())
    }
}

/// Who said a chat message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
    /// For `Role::Tool`: the call this message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For `Role::Tool`: the tool that answered (Ollama's `tool_name`, OpenAI's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `Role::Assistant`: the tools it called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_call_id: None,
            name: None,
            tool_calls: Vec::new(),
        }
    }
}

/// A function the model may call: its name, what it does, and a JSON schema of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON schema (an object schema) of the arguments.
    pub parameters: serde_json::Value,
}

/// A call the model made: which function, with which arguments (a JSON object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-sequence token, or a stop string matched.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller cancelled, or stopped reading.
    Cancelled,
    /// The request failed (its forward pass failed); the event carries the error.
    Error,
}

/// A candidate token with its log-probability.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: u32,
    pub text: String,
    pub logprob: f32,
}

/// What the engine reports for each generated token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenEvent {
    pub token: u32,
    /// The text this token completes; may be empty while a multi-byte character is still incomplete, or while a
    /// possible stop string is held back.
    pub text: String,
    /// The token's log-probability, where the request asked for it ([`SamplingParams::wants_logprobs`]).
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<TokenLogprob>,
}

/// Counts and timings of one finished generation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose K/V came from the prefix cache instead of being computed.
    #[serde(default)]
    pub cached_tokens: usize,
    /// Seconds from the request's arrival to its first forward pass (waiting for a free slot or KV blocks).
    #[serde(default)]
    pub queue_secs: f64,
    pub completion_tokens: usize,
    /// Seconds from the start of the prompt pass to the first generated token (prefill).
    pub prompt_secs: f64,
    /// Seconds from the first generated token to the last (the decode steps).
    pub gen_secs: f64,
}

impl GenerationStats {
    pub fn prompt_tps(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_secs)
    }
    /// Decode speed: the first token comes out of the prompt pass, so `completion_tokens - 1` decode steps.
    pub fn gen_tps(&self) -> f64 {
        rate(self.completion_tokens.saturating_sub(1), self.gen_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// A text embedder, as retrieval sees it (the knowledge base is tested with any implementation; the CLI and the
/// server wire in the real one).
pub trait Embedder: Send + Sync {
    /// Length of each vector.
    fn dim(&self) -> usize;
    /// Most tokens one text may have (longer texts are an error unless the caller truncates).
    fn max_tokens(&self) -> usize;
    /// Tokens of `text` as the embedder counts them (special tokens included), for sizing chunks.
    fn count_tokens(&self, text: &str) -> usize;
    /// One vector per text, in order.
    fn embed(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A chat model, as the knowledge base sees it when it answers a question from retrieved sources (the CLI and the
/// server wire in the engine).
pub trait Generator {
    /// Most tokens a prompt may have (the context length), and how tokens are counted for sizing a grounded prompt.
    fn context_tokens(&self) -> usize;
    fn count_tokens(&self, text: &str) -> usize;
    /// Generates a reply to `messages` with `params`, passing each piece of text to `on_text` as it comes (returning
    /// false stops); returns the whole reply.
    fn chat(
        &mut self,
        messages: &[ChatMessage],
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

/// The JSON type of a value as error messages name it ("a string", "an array", ...), for every parser of
/// untrusted JSON (the server's bodies, response formats, training data) to say the same thing.
pub fn json_kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
