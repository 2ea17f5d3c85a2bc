//! The chat page: the conversation list (searchable), the conversation with its answers rendered as safe Markdown
//! (thinking folded, tool calls shown as such, a stopped answer marked), and the composer with the model picker,
//! the system prompt and the sampling settings. The page's script streams answers from `/v1/chat/completions`
//! and saves the conversation through `/ui/api/chats`; a reload finds it here, rendered by the server.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use serde_json::json;

use super::chats::{Conversation, Message, Role, Summary, owner};
use super::layout::{self, Section, json_island};
use super::markdown;
use crate::AppState;
use crate::catalog::Kind;
use crate::kb::Caller;

/// A model the picker offers.
pub struct Choice {
    pub name: String,
    pub label: String,
}

/// Chat models of the store, then the knowledge bases this caller may ask (`kb:NAME`).
pub async fn choices(st: &AppState, caller: &Caller) -> Vec<Choice> {
    let cat = st.manager.catalog().clone();
    let models = tokio::task::spawn_blocking(move || {
        cat.list()
            .map(|m| crate::catalog::with_adapters(m, &cat.adapters()))
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let mut out: Vec<Choice> = models
        .into_iter()
        .filter(|m| m.kind == Kind::Chat)
        .map(|m| Choice {
            label: format!(
                "{} ({}, {})",
                m.name, m.parameter_size, m.quantization_level
            ),
            name: m.name,
        })
        .collect();
    for kb in st.kb.list(caller).await.unwrap_or_default() {
        out.push(Choice {
            name: format!("kb:{}", kb.name),
            label: format!("kb:{} (knowledge base)", kb.name),
        });
    }
    out
}

/// One message as the page shows it; `last` marks the conversation's last message (it gets "Regenerate").
fn message(i: usize, m: &Message, last: bool) -> Markup {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
        Role::Tool => "tool",
    };
    html! {
        article class={"msg " (role)} data-index=(i) {
            header.msg-head {
                span.role { (role) }
                @if let Some(model) = &m.model { span.model { (model) } }
            }
            @if let Some(r) = m.reasoning.as_deref().filter(|r| !r.trim().is_empty()) {
                details.thinking { summary { "Thinking" } div.thinking-text { (r) } }
            }
            @if m.role == Role::Assistant {
                div.content { (PreEscaped(cite(markdown::render(&m.content), m))) }
            } @else {
                div.content.plain { (m.content) }
            }
            @for call in &m.tool_calls {
                @let f = &call["function"];
                div.tool-call {
                    span.badge { "tool call" }
                    code { (f["name"].as_str().unwrap_or("?")) "(" (f["arguments"].as_str().unwrap_or("")) ")" }
                }
            }
            @if let Some(kb) = m.model.as_deref().and_then(kb_of).filter(|_| !m.sources.is_empty()) {
                details.sources open {
                    summary { "Sources" }
                    ol {
                        @for src in &m.sources {
                            li { (source_link(kb, src)) }
                        }
                    }
                }
            }
            @if m.stopped { p.stopped { "Stopped" } }
            div.msg-actions {
                button.link type="button" data-action="copy" { "Copy" }
                @if m.role == Role::User { button.link type="button" data-action="edit" { "Edit" } }
                @if m.role == Role::Assistant && last {
                    button.link type="button" data-action="regenerate" { "Regenerate" }
                }
            }
        }
    }
}

/// The knowledge base a `kb:NAME[@MODEL]` model name asks.
fn kb_of(model: &str) -> Option<&str> {
    let rest = model.strip_prefix("kb:")?;
    Some(rest.split('@').next().unwrap_or(rest))
}

/// Where source `s` (as `/v1/chat/completions` gives it) opens: its document at its place.
pub fn source_href(kb: &str, s: &serde_json::Value) -> Option<String> {
    let mut url = format!(
        "/ui/kb/{}/source?path={}",
        layout::url_escape(kb),
        layout::url_escape(s["path"].as_str()?)
    );
    for k in ["page", "heading", "start", "message_id", "event"] {
        let v = match &s[k] {
            serde_json::Value::String(v) => v.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => continue,
        };
        url.push_str(&format!("&{k}={}", layout::url_escape(&v)));
    }
    url.push_str("#cited");
    Some(url)
}

/// One line of an answer's source list: `[n] file, page 3` linking to the place.
fn source_link(kb: &str, src: &serde_json::Value) -> Markup {
    let file = src["path"]
        .as_str()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut place = Vec::new();
    if let Some(p) = src["page"].as_u64() {
        place.push(format!("page {p}"));
    }
    for k in ["heading", "event", "start"] {
        if let Some(v) = src[k].as_str() {
            place.push(v.to_string());
        }
    }
    let label = format!(
        "[{}] {file}{}{}",
        src["n"],
        if place.is_empty() { "" } else { ", " },
        place.join(", ")
    );
    match source_href(kb, src) {
        Some(href) => html! { a.source href=(href) { (label) } },
        None => html! { (label) },
    }
}

/// An answer's `[n]` citations as links to their sources (the HTML is the Markdown renderer's: `[n]` stays text).
fn cite(html: String, m: &Message) -> String {
    let Some(kb) = m.model.as_deref().and_then(kb_of) else {
        return html;
    };
    let links: std::collections::HashMap<u64, String> = m
        .sources
        .iter()
        .filter_map(|s| {
            let (n, href) = (s["n"].as_u64()?, source_href(kb, s)?);
            let title = s["path"].as_str().unwrap_or_default();
            Some((
                n,
                html! { a.cite href=(href) title=(title) { "[" (n) "]" } }.into_string(),
            ))
        })
        .collect();
    // One pass over the HTML: a link's own text is never looked at again.
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let link = (digits > 0 && after[digits..].starts_with(']'))
            .then(|| after[..digits].parse::<u64>().ok())
            .flatten()
            .and_then(|n| links.get(&n));
        match link {
            Some(l) => {
                out.push_str(l);
                rest = &after[digits + 1..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every message of a conversation.
pub fn message_list(c: &Conversation) -> Markup {
    let n = c.messages.len();
    html! {
        @for (i, m) in c.messages.iter().enumerate() { (message(i, m, i + 1 == n)) }
    }
}

fn list_items(rows: &[Summary], current: Option<&str>) -> Markup {
    html! {
        @if rows.is_empty() { li.empty { "No conversations" } }
        @for r in rows {
            li {
                @if current == Some(r.id.as_str()) {
                    a href={"/ui/c/" (r.id)} aria-current="page" data-updated=(r.updated) { (r.title) }
                } @else {
                    a href={"/ui/c/" (r.id)} data-updated=(r.updated) { (r.title) }
                }
            }
        }
    }
}

fn render_chat(
    st: &AppState,
    h: &HeaderMap,
    choices: &[Choice],
    rows: &[Summary],
    c: &Conversation,
) -> Response {
    let csrf = super::session::csrf_for(st, h);
    let signed_in = st.web.sessions.of(h).is_some();
    let current = (!c.id.is_empty()).then_some(c.id.as_str());
    let model = if c.model.is_empty() {
        choices.first().map_or("", |m| m.name.as_str())
    } else {
        c.model.as_str()
    };
    let doc = json!(c);
    let p = &c.params;
    let title = if c.id.is_empty() {
        "New chat".to_string()
    } else {
        c.shown_title()
    };
    let body = html! {
        div.chat-layout {
            aside.sidebar aria-label="Conversations" {
                a.button href="/ui" { "New chat" }
                input #chat-search type="search" placeholder="Search conversations" aria-label="Search conversations";
                ul #chat-list { (list_items(rows, current)) }
                div.sidebar-foot {
                    a href="/ui/api/chats" download="lar-conversations.json" { "Export all" }
                    label.file-button { "Import" input #import type="file" accept="application/json,.json"; }
                }
            }
            main #main.chat data-id=(c.id) {
                div.chat-head {
                    h1 #chat-title { (title) }
                    // Shown once the conversation is stored (the script shows them after its first answer).
                    span #chat-actions hidden[current.is_none()] {
                        button.link #rename type="button" { "Rename" }
                        a #export href={"/ui/api/chats/" (c.id)} download={(c.id) ".json"} { "Export" }
                        button.link.danger #delete type="button" { "Delete" }
                    }
                }
                div #messages aria-live="polite" { (message_list(c)) }
                p #status.status role="status" {}
                form #composer {
                    details.settings {
                        summary { "Model and settings" }
                        div.grid {
                            label { "Model"
                                select #model name="model" {
                                    @if choices.is_empty() { option value="" { "No chat model in the store" } }
                                    @for m in choices {
                                        @if m.name == model { option value=(m.name) selected { (m.label) } }
                                        @else { option value=(m.name) { (m.label) } }
                                    }
                                }
                            }
                            label { "Temperature" input #temperature type="number" min="0" max="2" step="0.05"
                                value=[p.temperature] placeholder="model default"; }
                            label { "Top p" input #top_p type="number" min="0" max="1" step="0.05"
                                value=[p.top_p] placeholder="model default"; }
                            label { "Max tokens" input #max_tokens type="number" min="1" step="1"
                                value=[p.max_tokens] placeholder="until the end"; }
                            label { "Seed" input #seed type="number" min="0" step="1" value=[p.seed]
                                placeholder="random"; }
                        }
                        label { "System prompt" textarea #system rows="3" { (c.system) } }
                    }
                    ul #attachments.attachments aria-label="Files for this conversation" {
                        @for a in &c.attachments {
                            li data-name=(a.name) {
                                span { "📎 " (a.name) " (" (a.text.chars().count()) " characters)" }
                                button.link type="button" data-action="detach" aria-label={"Remove " (a.name)} { "×" }
                            }
                        }
                    }
                    div.compose-row {
                        label.file-button title="Files for this conversation alone" { "Attach" input #attach type="file" multiple; }
                        textarea #prompt rows="3" placeholder="Send a message (Enter sends, Shift+Enter for a new line)"
                            aria-label="Message" required {}
                        button #send type="submit" { "Send" }
                        button #stop.danger type="button" hidden { "Stop" }
                    }
                }
                script #conversation type="application/json" { (json_island(&doc)) }
            }
        }
    };
    layout::page(&title, Section::Chat, &csrf, signed_in, body)
}

/// `f` (a conversation-store call) off the async threads; its error as an error page.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::ApiResult<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(super::html_error(e.status, &e.message)),
        Err(e) => Err(super::html_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )),
    }
}

