//! Structured output: what a request asks its text to match, in each API's words (OpenAI's `response_format`,
//! vLLM's `structured_outputs`, Ollama's `format`), as a [`Constraint`]; compiled with the model's own vocabulary
//! (built once per loaded model, on the first request that needs it) off the async threads. A schema the grammar
//! engine cannot enforce is a 400 naming the construct. Tools go the same way: the prompt rendered in the
//! model's own syntax (or ours, for a template without tools), and the calls' grammar compiled here. For a
//! reasoning model (its template knows thinking markers) the prompt is rendered with the request's choice to
//! think or not, and a grammar starts only once the thinking is over.

use std::sync::Arc;

use lar_engine::EngineHandle;
use lar_engine::sampler::LogitsProcessor;
use lar_grammar::reasoning::{AfterThinking, ThinkFormat, ThinkParser, ThinkTokens};
use lar_grammar::tools::{
    Piece, ToolChoice, ToolFormat, ToolGrammar, ToolParser, generic_messages,
};
use lar_grammar::{Constraint, Grammar, Vocabulary};
use lar_types::{ChatMessage, Tool, ToolCall};
use serde_json::{Map, Value};

use crate::body::kind;
use crate::error::{ApiError, ApiResult};
use crate::generation::engine;
use crate::manager::Lease;

/// OpenAI's `response_format`: `text`, `json_object`, or `json_schema` with `{name, schema, strict, description}`.
pub fn response_format(v: Option<&Value>) -> ApiResult<Option<Constraint>> {
    const P: &str = "response_format";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::field(P, format!("{P} must be an object, not {}", kind(v))))?;
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    let only = |allowed: &[&str]| -> ApiResult<()> {
        match o.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::field(
                &format!("{P}.{k}"),
                format!("{P}: unknown field '{k}' for type '{ty}'"),
            )),
            None => Ok(()),
        }
    };
    match ty {
        "text" => only(&["type"]).map(|_| None),
        "json_object" => only(&["type"]).map(|_| Some(Constraint::JsonObject)),
        "json_schema" => {
            only(&["type", "json_schema"])?;
            let js = o
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ApiError::field(
                        "response_format.json_schema",
                        "response_format.json_schema must be an object with name and schema",
                    )
                })?;
            json_schema_object(js)
        }
        other => Err(ApiError::field(
            "response_format.type",
            format!(
                "response_format.type must be text, json_object or json_schema (got '{other}')"
            ),
        )),
    }
}

fn json_schema_object(js: &Map<String, Value>) -> ApiResult<Option<Constraint>> {
    const P: &str = "response_format.json_schema";
    if let Some(k) = js
        .keys()
        .find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str()))
    {
        return Err(ApiError::field(
            &format!("{P}.{k}"),
            format!("{P}: unknown field '{k}' (name, schema, strict, description)"),
        ));
    }
    match js.get("name") {
        Some(Value::String(n)) if valid_name(n) => {}
        Some(Value::String(n)) => {
            return Err(ApiError::field(
                &format!("{P}.name"),
                format!("{P}.name '{n}' must be 1 to 64 letters, digits, '_' or '-'"),
            ));
        }
        _ => {
            return Err(ApiError::field(
                &format!("{P}.name"),
                format!("{P}.name is required (a string)"),
            ));
        }
    }
    if let Some(s) = js.get("strict").filter(|s| !s.is_null() && !s.is_boolean()) {
        return Err(ApiError::field(
            &format!("{P}.strict"),
            format!("{P}.strict must be a boolean, not {}", kind(s)),
        ));
    }
    // Lar always enforces the schema; `strict` only says the client wants that.
    let schema = js
        .get("schema")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    schema_constraint(schema, &format!("{P}.schema")).map(Some)
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn schema_constraint(schema: Value, param: &str) -> ApiResult<Constraint> {
    Constraint::schema(schema).map_err(|e| ApiError::field(param, format!("{param}: {e}")))
}

