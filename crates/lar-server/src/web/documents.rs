//! Documents: knowledge bases from the page. Create one (an embedding model of the store), drop files or a folder
//! on it (each file `PUT` into the knowledge base's `uploads/` folder, its relative path checked part by part), then
//! ingest them with lar-rag's own ingest, its progress streamed as NDJSON and its report (what was read, what was
//! skipped and why) shown at the end. Asking is the chat page with the `kb:NAME` model; each `[n]` of an answer
//! links to [`source`], which shows the cited document at its place (PDF page, heading, mail message, calendar
//! event, transcript time). Creating and adding need a key not limited to some knowledge bases.

use std::path::{Component, Path, PathBuf};

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use lar_rag::doc::{Document, Location};
use lar_rag::ingest::{self, Progress, Root};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::blocking;
use super::layout::{self, Section};
use crate::AppState;
use crate::catalog::{Kind, LoadOptions, Runner};
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;
use crate::kb::{Caller, rag_error as rag};
use crate::manager::Wait;

/// Deepest folder an upload may create under `uploads/`.
const MAX_DEPTH: usize = 8;

fn root(st: &AppState) -> ApiResult<PathBuf> {
    st.kb.cfg.root.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this server serves no knowledge bases",
        )
    })
}

/// Creating a knowledge base or adding to one: any caller but a key limited to some knowledge bases.
fn may_write(st: &AppState, caller: &Caller) -> ApiResult<()> {
    match caller.key.as_deref() {
        Some(k) if st.kb.cfg.grants.contains_key(k) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this key may read some knowledge bases but not create or change them",
        )),
        _ => Ok(()),
    }
}

/// An uploaded file's path relative to `uploads/`: plain names only (no `..`, no root, no drive, no backslash).
pub fn upload_path(rel: &str) -> ApiResult<PathBuf> {
    let bad =
        |why: &str| ApiError::bad_request(format!("'{rel}' cannot be a file name here: {why}"));
    if rel.is_empty() || rel.contains('\\') || rel.contains('\0') {
        return Err(bad("empty, or a backslash or NUL in it"));
    }
    let p = Path::new(rel);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) if n.len() <= 255 && !n.to_string_lossy().starts_with('.') => {
                out.push(n)
            }
            Component::Normal(_) => return Err(bad("a part is hidden or too long")),
            _ => return Err(bad("only plain names, no '..' or absolute paths")),
        }
    }
    if out.components().count() > MAX_DEPTH {
        return Err(bad("folders too deep"));
    }
    Ok(out)
}

/// `GET /ui/kb`: the knowledge bases, a form to make one, and a drop zone on each.
pub async fn page(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    h: HeaderMap,
) -> Response {
    let kbs = st.kb.list(&caller).await.unwrap_or_default();
    let cat = st.manager.catalog().clone();
    let embedders: Vec<String> = tokio::task::spawn_blocking(move || cat.list())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.kind == Kind::Embed)
        .map(|m| m.name)
        .collect();
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let served = st.kb.cfg.root.is_some();
    let body = html! {
        main #main.documents {
            h1 { "Documents" }
            @if !served {
                p.empty { "This server serves no knowledge bases (it was started with --no-kb)." }
            } @else {
                form #kb-create.pull {
                    label { "Name" input #kb-name type="text" required pattern="[A-Za-z0-9_-]+" maxlength="64"; }
                    label { "Embedding model"
                        select #kb-embedder {
                            @if embedders.is_empty() { option value="" { "No embedding model in the store" } }
                            @for e in &embedders { option value=(e) { (e) } }
                        }
                    }
                    button type="submit" { "Create knowledge base" }
                    span #kb-create-status role="status" {}
                }
                @if kbs.is_empty() { p.empty { "No knowledge base yet." } }
                @for k in &kbs {
                    section.kb data-kb=(k.name) {
                        h2 { (k.name) }
                        p.facts-line { "Embedder " (k.embedder) " · " (k.dim) " dimensions" }
                        div.drop tabindex="0" {
                            "Drop files or a folder here, or "
                            label.file-button { "choose files" input.kb-files type="file" multiple; }
                            " "
                            label.file-button { "a folder" input.kb-folder type="file" webkitdirectory; }
                        }
                        progress.kb-progress hidden max="1" value="0" {}
                        p.kb-status role="status" {}
                        ul.kb-skipped {}
                        p { a href={"/ui?model=kb:" (k.name)} { "Ask this knowledge base" } }
                    }
                }
            }
        }
    };
    layout::page("Documents", Section::Documents, &csrf, signed_in, body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    embedder: String,
}

