//! A knowledge base offered to the model as a tool, in an agent loop the server runs: a chat request lists
//! `{"type": "knowledge_base", "knowledge_base": "NAME"}` among its `tools` (beside any functions of its own), the
//! model sees one function, `search_knowledge_base(query[, knowledge_base])`, and whenever it calls it the server
//! searches (as `POST /v1/kb/{name}/search` does, for the caller's key), gives the numbered results back as the
//! tool's answer and lets the model go on, up to [`MAX_ROUNDS`] generations; the last one may not call it again.
//! The answer carries every source the searches returned (numbered across them, as the model saw them) and the
//! searches made. A call of one of the client's own functions ends the loop and goes back to the client as usual.
//!
//! Every round is read as it streams (thinking, then text and calls), so a streamed request ([`super::agent_stream`])
//! gets the same answer as a whole one: the text of every round in order (a model that says "Let me look." before
//! its search keeps it), its thinking, each search as it is made, and at the end the sources.

use std::sync::Arc;

use lar_engine::Event;
use lar_grammar::tools::{Piece, ToolChoice, ToolParser};
use lar_rag::answer::Source;
use lar_rag::search::SearchOptions;
use lar_types::{ChatMessage, Role, Tool, ToolCall};
use serde_json::{Map, Value, json};

use super::Caller;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::generation::{Generation, failed_error, failure};
use crate::manager::Lease;
use crate::openai::Sampling;
use crate::openai::tools::ToolSpec;
use crate::structured::{Offer, Prepared, prepare};

/// The function the model calls to search.
pub const TOOL: &str = "search_knowledge_base";
/// Most generations of one request (the searches in between).
pub const MAX_ROUNDS: usize = 4;
/// Results one search gives the model.
const HITS: usize = 4;

/// Replaces the knowledge-base entries of `tools` by the one search function (so the whole list, `tool_choice`
/// included, parses as functions); their names, in order.
pub fn take(obj: &mut Map<String, Value>) -> ApiResult<Vec<String>> {
    let Some(Value::Array(tools)) = obj.get_mut("tools") else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    let mut rest = Vec::with_capacity(tools.len());
    // The search function takes the first knowledge base's place, so later tools keep their indexes in errors.
    let mut first_at = None;
    for (i, t) in std::mem::take(tools).into_iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("knowledge_base") {
            rest.push(t);
            continue;
        }
        first_at.get_or_insert(rest.len());
        let at = format!("tools[{i}]");
        let o = t.as_object().into_iter().flatten();
        if let Some((k, _)) = o
            .clone()
            .find(|(k, _)| !["type", "knowledge_base"].contains(&k.as_str()))
        {
            return Err(ApiError::field(
                &format!("{at}.{k}"),
                format!("{at}: unknown field '{k}'"),
            ));
        }
        let name = match t.get("knowledge_base") {
            Some(Value::String(n)) => n.clone(),
            Some(Value::Object(m))
                if m.len() == 1 && m.get("name").is_some_and(Value::is_string) =>
            {
                m["name"].as_str().unwrap_or_default().to_string()
            }
            _ => {
                return Err(ApiError::field(
                    &format!("{at}.knowledge_base"),
                    format!(
                        "{at}.knowledge_base must name a knowledge base (\"NAME\" or {{\"name\": \"NAME\"}})"
                    ),
                ));
            }
        };
        lar_rag::kb::check_name(&name)
            .map_err(|e| ApiError::field(&format!("{at}.knowledge_base"), format!("{at}: {e}")))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if !names.is_empty() {
        let clash = rest.iter().any(|t| {
            t.get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                == Some(TOOL)
        });
        if clash {
            return Err(ApiError::field(
                "tools",
                format!("'{TOOL}' is the knowledge-base tool's name: name your function otherwise"),
            ));
        }
        let t = search_tool(&names);
        let f = json!({"type": "function", "function": {
            "name": t.name, "description": t.description, "parameters": t.parameters}});
        rest.insert(first_at.unwrap_or(rest.len()), f);
    }
    *tools = rest;
    Ok(names)
}