/// vLLM's `structured_outputs`: exactly one of `json` (a schema), `regex`, `choice` (a list of strings) or
/// `grammar` (Lark).
pub fn structured_outputs(v: Option<&Value>) -> ApiResult<Option<Constraint>> {
    const P: &str = "structured_outputs";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let o = v
        .as_object()
        .ok_or_else(|| ApiError::field(P, format!("{P} must be an object, not {}", kind(v))))?;
    let set: Vec<(&String, &Value)> = o.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(k, v)] = set[..] else {
        return Err(ApiError::field(
            P,
            format!("{P} takes exactly one of json, regex, choice, grammar"),
        ));
    };
    let at = format!("{P}.{k}");
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| ApiError::field(&at, format!("{at} must be a string, not {}", kind(v))))
    };
    Ok(Some(match k.as_str() {
        "json" => match v {
            // A schema sent as a JSON string, as vLLM also takes it.
            Value::String(s) => schema_constraint(
                serde_json::from_str(s)
                    .map_err(|e| ApiError::field(&at, format!("{at} is not JSON: {e}")))?,
                &at,
            )?,
            other => schema_constraint(other.clone(), &at)?,
        },
        "regex" => Constraint::Regex(text(v)?),
        "grammar" => Constraint::Lark(text(v)?),
        "choice" => {
            let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                ApiError::field(&at, format!("{at} must be a non-empty array of strings"))
            })?;
            let mut alts = Vec::with_capacity(items.len());
            for (i, c) in items.iter().enumerate() {
                let s = c.as_str().ok_or_else(|| {
                    ApiError::field(&at, format!("{at}[{i}] must be a string, not {}", kind(c)))
                })?;
                alts.push(regex_escape(s));
            }
            Constraint::Regex(format!("({})", alts.join("|")))
        }
        other => {
            return Err(ApiError::field(
                &at,
                format!("{P}: unknown field '{other}' (json, regex, choice, grammar)"),
            ));
        }
    }))
}

/// `s` as a regular expression that matches only itself.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The constraint of an OpenAI-style request (`response_format` or `structured_outputs`, not both) and the field
/// that asked for it.
pub fn of_openai(obj: &Map<String, Value>) -> ApiResult<(Option<Constraint>, &'static str)> {
    let rf = response_format(obj.get("response_format"))?;
    let so = structured_outputs(obj.get("structured_outputs"))?;
    match (rf, so) {
        (Some(_), Some(_)) => Err(ApiError::field(
            "structured_outputs",
            "send response_format or structured_outputs, not both",
        )),
        (Some(c), None) => Ok((Some(c), "response_format")),
        (None, so) => Ok((so, "structured_outputs")),
    }
}

/// Ollama's `format`: `"json"`, a JSON schema, or `""` for none.
pub fn ollama_format(v: Option<&Value>) -> ApiResult<Option<Constraint>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Constraint::JsonObject)),
        Some(Value::String(s)) => Err(ApiError::field(
            "format",
            format!("format must be \"json\" or a JSON schema (got \"{s}\")"),
        )),
        Some(schema) => schema_constraint(schema.clone(), "format").map(Some),
    }
}

/// `chat_template_kwargs` (vLLM's and llama-server's): only `enable_thinking` (a boolean) is read by Lar's
/// templates, so any other key is refused rather than ignored.
pub fn template_kwargs(obj: &Map<String, Value>) -> ApiResult<Option<bool>> {
    let f = "chat_template_kwargs";
    match obj.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => {
            if let Some(k) = o.keys().find(|k| k.as_str() != "enable_thinking") {
                return Err(ApiError::field(
                    f,
                    format!("{f}.{k} is not supported (only enable_thinking)"),
                ));
            }
            match o.get("enable_thinking") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(v) => Err(ApiError::field(
                    f,
                    format!("{f}.enable_thinking must be a boolean, not {}", kind(v)),
                )),
            }
        }
        Some(v) => Err(ApiError::field(
            f,
            format!("{f} must be an object, not {}", kind(v)),
        )),
    }
}