/// `POST /ui/api/kb` with `{"name", "embedder"}`: an empty SQLite knowledge base.
pub async fn create(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Response> {
    may_write(&st, &caller)?;
    let c: Create = crate::body::typed(&obj)?;
    lar_rag::kb::check_name(&c.name).map_err(rag)?;
    let lease = st
        .manager
        .get(&c.embedder, &LoadOptions::default(), None, Wait::Yes)
        .await?;
    let Runner::Embed(e) = &lease.model.runner else {
        return Err(ApiError::field(
            "embedder",
            format!("'{}' is not an embedding model", c.embedder),
        ));
    };
    let dim = e.dim();
    let reg = lar_rag::kb::Registry::new(root(&st)?);
    let embedder = lease.model.entry.name.clone();
    let cfg = blocking(move || {
        reg.create(
            &c.name,
            &embedder,
            dim,
            "sqlite",
            lar_rag::lang::Analyzer::Auto,
        )
        .map_err(rag)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": cfg.name, "dim": dim})),
    )
        .into_response())
}

/// `PUT /ui/api/kb/{name}/files/{*path}`: one file's bytes into `uploads/` (written whole, then renamed).
pub async fn upload(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath((name, rel)): UrlPath<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    may_write(&st, &caller)?;
    let cfg = st.kb.config(&caller, &name).await?;
    let rel_path = upload_path(&rel)?;
    let dir = root(&st)?.join(&cfg.name).join("uploads");
    let n = body.len();
    // A type no connector reads is not kept: the page lists it as skipped, with why. (A Maildir message has no
    // extension; one under `cur/` or `new/` is kept for the ingest to judge, its folder may not be complete yet.)
    let in_maildir = rel_path
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "cur" || d == "new");
    if lar_rag::connectors::detect(&rel_path).is_none() && !in_maildir {
        return Ok(Json(
            json!({"path": rel, "skipped": "unsupported file type"}),
        ));
    }
    blocking(move || {
        let dest = dir.join(&rel_path);
        let parent = dest.parent().unwrap_or(&dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(ApiError::internal)?;
        let tmp = parent.join(format!(".upload-{}", super::session::token()));
        std::fs::write(&tmp, &body)
            .and_then(|_| std::fs::rename(&tmp, &dest))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ApiError::internal(format!("saving {}: {e}", rel_path.display()))
            })
    })
    .await?;
    Ok(Json(json!({"path": rel, "bytes": n})))
}

/// `POST /ui/api/kb/{name}/ingest`: indexes what `uploads/` holds (new and changed files), streaming NDJSON
/// lines `{"found": N}`, `{"file": NAME}`, then `{"report": {...}}` (or `{"error": ...}`).
pub async fn ingest(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Response> {
    may_write(&st, &caller)?;
    let mut cfg = st.kb.config(&caller, &name).await?;
    let emb = st.kb.embedder(&st, &cfg).await?;
    let reg = lar_rag::kb::Registry::new(root(&st)?);
    let uploads = root(&st)?.join(&cfg.name).join("uploads");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::task::spawn_blocking(move || {
        let mut run = || -> lar_rag::Result<ingest::Report> {
            std::fs::create_dir_all(&uploads)
                .map_err(|e| lar_rag::Error::io(uploads.display(), e))?;
            let root = Root {
                path: uploads.to_string_lossy().into_owned(),
                include: Vec::new(),
                exclude: Vec::new(),
            };
            if !cfg.roots.contains(&root) {
                cfg.roots.push(root.clone());
                reg.save(&cfg)?;
            }
            let (files, skipped) = ingest::walk(&[root])?;
            let mut store = reg.open(&cfg)?;
            let opts = ingest::Options::for_embedder(emb.embedder.as_ref());
            let mut on = |p: Progress<'_>| {
                let line = match p {
                    Progress::Found(n) => json!({"found": n}),
                    Progress::File(f) => {
                        json!({"file": Path::new(f).file_name().map(|n| n.to_string_lossy().into_owned())})
                    }
                    Progress::Chunks(n) => json!({"chunks": n}),
                };
                let _ = tx.send(line);
            };
            let mut rep = ingest::ingest(
                store.as_mut(),
                emb.embedder.as_ref(),
                &files,
                &opts,
                &mut on,
            )?;
            rep.skipped.splice(0..0, skipped);
            Ok(rep)
        };
        let line = match run() {
            Ok(r) => json!({"report": r}),
            Err(e) => json!({"error": e.to_string()}),
        };
        let _ = tx.send(line);
    });
    let s = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|v| Bytes::from(format!("{v}\n")));
    Ok(crate::ollama::ndjson_response(s))
}