/// The function the model sees for `kbs`.
pub fn search_tool(kbs: &[String]) -> Tool {
    let mut props = json!({"query": {"type": "string", "description": "What to look for, in the user's words"}});
    let mut required = vec!["query"];
    if kbs.len() > 1 {
        props["knowledge_base"] = json!({"type": "string", "enum": kbs});
        required.push("knowledge_base");
    }
    Tool {
        name: TOOL.into(),
        description: Some(format!(
            "Search the user's private documents (knowledge base{} {}). Results are numbered; cite them as [n].",
            if kbs.len() > 1 { "s" } else { "" },
            kbs.join(", ")
        )),
        parameters: json!({"type": "object", "properties": props, "required": required}),
    }
}

/// What a streamed loop says as it goes.
#[derive(Debug)]
pub enum Delta {
    Thinking(String),
    Text(String),
    /// One of the client's own calls (the loop ends with it).
    Call(ToolCall),
    /// A search made, as `knowledge_base_searches` lists it.
    Search(Value),
}

/// Where a streamed loop's [`Delta`]s go.
pub type Sink = tokio::sync::mpsc::Sender<Delta>;

/// Sends `d` to a streamed loop's client; one that has gone ends the loop.
async fn say(sink: Option<&Sink>, d: Delta) -> ApiResult<()> {
    match sink {
        Some(tx) => tx
            .send(d)
            .await
            .map_err(|_| ApiError::internal("the client went away")),
        None => Ok(()),
    }
}

/// What a loop produced.
#[derive(Debug)]
pub struct Outcome {
    /// The text of every round, in order.
    pub content: String,
    /// A reasoning model's thinking, every round's.
    pub thinking: String,
    /// Calls of the client's own functions (the loop stopped for them).
    pub calls: Vec<ToolCall>,
    pub finish: lar_types::FinishReason,
    pub sources: Vec<Source>,
    /// `{"knowledge_base", "query", "results"}` per search.
    pub searches: Vec<Value>,
    pub stats: Vec<Option<lar_types::GenerationStats>>,
}