/// What a request's sequences are held to: an output format, or the tool calls' grammar; for a reasoning model,
/// from the end of its thinking.
pub struct Constrained {
    kind: Held,
    think: Option<ThinkTokens>,
}

enum Held {
    Output(Box<Grammar>),
    Tools(Box<ToolGrammar>),
}

impl Constrained {
    /// A processor for one sequence.
    pub fn mask(&self) -> Box<dyn LogitsProcessor> {
        let inner: Box<dyn LogitsProcessor> = match &self.kind {
            Held::Output(g) => Box::new(g.mask()),
            Held::Tools(t) => t.mask(),
        };
        match &self.think {
            Some(t) => Box::new(AfterThinking::new(inner, t.clone())),
            None => inner,
        }
    }
}

/// How a reasoning model's answer is read: its markers, and whether the prompt left it thinking.
#[derive(Clone, Copy, Debug)]
pub struct Thinking {
    pub format: ThinkFormat,
    pub inside: bool,
}

impl Thinking {
    pub fn parser(&self) -> ThinkParser {
        ThinkParser::new(self.format, self.inside)
    }

    /// A whole answer's (thinking, answer).
    pub fn split(&self, text: &str) -> (String, String) {
        lar_grammar::reasoning::split(self.format, self.inside, text)
    }
}

/// The prompt of a conversation that offers `tools`, and the syntax the model will call them in: the template
/// renders them when it knows tools, otherwise they go into the system message with our syntax.
pub fn tool_prompt(
    h: &EngineHandle,
    msgs: &[ChatMessage],
    tools: &[Tool],
    thinking: Option<bool>,
) -> ApiResult<(Vec<u32>, ToolFormat)> {
    let (_, ids, format) = tool_prompt_text(h, msgs, tools, thinking)?;
    Ok((ids, format))
}

/// [`tool_prompt`] with the prompt's text.
fn tool_prompt_text(
    h: &EngineHandle,
    msgs: &[ChatMessage],
    tools: &[Tool],
    thinking: Option<bool>,
) -> ApiResult<(String, Vec<u32>, ToolFormat)> {
    let m = h.model();
    let format = ToolFormat::detect(&m.template_source(None)?);
    let (text, ids) = if format.renders_tools() {
        m.chat_prompt_text(msgs, tools, None, thinking)?
    } else {
        m.chat_prompt_text(&generic_messages(msgs, tools), &[], None, thinking)?
    };
    Ok((text, ids, format))
}

/// The control token that opens a call in `format` (Mistral's `[TOOL_CALLS]`), with its text: the engine does
/// not show control tokens, so the parser is given this one's text.
pub fn marker_token(h: &EngineHandle, format: ToolFormat) -> Option<(u32, String)> {
    let v = &h.tokenizer().vocab;
    let open = format.open();
    v.id(open)
        .filter(|&id| v.types.get(id as usize) == Some(&lar_tokenizer::vocab::TokenType::Control))
        .map(|id| (id, open.to_string()))
}

