//! The web UI in the binary: server-rendered pages under `/ui` (maud, escaped by default) with a little of our own
//! JavaScript for what must happen in the page (streaming an answer, the stop button, a pull's progress bar).
//!
//! The page talks to the same APIs as any client (`/v1/chat/completions`, `/api/pull`, `/api/delete`) and keeps its
//! conversations through `/ui/api/chats` ([`chats`]). Nothing is fetched from the network: the assets are embedded
//! ([`assets`]). With API keys set, a browser signs in once at `/ui/login` and gets a session cookie (HttpOnly,
//! SameSite=Strict) whose every state-changing request must also carry the session's CSRF token ([`session`]);
//! without keys, state-changing `/ui` requests still need the server's token, so another site cannot drive them.

pub mod assets;
pub mod attach;
pub mod chats;
pub mod documents;
pub mod highlight;
pub mod lab;
pub mod layout;
pub mod markdown;
pub mod models_page;
pub mod pages;
pub mod server_page;
pub mod session;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};

use crate::AppState;

/// The UI's state: sign-in sessions, the conversations, the token pages carry when no keys are set.
pub struct Web {
    pub sessions: session::Sessions,
    pub chats: chats::ChatStore,
}

impl Web {
    pub fn new(db: Option<std::path::PathBuf>) -> Self {
        Self {
            sessions: session::Sessions::default(),
            chats: chats::ChatStore::new(db),
        }
    }
}

/// Paths anyone may fetch, signed in or not: the sign-in page and the static assets (which hold nothing private).
pub fn public(path: &str) -> bool {
    path == "/ui/login" || path.starts_with("/ui/assets/")
}

/// Whether a request is a browser asking for a page (it accepts HTML).
pub fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// The UI's routes (auth and CSRF are checked by the server's outer layer, as for every route).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::new_chat))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/c/{id}", get(pages::chat))
        .route("/ui/c/{id}/messages", get(pages::messages))
        .route("/ui/chats", get(pages::chat_list))
        .route("/ui/kb", get(documents::page))
        .route("/ui/kb/{name}/source", get(documents::source))
        .route("/ui/api/kb", post(documents::create))
        .route("/ui/api/kb/{name}/files/{*path}", put(documents::upload))
        .route("/ui/api/kb/{name}/ingest", post(documents::ingest))
        .route("/ui/lab", get(lab::page))
        .route("/ui/lab/chart.svg", get(lab::chart))
        .route("/ui/lab/{id}", get(lab::run))
        .route("/ui/lab/{id}/history.svg", get(lab::history))
        .route("/ui/api/lab/bench", post(lab::bench))
        .route("/ui/api/extract", post(attach::extract))
        .route("/ui/api/context", post(attach::context_route))
        .route("/ui/models", get(models_page::list))
        .route("/ui/models/{*name}", get(models_page::one))
        .route("/ui/server", get(server_page::page))
        .route("/ui/server/live", get(server_page::live))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{name}", get(assets::serve))
        .route("/ui/api/models/{name}/verify", post(models_page::verify))
        .route("/ui/api/chats", get(chats::export_all).post(chats::import))
        .route(
            "/ui/api/chats/{id}",
            get(chats::export_one)
                .put(chats::save)
                .patch(chats::rename)
                .delete(chats::delete),
        )
}

/// Blocking work (SQLite, files, parsers) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::ApiResult<T> + Send + 'static,
) -> crate::error::ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(crate::error::ApiError::internal)?
}

/// An error shown as a small HTML page (for browsers) with its status.
pub fn html_error(status: StatusCode, msg: &str) -> Response {
    let body = layout::bare("Error", maud::html! { p.error { (msg) } });
    (status, layout::html_response(body)).into_response()
}