/// What a loop runs with: the model, the request's sampling, its tools (the search among them), the knowledge
/// bases, and its choice to think (for a reasoning model).
pub struct Run {
    pub lease: Arc<Lease>,
    pub s: Sampling,
    pub spec: ToolSpec,
    pub kbs: Vec<String>,
    pub thinking: Option<(bool, &'static str)>,
}

/// `POST /v1/chat/completions` with knowledge-base tools: checks that the caller may read each of them, runs the
/// loop, answers as a chat completion with `sources` and `knowledge_base_searches` beside the choice.
pub async fn respond(
    st: &AppState,
    caller: &Caller,
    r: Run,
    msgs: Vec<ChatMessage>,
    model: String,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    for kb in &r.kbs {
        st.kb.config(caller, kb).await?;
    }
    if r.s.stream() {
        return Ok(super::agent_stream::respond(
            st.clone(),
            caller.clone(),
            r,
            msgs,
            model,
        ));
    }
    let o = run(st, caller, r, msgs, None).await?;
    let mut message = json!({"role": "assistant", "content": o.content});
    if !o.thinking.is_empty() {
        message["reasoning_content"] = json!(o.thinking);
        message["reasoning"] = json!(o.thinking);
    }
    if !o.calls.is_empty() {
        message["tool_calls"] = o
            .calls
            .iter()
            .map(crate::openai::tools::call_json)
            .collect();
        if o.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    let finish = if o.calls.is_empty() {
        crate::openai::finish_reason(o.finish)
    } else {
        "tool_calls"
    };
    let usage = crate::openai::Usage::of(&o.stats, 1);
    Ok(axum::Json(json!({
        "id": crate::openai::new_id("chatcmpl"),
        "object": "chat.completion",
        "created": crate::http::unix_now(),
        "model": model,
        "system_fingerprint": crate::openai::chat::fingerprint(),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage.json(),
        "sources": o.sources,
        "knowledge_base_searches": o.searches,
    }))
    .into_response())
}

/// Runs the loop for one choice, telling `sink` (when streamed) what happens as it happens.
pub async fn run(
    st: &AppState,
    caller: &Caller,
    r: Run,
    mut msgs: Vec<ChatMessage>,
    sink: Option<&Sink>,
) -> ApiResult<Outcome> {
    let Run {
        lease,
        s,
        spec,
        kbs,
        thinking,
    } = r;
    let mut out = Outcome {
        content: String::new(),
        thinking: String::new(),
        calls: Vec::new(),
        finish: lar_types::FinishReason::Stop,
        sources: Vec::new(),
        searches: Vec::new(),
        stats: Vec::new(),
    };
    // After a round whose searches were all made before, the model is asked to answer (no tools).
    let mut answer_now = false;
    for round in 0..MAX_ROUNDS {
        let last = round + 1 == MAX_ROUNDS || answer_now;
        let tools: Vec<Tool> = if last {
            spec.tools
                .iter()
                .filter(|t| t.name != TOOL)
                .cloned()
                .collect()
        } else {
            spec.tools.clone()
        };
        // A call the request demands (`required`, a named function) is the first round's; after a search the
        // model decides, as agent frameworks reset `tool_choice` after a call.
        let choice = match &spec.choice {
            _ if tools.is_empty() => ToolChoice::None,
            ToolChoice::Required | ToolChoice::Function(_) if round > 0 => ToolChoice::Auto,
            c => c.clone(),
        };
        // One call per round after the first: a small model given room repeats its search until the budget ends.
        let offer = Offer {
            tools,
            choice,
            parallel: spec.parallel && round == 0,
            format: None,
            param: "tools",
            thinking,
            split_thinking: true,
        };
        let prep = prepare(&lease, msgs.clone(), offer).await?;
        let params = s.params(prep.prompt.len(), lease.model.ctx, None)?;
        let mut req = lar_engine::Request::new(prep.prompt.clone(), params);
        if let Some(c) = &prep.constrained {
            req.processors.push(c.mask());
        }
        let mut job = Generation::start(lease.clone(), st, req)?;
        prep.reveal(&mut job);
        let r = read_round(job, &prep, sink).await?;
        out.stats.push(Some(r.stats));
        out.finish = r.finish;
        out.content.push_str(&r.content);
        out.thinking.push_str(&r.thought);
        let (searches, theirs): (Vec<ToolCall>, Vec<ToolCall>) =
            r.calls.into_iter().partition(|c| c.name == TOOL);
        // The last round offers no search: a search written anyway (a syntax without markers is not held to
        // the tools) is not run, and the loop ends with what the model said.
        if last || !theirs.is_empty() || searches.is_empty() {
            out.calls = theirs;
            return Ok(out);
        }
        let made = out.searches.len();
        let mut asked = ChatMessage::new(Role::Assistant, r.content);
        asked.tool_calls = searches.clone();
        msgs.push(asked);
        for call in searches {
            let result = search(st, caller, &kbs, &call, &mut out, sink).await?;
            let mut m = ChatMessage::new(Role::Tool, result);
            m.tool_call_id = Some(call.id.clone());
            m.name = Some(TOOL.into());
            msgs.push(m);
        }
        answer_now = out.searches.len() == made;
    }
    // Unreachable: the last round ends the loop above.
    Err(ApiError::internal("the agent loop ran out of rounds"))
}

/// What one generation of the loop said.
struct Round {
    thought: String,
    content: String,
    calls: Vec<ToolCall>,
    stats: lar_types::GenerationStats,
    finish: lar_types::FinishReason,
}

/// Reads a round as it streams: the thinking (not parsed for calls, nor sent back to the model), then the text
/// and calls; the thinking, the text and the client's own calls go to `sink` as they come.
async fn read_round(mut job: Generation, prep: &Prepared, sink: Option<&Sink>) -> ApiResult<Round> {
    let mut think = prep.think.map(|t| t.parser());
    let mut parser = prep
        .tools
        .map(|f| ToolParser::new(f, crate::openai::new_id("call")));
    let (mut thought, mut content, mut calls) = (String::new(), String::new(), Vec::new());
    loop {
        let (text, done) = match job.next().await {
            Some(Event::Token(t)) => (t.text, None),
            Some(Event::Done(f)) => {
                if let Some(e) = failure(&f) {
                    return Err(failed_error(e));
                }
                (f.text.clone(), Some(f))
            }
            None => {
                return Err(ApiError::internal(
                    "the engine ended a stream without its end",
                ));
            }
        };
        let last = done.is_some();
        let (thinking, answer) = match think.as_mut() {
            Some(p) => p.take(&text, last),
            None => (String::new(), text),
        };
        if !thinking.is_empty() {
            thought.push_str(&thinking);
            say(sink, Delta::Thinking(thinking)).await?;
        }
        let pieces = match parser.as_mut() {
            Some(p) => {
                let mut v = p.push(&answer);
                if last {
                    v.extend(p.finish());
                }
                v
            }
            None => vec![Piece::Text(answer)],
        };
        for piece in pieces {
            match piece {
                Piece::Text(t) if t.is_empty() => {}
                Piece::Text(t) => {
                    content.push_str(&t);
                    say(sink, Delta::Text(t)).await?;
                }
                Piece::Call(c) => {
                    if c.name != TOOL {
                        say(sink, Delta::Call(c.clone())).await?;
                    }
                    calls.push(c);
                }
            }
        }
        if let Some(f) = done {
            return Ok(Round {
                thought,
                content,
                calls,
                stats: f.stats,
                finish: f.reason,
            });
        }
    }
}

/// One search the model asked for: the results as the tool's answer (numbered after the sources so far).
async fn search(
    st: &AppState,
    caller: &Caller,
    kbs: &[String],
    call: &ToolCall,
    out: &mut Outcome,
    sink: Option<&Sink>,
) -> ApiResult<String> {
    let query = call
        .arguments
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kb = match call.arguments.get("knowledge_base").and_then(Value::as_str) {
        Some(k) if kbs.iter().any(|n| n == k) => k.to_string(),
        Some(k) => {
            return Ok(format!(
                "error: no knowledge base '{k}' (use one of {})",
                kbs.join(", ")
            ));
        }
        None => kbs.first().cloned().unwrap_or_default(),
    };
    if query.trim().is_empty() {
        return Ok("error: the search needs a query".into());
    }
    let same = |s: &&Value| s["knowledge_base"] == kb.as_str() && s["query"] == query;
    if out.searches.iter().any(|s| same(&s)) {
        return Ok(format!(
            "Already searched {kb} for \"{query}\": the results are above. Answer the question from them."
        ));
    }
    let opts = SearchOptions {
        k: HITS,
        ..Default::default()
    };
    let hits = st.kb.search(st, caller, &kb, query, opts).await?;
    let made = json!({"knowledge_base": kb, "query": query, "results": hits.len()});
    out.searches.push(made.clone());
    say(sink, Delta::Search(made)).await?;
    if hits.is_empty() {
        return Ok("No results.".into());
    }
    let mut text = String::new();
    for h in &hits {
        let n = out.sources.len() + 1;
        let s = Source::from_hit(n, h);
        let name = std::path::Path::new(&s.path)
            .file_name()
            .map_or(s.path.clone(), |f| f.to_string_lossy().to_string());
        text.push_str(&format!("[{n}] ({name})\n{}\n\n", s.text.trim()));
        crate::http::note_sources([s.path.as_str()]);
        out.sources.push(s);
    }
    Ok(text.trim_end().to_string())
}
