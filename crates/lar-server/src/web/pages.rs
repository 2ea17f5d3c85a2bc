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
    let models = tokio::task::spawn_blocking(move || cat.list())
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
                div.content { (PreEscaped(markdown::render(&m.content))) }
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
                    div.compose-row {
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

async fn rows(st: &AppState, who: String, q: Option<String>) -> Vec<Summary> {
    let web = st.web.clone();
    tokio::task::spawn_blocking(move || web.chats.list(&who, q.as_deref()))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// `GET /ui`: a new conversation.
pub async fn new_chat(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    h: HeaderMap,
) -> Response {
    let choices = choices(&st, &caller).await;
    let rows = rows(&st, owner(&caller), None).await;
    render_chat(&st, &h, &choices, &rows, &Conversation::default())
}

async fn load(st: &AppState, caller: &Caller, id: String) -> Result<Conversation, Response> {
    let web = st.web.clone();
    let who = owner(caller);
    match tokio::task::spawn_blocking(move || web.chats.get(&who, &id)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(super::html_error(e.status, &e.message)),
        Err(e) => Err(super::html_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )),
    }
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
    let rows = rows(&st, owner(&caller), None).await;
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
    let rows = rows(&st, owner(&caller), s.q).await;
    layout::html_response(list_items(&rows, s.current.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let h = message(0, &m, true).into_string();
        for bad in ["<script", "<img", "href=\"javascript", "<b>", "<i>", "<s>"] {
            assert!(!h.contains(bad), "{bad} in {h}");
        }
        assert!(h.contains("Stopped") && h.contains("Regenerate"), "{h}");
    }
}
