//! The UI's conversations, kept by the server in SQLite (`ui.sqlite` in Lar's home; in memory when none is set),
//! one row per conversation and owner: with API keys, each key (by its fingerprint, never the key) sees only its
//! own. A conversation is a typed JSON document (every field known: an import with an unknown field is refused,
//! not half-read), exported and imported as that same JSON.

use std::path::PathBuf;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::blocking;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;
use crate::kb::Caller;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Most messages in one conversation.
pub const MAX_MESSAGES: usize = 10_000;
/// Most conversations in one import.
pub const MAX_IMPORT: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message as the page shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
    /// The model's thinking, shown folded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// Tool calls as the OpenAI API gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    /// The answer was stopped before its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    /// The model that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A knowledge base's numbered sources for the answer's `[n]` citations (as `/v1/chat/completions` gives them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Value>,
}

/// The sampling settings a conversation is sent with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// A file dropped into the conversation, as text (for this conversation alone).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub name: String,
    pub text: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conversation {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub system: String,
    #[serde(default)]
    pub params: Params,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// Files given to this conversation (see `web::attach`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Seconds since the epoch (set by the server).
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub updated: u64,
}

impl Conversation {
    /// Refuses what the store will not keep, saying why.
    pub fn check(&self) -> ApiResult<()> {
        if self.title.chars().count() > MAX_TITLE {
            return Err(ApiError::field(
                "title",
                format!("a title has at most {MAX_TITLE} characters"),
            ));
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(ApiError::field(
                "messages",
                format!("a conversation has at most {MAX_MESSAGES} messages"),
            ));
        }
        Ok(())
    }

    /// The title shown: its own, or the start of its first question.
    pub fn shown_title(&self) -> String {
        if !self.title.trim().is_empty() {
            return self.title.clone();
        }
        let first = self
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map_or("New chat", |m| m.content.trim());
        let mut t: String = first.chars().take(60).collect();
        if first.chars().count() > 60 {
            t.push('…');
        }
        if t.is_empty() { "New chat".into() } else { t }
    }
}

/// A row of the list.
pub struct Summary {
    pub id: String,
    pub title: String,
    pub updated: u64,
}

pub struct ChatStore {
    path: Option<PathBuf>,
    conn: Mutex<Option<Connection>>,
}

fn now() -> u64 {
    crate::http::unix_now()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Text searched by `q`: the title and every message.
fn search_text(c: &Conversation) -> String {
    let mut s = c.shown_title();
    for m in &c.messages {
        s.push('\n');
        s.push_str(&m.content);
    }
    s
}

impl ChatStore {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            conn: Mutex::new(None),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> ApiResult<T> {
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if g.is_none() {
            let c = match &self.path {
                Some(p) => Connection::open(p),
                None => Connection::open_in_memory(),
            }
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode=WAL;
                     CREATE TABLE IF NOT EXISTS conversations (
                         id TEXT PRIMARY KEY, owner TEXT NOT NULL, updated INTEGER NOT NULL,
                         title TEXT NOT NULL, search TEXT NOT NULL, doc TEXT NOT NULL);
                     CREATE INDEX IF NOT EXISTS conversations_owner ON conversations(owner, updated);",
                )?;
                Ok(c)
            })
            .map_err(|e| ApiError::internal(format!("the conversation store: {e}")))?;
            *g = Some(c);
        }
        let c = g
            .as_ref()
            .ok_or_else(|| ApiError::internal("the conversation store is not open"))?;
        f(c).map_err(|e| ApiError::internal(format!("the conversation store: {e}")))
    }

    /// Stores `c` as a new conversation of `owner`; returns its id.
    pub fn create(&self, owner: &str, mut c: Conversation) -> ApiResult<String> {
        c.check()?;
        c.id = format!("c{}", &super::session::token()[..20]);
        let t = now();
        c.created = if c.created == 0 { t } else { c.created };
        c.updated = t;
        self.write(owner, &c, true)?;
        Ok(c.id)
    }

    /// Replaces `owner`'s conversation `id`; a 404 when there is none.
    pub fn save(&self, owner: &str, id: &str, mut c: Conversation) -> ApiResult<()> {
        c.check()?;
        let old = self.get(owner, id)?;
        c.id = id.to_string();
        c.created = old.created;
        c.updated = now();
        self.write(owner, &c, false)
    }

    fn write(&self, owner: &str, c: &Conversation, new: bool) -> ApiResult<()> {
        let doc = serde_json::to_string(c).map_err(ApiError::internal)?;
        let (title, search) = (c.shown_title(), search_text(c));
        self.with(|db| {
            if new {
                db.execute(
                    "INSERT INTO conversations (id, owner, updated, title, search, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![c.id, owner, c.updated as i64, title, search, doc],
                )
            } else {
                db.execute(
                    "UPDATE conversations SET updated = ?3, title = ?4, search = ?5, doc = ?6 WHERE id = ?1 AND owner = ?2",
                    params![c.id, owner, c.updated as i64, title, search, doc],
                )
            }
        })?;
        Ok(())
    }

    /// `owner`'s conversation `id`; a 404 when there is none (or it is someone else's).
    pub fn get(&self, owner: &str, id: &str) -> ApiResult<Conversation> {
        let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no conversation '{id}'"));
        if !valid_id(id) {
            return Err(missing());
        }
        let doc: Option<String> = self.with(|db| {
            db.query_row(
                "SELECT doc FROM conversations WHERE id = ?1 AND owner = ?2",
                params![id, owner],
                |r| r.get(0),
            )
            .optional()
        })?;
        let doc = doc.ok_or_else(missing)?;
        serde_json::from_str(&doc).map_err(ApiError::internal)
    }

    /// `owner`'s conversations, newest first; with `q`, those whose title or messages contain it (any case).
    pub fn list(&self, owner: &str, q: Option<&str>) -> ApiResult<Vec<Summary>> {
        let pattern = q.filter(|q| !q.trim().is_empty()).map(|q| {
            let esc = q
                .trim()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{esc}%")
        });
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT id, title, updated FROM conversations
                 WHERE owner = ?1 AND (?2 IS NULL OR search LIKE ?2 ESCAPE '\\')
                 ORDER BY updated DESC, rowid DESC LIMIT 500",
            )?;
            let rows = stmt.query_map(params![owner, pattern], |r| {
                Ok(Summary {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    updated: r.get::<_, i64>(2)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Every conversation of `owner`, whole.
    pub fn all(&self, owner: &str) -> ApiResult<Vec<Conversation>> {
        let docs: Vec<String> = self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT doc FROM conversations WHERE owner = ?1 ORDER BY updated DESC, rowid DESC",
            )?;
            let rows = stmt.query_map(params![owner], |r| r.get(0))?;
            rows.collect()
        })?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(ApiError::internal))
            .collect()
    }

    /// Deletes; whether there was one.
    pub fn delete(&self, owner: &str, id: &str) -> ApiResult<bool> {
        self.with(|db| {
            db.execute(
                "DELETE FROM conversations WHERE id = ?1 AND owner = ?2",
                params![id, owner],
            )
        })
        .map(|n| n > 0)
    }
}