/// The conversation list; a store that cannot be read is an error page, not an empty list.
async fn rows(st: &AppState, who: String, q: Option<String>) -> Result<Vec<Summary>, Response> {
    let web = st.web.clone();
    blocking(move || web.chats.list(&who, q.as_deref())).await
}

#[derive(Deserialize)]
pub struct Start {
    model: Option<String>,
}

/// `GET /ui[?model=NAME]`: a new conversation (with that model chosen).
pub async fn new_chat(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(q): Query<Start>,
    h: HeaderMap,
) -> Response {
    let choices = choices(&st, &caller).await;
    let rows = match rows(&st, owner(&caller), None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let c = Conversation {
        model: q.model.unwrap_or_default(),
        ..Default::default()
    };
    render_chat(&st, &h, &choices, &rows, &c)
}

async fn load(st: &AppState, caller: &Caller, id: String) -> Result<Conversation, Response> {
    let web = st.web.clone();
    let who = owner(caller);
    blocking(move || web.chats.get(&who, &id)).await
}

/// `GET /ui/c/{id}`: a stored conversation.
pub async fn chat(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Response {
    let c = match load(&st, &caller, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let choices = choices(&st, &caller).await;
    let rows = match rows(&st, owner(&caller), None).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    render_chat(&st, &h, &choices, &rows, &c)
}

/// `GET /ui/c/{id}/messages`: the messages alone (the page swaps them in after an answer is saved).
pub async fn messages(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match load(&st, &caller, id).await {
        Ok(c) => layout::html_response(message_list(&c)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
    current: Option<String>,
}

/// `GET /ui/chats?q=`: the list's items, filtered.
pub async fn chat_list(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(s): Query<Search>,
) -> Response {
    match rows(&st, owner(&caller), s.q).await {
        Ok(rows) => layout::html_response(list_items(&rows, s.current.as_deref())),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_link_to_their_place() {
        let m = Message {
            role: Role::Assistant,
            content: "The flight leaves at 9 [1], the hotel is booked [2].".into(),
            reasoning: None,
            tool_calls: vec![],
            stopped: false,
            model: Some("kb:home@smollm2".into()),
            sources: vec![
                json!({"n": 1, "path": "/kb/mail & <b>.mbox", "kind": "mail", "message_id": "<a@b>"}),
                json!({"n": 2, "path": "/kb/trip[1].pdf", "kind": "pdf", "page": 3}),
            ],
        };
        let h = message(0, &m, true).into_string();
        assert!(h.contains("href=\"/ui/kb/home/source?path=/kb/mail%20%26%20%3Cb%3E.mbox&amp;message_id=%3Ca%40b%3E#cited\""), "{h}");
        assert!(
            h.contains("href=\"/ui/kb/home/source?path=/kb/trip%5B1%5D.pdf&amp;page=3#cited\""),
            "{h}"
        );
        assert!(
            h.contains("title=\"/kb/trip[1].pdf\""),
            "a link's text is not linked again: {h}"
        );
        assert!(
            h.contains("[2] trip[1].pdf, page 3</a>"),
            "the source list: {h}"
        );
        assert!(h.contains(">[2]</a>") && !h.contains("<b>"), "{h}");
    }

    #[test]
    fn a_message_renders_inert() {
        let m = Message {
            role: Role::Assistant,
            content: "<script>alert(1)</script>\n\n[x](javascript:alert(1))".into(),
            reasoning: Some("<img src=x onerror=alert(1)>".into()),
            tool_calls: vec![
                json!({"function": {"name": "<b>f</b>", "arguments": "{\"a\":\"<i>\"}"}}),
            ],
            stopped: true,
            model: Some("<s>".into()),
            sources: vec![],
        };
        let h = message(0, &m, true).into_string();
        for bad in ["<script", "<img", "href=\"javascript", "<b>", "<i>", "<s>"] {
            assert!(!h.contains(bad), "{bad} in {h}");
        }
        assert!(h.contains("Stopped") && h.contains("Regenerate"), "{h}");
    }
}
