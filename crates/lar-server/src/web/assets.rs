//! The UI's static files, embedded in the binary (nothing fetched, nothing to install): each is served by a URL that
//! carries a hash of its content (`/ui/assets/ui.js?v=...`), so browsers may keep it for a year, gzipped once on
//! first use for clients that accept it, with an `ETag` for revalidation.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// (name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/ui.css"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/ui.js"),
    ),
];

/// One asset ready to serve.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub raw: &'static [u8],
    pub gzip: Vec<u8>,
    /// The first 16 hex digits of the content's sha256.
    pub hash: String,
}

/// Every asset, hashed and compressed once.
pub fn all() -> &'static [Asset] {
    static ALL: OnceLock<Vec<Asset>> = OnceLock::new();
    ALL.get_or_init(|| {
        FILES
            .iter()
            .map(|(name, ct, raw)| {
                let digest = Sha256::digest(raw);
                let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                Asset {
                    name,
                    content_type: ct,
                    raw,
                    gzip: gzip(raw),
                    hash,
                }
            })
            .collect()
    })
}

fn gzip(raw: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(raw);
    e.finish().unwrap_or_default()
}

/// The URL a page links an asset by (its content hash in the query, so a new build is a new URL).
pub fn url(name: &str) -> String {
    match all().iter().find(|a| a.name == name) {
        Some(a) => format!("/ui/assets/{name}?v={}", a.hash),
        None => format!("/ui/assets/{name}"),
    }
}

#[derive(Deserialize)]
pub struct Version {
    v: Option<String>,
}

pub async fn serve(Path(name): Path<String>, Query(q): Query<Version>, h: HeaderMap) -> Response {
    let Some(a) = all().iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let etag = format!("\"{}\"", a.hash);
    // The hashed URL never changes content: keep it a year. Any other URL: ask again each time.
    let cache = if q.v.as_deref() == Some(a.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    if h.get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache.into())],
        )
            .into_response();
    }
    let gz = h
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut resp = (
        [
            (header::CONTENT_TYPE, a.content_type.to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_string()),
            (header::VARY, "accept-encoding".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        if gz { a.gzip.clone() } else { a.raw.to_vec() },
    )
        .into_response();
    if gz {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            axum::http::HeaderValue::from_static("gzip"),
        );
    }
    resp
}