/// Whose conversations a request sees: its key's fingerprint, or everyone's (`""`) on a server without keys.
pub fn owner(caller: &Caller) -> String {
    caller
        .key
        .as_deref()
        .map(lar_lab::audit::key_fingerprint)
        .unwrap_or_default()
}

/// `POST /ui/api/chats`: one conversation, or `{"conversations": [...]}` (an export); each is stored as a new
/// conversation (a fresh id). Nothing is stored unless every one is valid.
pub async fn import(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Response> {
    let many = obj.len() == 1 && obj.contains_key("conversations");
    let list: Vec<Conversation> = if many {
        let v = obj.get("conversations").cloned().unwrap_or_default();
        crate::body::typed_value(v)?
    } else {
        vec![crate::body::typed_value(Value::Object(obj))?]
    };
    if list.len() > MAX_IMPORT {
        return Err(ApiError::bad_request(format!(
            "an import holds at most {MAX_IMPORT} conversations"
        )));
    }
    for (i, c) in list.iter().enumerate() {
        c.check().map_err(|e| {
            let msg = format!("conversation {i}: {}", e.message);
            ApiError::bad_request(msg)
        })?;
    }
    let web = st.web.clone();
    let who = owner(&caller);
    let ids = blocking(move || {
        list.into_iter()
            .map(|c| web.chats.create(&who, c))
            .collect::<ApiResult<Vec<_>>>()
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response())
}

/// `PUT /ui/api/chats/{id}`: replaces a conversation with the body.
pub async fn save(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Json<Value>> {
    let c: Conversation = crate::body::typed_value(Value::Object(obj))?;
    let web = st.web.clone();
    let who = owner(&caller);
    let id2 = id.clone();
    blocking(move || web.chats.save(&who, &id2, c)).await?;
    Ok(Json(json!({ "id": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    title: String,
}

/// `PATCH /ui/api/chats/{id}` with `{"title": ...}`.
pub async fn rename(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Json<Value>> {
    let r: Rename = crate::body::typed_value(Value::Object(obj))?;
    let web = st.web.clone();
    let who = owner(&caller);
    let id2 = id.clone();
    blocking(move || {
        let mut c = web.chats.get(&who, &id2)?;
        c.title = r.title.trim().to_string();
        web.chats.save(&who, &id2, c)
    })
    .await?;
    Ok(Json(json!({ "id": id })))
}

pub async fn delete(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let web = st.web.clone();
    let who = owner(&caller);
    let id2 = id.clone();
    if blocking(move || web.chats.delete(&who, &id2)).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no conversation '{id}'"),
        ))
    }
}

/// `GET /ui/api/chats/{id}`: the conversation as JSON (what import takes back).
pub async fn export_one(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Conversation>> {
    let web = st.web.clone();
    let who = owner(&caller);
    Ok(Json(blocking(move || web.chats.get(&who, &id)).await?))
}

/// `GET /ui/api/chats`: `{"conversations": [...]}`, every one of the caller's.
pub async fn export_all(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let web = st.web.clone();
    let who = owner(&caller);
    let all = blocking(move || web.chats.all(&who)).await?;
    Ok(Json(json!({ "conversations": all })))
}
