//! The frame every page shares: the head (the stylesheet and script by content-hashed URL, the CSRF token in a
//! `<meta>`, a strict Content-Security-Policy), the navigation, and the light/dark colours the CSS takes from the
//! system. Pages are maud markup, so every value written into them is escaped.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::assets;

/// No inline script, nothing from elsewhere: model output that slipped through as HTML still could not run.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                       form-action 'self'";

/// Which section of the navigation a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Chat,
    Documents,
    Models,
    Lab,
    Server,
}

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        meta name="color-scheme" content="light dark";
        @if let Some(t) = csrf { meta name="lar-csrf" content=(t); }
        title { (title) " · Lar" }
        link rel="stylesheet" href=(assets::url("ui.css"));
        script src=(assets::url("ui.js")) defer {}
    }
}

/// A whole page: navigation, then `body`.
pub fn page(title: &str, section: Section, csrf: &str, signed_in: bool, body: Markup) -> Response {
    let nav = [
        (Section::Chat, "/ui", "Chat"),
        (Section::Documents, "/ui/kb", "Documents"),
        (Section::Models, "/ui/models", "Models"),
        (Section::Lab, "/ui/lab", "Lab"),
        (Section::Server, "/ui/server", "Server"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, Some(csrf))) }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "Lar" }
                    nav aria-label="Sections" {
                        @for (s, href, name) in nav {
                            @if s == section { a href=(href) aria-current="page" { (name) } }
                            @else { a href=(href) { (name) } }
                        }
                    }
                    @if signed_in { button.link #logout type="button" { "Sign out" } }
                }
                (body)
            }
        }
    };
    html_response(markup)
}

/// A page without navigation (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { (head(title, None)) }
            body { (body) }
        }
    }
}

/// HTML with the security headers every page carries.
pub fn html_response(m: Markup) -> Response {
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        axum::response::Html(m.into_string()),
    )
        .into_response()
}

/// JSON to put inside a `<script type="application/json">`: `<`, `>` and `&` written as `\u` escapes, so no
/// string in it can close the element.
pub fn json_island(v: &serde_json::Value) -> PreEscaped<String> {
    let s = v.to_string();
    PreEscaped(
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026"),
    )
}

/// Percent-encodes everything but unreserved characters and `/` (for a path put into a query string).
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bytes as people read them (`1.2 GB`).
pub fn size(n: u64) -> String {
    lar_plan::size::fmt_bytes(n)
}