/// Compiles the grammar of the calls `tools` allow under `choice` (`None`: nothing to enforce).
pub async fn compile_tools(
    lease: &Arc<Lease>,
    format: ToolFormat,
    tools: Vec<Tool>,
    choice: ToolChoice,
    parallel: bool,
) -> ApiResult<Option<Constrained>> {
    let lease = lease.clone();
    tokio::task::spawn_blocking(move || {
        let v = vocabulary(&lease)?;
        ToolGrammar::new(&v, format, &tools, &choice, parallel)
            .map(|g| {
                g.map(|g| Constrained {
                    kind: Held::Tools(Box::new(g)),
                    think: None,
                })
            })
            .map_err(|e| ApiError::field("tools", format!("tools: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// What a chat request offers the model and asks of its answer: tools (and how they may be used), or an output
/// format (`param` names the field that asked for it).
pub struct Offer {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub format: Option<Constraint>,
    pub param: &'static str,
    /// For a reasoning model: think (`Some(true)`), answer at once (`Some(false)`), or its default; the field
    /// that asked names it in errors.
    pub thinking: Option<(bool, &'static str)>,
    /// The route splits a reasoning model's thinking from its answer ([`Prepared::think`]); routes that do not
    /// get no thinking parser and their grammar from the first token.
    pub split_thinking: bool,
}

impl Offer {
    /// An offer of nothing: a plain answer in an output format (or none).
    pub fn format(format: Option<Constraint>, param: &'static str) -> Self {
        Self {
            tools: Vec::new(),
            choice: ToolChoice::None,
            parallel: true,
            format,
            param,
            thinking: None,
            split_thinking: false,
        }
    }
}

/// A conversation made ready to run: its prompt, the tool-call syntax when tools are offered, its constraint.
pub struct Prepared {
    pub prompt: Vec<u32>,
    pub tools: Option<ToolFormat>,
    pub constrained: Option<Constrained>,
    /// A reasoning model's markers: its answer goes through a [`ThinkParser`].
    pub think: Option<Thinking>,
    handle: EngineHandle,
}

impl Prepared {
    /// Shows a generation the control token that opens calls (see [`marker_token`]).
    pub fn reveal(&self, job: &mut crate::generation::Generation) {
        if let Some(f) = self.tools {
            job.reveal(marker_token(&self.handle, f));
        }
    }
}

/// Renders `msgs` (with the tools, when the offer has any the model may call) and tokenizes them off the async
/// threads, then compiles the offer's constraint.
pub async fn prepare(
    lease: &Arc<Lease>,
    msgs: Vec<ChatMessage>,
    offer: Offer,
) -> ApiResult<Prepared> {
    let h = engine(lease)?.clone();
    let offered =
        (!offer.tools.is_empty() && offer.choice != ToolChoice::None).then(|| offer.tools.clone());
    let h2 = h.clone();
    let want = offer.thinking.map(|(t, _)| t);
    let (text, prompt, tools, format) = tokio::task::spawn_blocking(move || {
        let m = h2.model();
        let format = ThinkFormat::detect(&m.template_source(None)?);
        let (text, prompt, tools) = match offered {
            Some(tools) => {
                let (text, p, f) = tool_prompt_text(&h2, &msgs, &tools, want)?;
                (text, p, Some(f))
            }
            None => {
                let (text, p) = m.chat_prompt_text(&msgs, &[], None, want)?;
                (text, p, None)
            }
        };
        Ok::<_, ApiError>((text, prompt, tools, format))
    })
    .await
    .map_err(ApiError::internal)??;
    if let (Some((true, param)), None) = (offer.thinking, format) {
        return Err(ApiError::field(
            param,
            format!(
                "'{}' does not think (its template has no thinking markers)",
                lease.model.entry.name
            ),
        ));
    }
    let mut think = format
        .filter(|_| offer.split_thinking)
        .map(|format| Thinking {
            format,
            inside: format.opened_by(&text),
        });
    let mut constrained = match tools {
        Some(f) => compile_tools(lease, f, offer.tools, offer.choice, offer.parallel).await?,
        None => compile(lease, offer.format, offer.param).await?,
    };
    if let (Some(c), Some(t)) = (constrained.as_mut(), think) {
        let space = vocabulary(lease)?.space().to_vec();
        let v = &h.tokenizer().vocab;
        let eog = v.eog.clone();
        c.think = v
            .id(t.format.open)
            .zip(v.id(t.format.close))
            .map(|(open, close)| ThinkTokens {
                open,
                close,
                eog,
                inside: t.inside,
                space,
            });
        // Markers the grammar cannot see as tokens: the grammar holds from the first token, so nothing of the
        // answer is thinking.
        if c.think.is_none() {
            think = None;
        }
    }
    Ok(Prepared {
        prompt,
        tools,
        constrained,
        think,
        handle: h,
    })
}

/// A whole answer's text and the calls in it (when tools were offered, in `format`'s syntax).
pub fn split_calls(format: Option<ToolFormat>, text: &str) -> (String, Vec<ToolCall>) {
    let Some(f) = format else {
        return (text.to_string(), Vec::new());
    };
    let mut p = ToolParser::new(f, crate::openai::new_id("call"));
    let mut pieces = p.push(text);
    pieces.extend(p.finish());
    let (mut t, mut c) = (String::new(), Vec::new());
    for piece in pieces {
        match piece {
            Piece::Text(s) => t.push_str(&s),
            Piece::Call(call) => c.push(call),
        }
    }
    (t, c)
}

/// Compiles `c` for the leased model (`param` names the request's field in errors).
pub async fn compile(
    lease: &Arc<Lease>,
    c: Option<Constraint>,
    param: &'static str,
) -> ApiResult<Option<Constrained>> {
    let Some(c) = c else { return Ok(None) };
    let lease = lease.clone();
    tokio::task::spawn_blocking(move || {
        let v = vocabulary(&lease)?;
        v.compile(&c)
            .map(|g| {
                Some(Constrained {
                    kind: Held::Output(Box::new(g)),
                    think: None,
                })
            })
            .map_err(|e| ApiError::field(param, format!("{param}: {e}")))
    })
    .await
    .map_err(ApiError::internal)?
}

/// The leased model's vocabulary for grammars, built on first use.
fn vocabulary(lease: &Lease) -> ApiResult<Arc<Vocabulary>> {
    let h = engine(lease)?;
    lease
        .model
        .grammar_vocab
        .get_or_init(|| {
            let m = h.model();
            Vocabulary::new(m.tokenizer.clone(), m.n_vocab)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ApiError::bad_request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn response_formats() {
        assert_eq!(
            response_format(Some(&json!({"type": "text"}))).ok(),
            Some(None)
        );
        assert_eq!(
            response_format(Some(&json!({"type": "json_object"}))).ok(),
            Some(Some(Constraint::JsonObject))
        );
        let s = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": true}});
        assert!(matches!(
            response_format(Some(&s)),
            Ok(Some(Constraint::JsonSchema(_)))
        ));
        for bad in [
            json!("json"),
            json!({"type": "xml"}),
            json!({"type": "json_object", "schema": {}}),
            json!({"type": "json_schema"}),
            json!({"type": "json_schema", "json_schema": {"schema": {}}}),
            json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "strict": "yes"}}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schemas": {}}}),
        ] {
            let e = response_format(Some(&bad)).expect_err(&bad.to_string());
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn vllm_structured_outputs_and_ollama_format() {
        assert_eq!(
            structured_outputs(Some(&json!({"choice": ["a.b", "c"]}))).ok(),
            Some(Some(Constraint::Regex(r"(a\.b|c)".into())))
        );
        assert!(structured_outputs(Some(&json!({"regex": "a", "grammar": "b"}))).is_err());
        assert!(structured_outputs(Some(&json!({"choice": []}))).is_err());
        assert!(structured_outputs(Some(&json!({"json": "{\"type\": \"object\"}"}))).is_ok());
        assert!(structured_outputs(Some(&json!({"json": "{nope"}))).is_err());
        assert_eq!(ollama_format(Some(&json!(""))).ok(), Some(None));
        assert_eq!(
            ollama_format(Some(&json!("json"))).ok(),
            Some(Some(Constraint::JsonObject))
        );
        assert!(ollama_format(Some(&json!("yaml"))).is_err());
        assert!(ollama_format(Some(&json!(7))).is_err());
    }
}
