//! Signing a browser in when the server has API keys: `/ui/login` takes a key once and sets a session cookie
//! (`HttpOnly; SameSite=Strict`, a random token, never the key), kept in memory until it expires or the server stops.
//! A request carried by that cookie which changes anything must also send the session's CSRF token in the
//! `x-lar-csrf` header (the pages hold it in a `<meta>`); another site can neither read it nor send the header.
//! Without keys there are no sessions, and state-changing `/ui` requests need the server's own token instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout;
use crate::AppState;

/// The cookie's name.
pub const COOKIE: &str = "lar_session";
/// The header state-changing UI requests carry their CSRF token in.
pub const CSRF_HEADER: &str = "x-lar-csrf";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Sessions kept at most (the oldest go first): a flood of sign-ins cannot grow memory without bound.
const MAX_SESSIONS: usize = 4096;

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// The key it signed in with (what it may read follows it).
    pub key: String,
    pub csrf: String,
    expires: Instant,
}

/// The live sessions, and the token pages carry when the server has no keys.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// The CSRF token of a server without keys.
    pub open_csrf: String,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
            open_csrf: token(),
        }
    }
}

/// 32 random bytes as hex (the OS's generator; a failure to read it leaves a time-based token, logged).
pub fn token() -> String {
    let mut b = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut b) {
        tracing::error!("no OS randomness for a session token: {e}");
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b[..16].copy_from_slice(&t.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// Starts a session for `key`; returns its cookie token.
    pub fn start(&self, key: &str) -> String {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let t = token();
        map.insert(
            t.clone(),
            Session {
                key: key.to_string(),
                csrf: token(),
                expires: now + SESSION_TTL,
            },
        );
        t
    }

    /// The live session a request's cookie names.
    pub fn of(&self, h: &HeaderMap) -> Option<Session> {
        let t = cookie(h, COOKIE)?;
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&t).filter(|s| s.expires > Instant::now()).cloned()
    }

    pub fn end(&self, h: &HeaderMap) {
        if let Some(t) = cookie(h, COOKIE) {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&t);
        }
    }
}

/// One cookie's value from the request's `Cookie` headers.
pub fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a request with this method changes state (and so must carry the CSRF token).
pub fn changes_state(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request's CSRF header is `expected` (compared without an early exit).
pub fn csrf_ok(h: &HeaderMap, expected: &str) -> bool {
    h.get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| crate::http::same(given.as_bytes(), expected.as_bytes()))
}

/// The CSRF token a page for this request carries.
pub fn csrf_for(st: &AppState, h: &HeaderMap) -> String {
    match st.web.sessions.of(h) {
        Some(s) => s.csrf,
        None => st.web.sessions.open_csrf.clone(),
    }
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path of this server's UI may be gone back to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains("//") && !n.contains('\\') => n.to_string(),
        _ => "/ui".to_string(),
    }
}

fn login_form(next: &str, error: Option<&str>) -> maud::Markup {
    layout::bare(
        "Sign in",
        html! {
            main.login {
                h1 { "Lar" }
                p { "This server asks for an API key." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/ui/login" {
                    input type="hidden" name="next" value=(next);
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

pub async fn login_page(State(st): State<AppState>, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    if st.cfg.api_keys.is_empty() {
        return Redirect::to(&next).into_response();
    }
    layout::html_response(login_form(&next, None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    key: String,
    next: Option<String>,
}

/// Checks the key; on success sets the session cookie and goes on to `next`.
pub async fn login(State(st): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    let key = f.key.trim();
    let known = st
        .cfg
        .api_keys
        .iter()
        .find(|k| crate::http::same(k.as_bytes(), key.as_bytes()));
    let Some(k) = known else {
        st.metrics.request("unauthorized", 401);
        return (
            StatusCode::UNAUTHORIZED,
            layout::html_response(login_form(
                &next,
                Some("That key is not one this server accepts."),
            )),
        )
            .into_response();
    };
    let t = st.web.sessions.start(k);
    let cookie = format!(
        "{COOKIE}={t}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

pub async fn logout(State(st): State<AppState>, h: HeaderMap) -> Response {
    st.web.sessions.end(&h);
    let gone = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, gone)], Redirect::to("/ui/login")).into_response()
}