#[derive(Deserialize)]
pub struct Cited {
    path: String,
    page: Option<u32>,
    heading: Option<String>,
    start: Option<String>,
    message_id: Option<String>,
    event: Option<String>,
}

/// Whether a document section is the place a citation points at.
fn is_cited(q: &Cited, d: &Document, loc: &Location) -> bool {
    let same = |a: &Option<String>, b: Option<&String>| a.as_ref().is_none_or(|a| Some(a) == b);
    q.page.is_none_or(|p| loc.page == Some(p))
        && same(&q.heading, loc.heading.as_ref())
        && same(&q.start, loc.start.as_ref())
        && same(&q.message_id, d.meta.get("message_id"))
        && same(&q.event, d.meta.get("summary").or(d.title.as_ref()))
}

/// Where a section is, in words (`page 2 · Porto`); empty when nothing is known.
pub(crate) fn place(loc: &Location) -> String {
    let mut parts = Vec::new();
    if let Some(p) = loc.page {
        parts.push(format!("page {p}"));
    }
    if let Some(h) = &loc.heading {
        parts.push(h.clone());
    }
    if let Some(s) = &loc.start {
        parts.push(format!("at {s}"));
    }
    if let Some(s) = &loc.speaker {
        parts.push(s.clone());
    }
    parts.join(" · ")
}

/// `GET /ui/kb/{name}/source?path=...&page=...`: the document a citation names, the cited place marked
/// (`#cited`). Only a file the knowledge base indexed can be shown.
pub async fn source(
    State(st): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<Cited>,
    h: HeaderMap,
) -> Response {
    let shown = async {
        let cfg = st.kb.config(&caller, &name).await?;
        let reg = lar_rag::kb::Registry::new(root(&st)?);
        let path = q.path.clone();
        blocking(move || {
            let store = reg.open(&cfg).map_err(rag)?;
            let known = store
                .files()
                .map_err(rag)?
                .into_iter()
                .any(|f| f.path == path);
            if !known {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("'{path}' is not a file of this knowledge base"),
                ));
            }
            lar_rag::connectors::read(Path::new(&path), &Default::default()).map_err(rag)
        })
        .await
    }
    .await;
    let docs = match shown {
        Ok(d) => d,
        Err(e) => return super::html_error(e.status, &e.message),
    };
    // The first section the citation points at.
    let cited = docs.iter().enumerate().find_map(|(di, d)| {
        let si = d.sections.iter().position(|s| is_cited(&q, d, &s.loc))?;
        Some((di, si))
    });
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let file = Path::new(&q.path)
        .file_name()
        .map_or(q.path.clone(), |n| n.to_string_lossy().into_owned());
    let body = html! {
        main #main.source {
            p { a href="/ui/kb" { "← Documents" } }
            h1 { (file) }
            p.facts-line { "Knowledge base " (name) " · " code { (q.path) } }
            @for (di, d) in docs.iter().enumerate() {
                article.doc {
                    @if let Some(t) = &d.title { h2 { (t) } }
                    @for (k, v) in &d.meta { @if k != "message_id" || docs.len() > 1 { p.meta { (k) ": " (v) } } }
                    @for (si, s) in d.sections.iter().enumerate() {
                        @let here = cited == Some((di, si));
                        section.part.cited[here] id=[here.then_some("cited")] {
                            @let where_ = place(&s.loc);
                            @if !where_.is_empty() { p.place { (where_) } }
                            div.plain { (s.text) }
                        }
                    }
                }
            }
        }
    };
    layout::page(&file, Section::Documents, &csrf, signed_in, body)
}
