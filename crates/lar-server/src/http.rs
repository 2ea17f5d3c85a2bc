//! What every route shares: the API key check, the request id (in the `x-request-id` response header and in
//! every log line of the request), request counters by route and status, the body limit, CORS when origins are
//! named, the JSON body extractor, `/health` and `/metrics`. Logs carry sizes and timings, never prompt text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::AppState;
use crate::error::{ApiError, Shape};
use crate::kb::Caller;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The request a handler runs for, as the audit log records it.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub id: String,
    pub route: String,
    /// The fingerprint of the key it came with (`lar_lab::audit::key_fingerprint`), never the key.
    pub key: Option<String>,
    /// The knowledge-base sources put before the model so far (their paths), for the audit log.
    pub sources: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Notes knowledge-base sources the request's generations are given (read by the audit log).
pub fn note_sources<'a>(paths: impl IntoIterator<Item = &'a str>) {
    let _ = REQUEST.try_with(|r| {
        let mut s = r.sources.lock().unwrap_or_else(|e| e.into_inner());
        for p in paths {
            if !s.iter().any(|x| x == p) {
                s.push(p.to_string());
            }
        }
    });
}

tokio::task_local! {
    /// Set around each handler by [`track`]: a generation started by the handler reads it.
    pub static REQUEST: RequestInfo;
}

/// Counts, logs and tags one matched request.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let id = format!("req-{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let started = Instant::now();
    let info = RequestInfo {
        id: id.clone(),
        route: route.clone(),
        key: req
            .extensions()
            .get::<Caller>()
            .and_then(|c| c.key.as_deref())
            .map(lar_lab::audit::key_fingerprint),
        sources: Default::default(),
    };
    let mut resp = REQUEST
        .scope(info, next.run(req).instrument(span.clone()))
        .await;
    let status = resp.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            ms = started.elapsed().as_millis() as u64,
            "answered"
        )
    });
    st.metrics.request(&route, status);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Refuses requests from other sites' pages (an `Origin` that is neither this server nor a `--cors-origin`); then
/// requires one of the configured keys on every route but `/health` (and the UI's sign-in page and assets): in
/// `Authorization: Bearer`, in `X-Api-Key`, or through a browser's sign-in session (see [`crate::web::session`]),
/// whose state-changing requests must also carry its CSRF token. Without keys, state-changing `/ui` requests need
/// the server's CSRF token all the same.
/// The key a request was let in with goes into its extensions as a [`Caller`] (what it may read follows it).
async fn auth(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    use crate::web::session;
    if !origin_allowed(&st, req.headers()) {
        // A page of another site driving this server from a visitor's browser (even a "simple" request that
        // needs no CORS preflight): refused before anything runs. Clients that are not browsers send no Origin.
        st.metrics.request("cross-origin", 403);
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from another site's pages are refused (allow an origin with --cors-origin)",
        )
        .shape(Shape::of_path(req.uri().path()))
        .into_response();
    }
    let path = req.uri().path();
    let ui = path == "/ui" || path.starts_with("/ui/");
    if st.cfg.api_keys.is_empty() || path == "/health" || crate::web::public(path) {
        if st.cfg.api_keys.is_empty()
            && ui
            && !crate::web::public(path)
            && session::changes_state(req.method())
            && !session::csrf_ok(req.headers(), &st.web.sessions.open_csrf)
        {
            return csrf_refused(&st);
        }
        req.extensions_mut().insert(Caller::default());
        return next.run(req).await;
    }
    let h = req.headers();
    let bearer = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let x_key = h
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let key = [bearer, x_key].into_iter().flatten().find_map(|given| {
        st.cfg
            .api_keys
            .iter()
            .find(|k| same(k.as_bytes(), given.as_bytes()))
    });
    if let Some(k) = key {
        req.extensions_mut().insert(Caller {
            key: Some(k.as_str().into()),
        });
        return next.run(req).await;
    }
    if let Some(s) = st.web.sessions.of(h) {
        if session::changes_state(req.method()) && !session::csrf_ok(h, &s.csrf) {
            return csrf_refused(&st);
        }
        req.extensions_mut().insert(Caller {
            key: Some(s.key.as_str().into()),
        });
        return next.run(req).await;
    }
    st.metrics.request("unauthorized", 401);
    if ui && crate::web::wants_html(h) && !session::changes_state(req.method()) {
        // A browser opening a page: to the sign-in page, back here after.
        let back = req
            .uri()
            .path_and_query()
            .map_or("/ui", |p| p.as_str())
            .to_string();
        let to = format!("/ui/login?next={}", crate::web::layout::url_escape(&back));
        return axum::response::Redirect::to(&to).into_response();
    }
    ApiError::unauthorized()
        .shape(Shape::of_path(path))
        .into_response()
}

/// Whether a request's `Origin` (if it has one) may use this server: its own pages (the origin's host is the
/// request's `Host`), or an origin named by `--cors-origin`.
fn origin_allowed(st: &AppState, h: &axum::http::HeaderMap) -> bool {
    let Some(origin) = h.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if st.cfg.cors_origins.iter().any(|o| o == origin || o == "*") {
        return true;
    }
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// A state-changing UI request without the right CSRF token.
fn csrf_refused(st: &AppState) -> Response {
    st.metrics.request("csrf", 403);
    ApiError::new(
        StatusCode::FORBIDDEN,
        "this request needs the page's CSRF token (x-lar-csrf); reload the page",
    )
    .shape(Shape::OpenAi)
    .into_response()
}

/// Compares without stopping at the first difference (no timing hint of how much of a key was right).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Auth, the body limit and CORS around every route (the fallback included).
pub fn outer_layers(router: Router<AppState>, st: &AppState) -> Router<AppState> {
    let mut r = router
        .layer(axum::extract::DefaultBodyLimit::max(st.cfg.body_limit))
        .layer(axum::middleware::from_fn_with_state(st.clone(), auth));
    if !st.cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = st
            .cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        r = r.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods(tower_http::cors::Any)
                .allow_headers(tower_http::cors::Any),
        );
    }
    r
}

/// A route that does not exist, answered in the shape its path suggests.
pub async fn not_found(req: Request) -> Response {
    let path = req.uri().path().to_string();
    ApiError::new(StatusCode::NOT_FOUND, format!("no route {path}"))
        .shape(Shape::of_path(&path))
        .into_response()
}

/// A request body read as a JSON object (see [`crate::body`]); errors in the shape of the route's API.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let shape = Shape::of_path(req.uri().path());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let msg = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "the request body is larger than the server's limit (--body-limit)".to_string()
            } else {
                e.body_text()
            };
            ApiError::new(e.status(), msg).shape(shape)
        })?;
        crate::body::object(&bytes)
            .map(JsonBody)
            .map_err(|e| e.shape(shape))
    }
}

/// 200 once the models named at start have loaded, 503 before.
pub async fn health(State(st): State<AppState>) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading model"})),
        )
            .into_response()
    }
}

pub async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&st.manager),
    )
        .into_response()
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
