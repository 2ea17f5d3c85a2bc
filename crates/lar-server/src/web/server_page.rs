//! The server page: what is loaded, its memory and context, the engines' queue and KV cache, and tokens generated,
//! from the same figures `/metrics` reports. The live part is a fragment the page fetches every two seconds; the
//! page's script turns the token counters of two fetches into tokens per second.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{self, Section, size};
use crate::AppState;
use crate::catalog::Runner;

/// `name{model="X"} value` lines of one metric in the Prometheus text, as (model, value).
fn series(text: &str, metric: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let model = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("model=\""))?
                .trim_end_matches('"');
            Some((model.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn live_markup(st: &AppState) -> Markup {
    let text = st.metrics.render(&st.manager);
    let generated = series(&text, "lar_generation_tokens_total");
    let prompt = series(&text, "lar_prompt_tokens_total");
    let of = |v: &[(String, f64)], m: &str| v.iter().find(|(n, _)| n == m).map_or(0.0, |x| x.1);
    let loaded = st.manager.loaded();
    let up = st.started.elapsed().as_secs();
    html! {
        p.facts-line {
            "Up " (up / 3600) "h " (up / 60 % 60) "m · "
            (loaded.len()) " model(s) loaded · " (st.manager.loading()) " loading"
        }
        @if loaded.is_empty() {
            p.empty { "No model is loaded. One loads on its first request." }
        } @else {
            div.table-wrap { table #loaded {
                thead { tr {
                    th { "Model" } th { "Memory" } th { "Context" } th { "Requests" } th { "Running" }
                    th { "Waiting" } th { "KV blocks used" } th { "Prompt tokens" } th { "Generated" }
                    th { "Tokens/s" }
                } }
                tbody {
                    @for m in &loaded {
                        @let gen_tokens = of(&generated, &m.entry.name);
                        tr data-model=(m.entry.name) data-generated=(gen_tokens) {
                            td { (m.entry.name) }
                            td.num { (size(m.size)) }
                            td.num { (m.ctx) }
                            td.num { (m.active()) }
                            @if let Runner::Chat(h) = &m.runner {
                                @let s = h.stats();
                                td.num { (s.running) }
                                td.num { (s.waiting) }
                                td.num { (s.kv_blocks_total.saturating_sub(s.kv_blocks_free)) " / " (s.kv_blocks_total) }
                            } @else {
                                td {} td {} td {}
                            }
                            td.num { (of(&prompt, &m.entry.name)) }
                            td.num { (gen_tokens) }
                            td.num.rate { "–" }
                        }
                    }
                }
            } }
        }
    }
}

/// `GET /ui/server`.
pub async fn page(State(st): State<AppState>, h: HeaderMap) -> Response {
    let csrf = super::session::csrf_for(&st, &h);
    let signed_in = st.web.sessions.of(&h).is_some();
    let body = html! {
        main #main.server {
            h1 { "Server" }
            div #live data-src="/ui/server/live" { (live_markup(&st)) }
            p { a href="/metrics" { "All figures (Prometheus text)" } }
        }
    };
    layout::page("Server", Section::Server, &csrf, signed_in, body)
}

/// `GET /ui/server/live`: the live part alone.
pub async fn live(State(st): State<AppState>) -> Response {
    layout::html_response(live_markup(&st))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_series() {
        let t = "# TYPE x counter\nlar_generation_tokens_total{model=\"a:latest\"} 12\nlar_generation_tokens_total{model=\"b\"} 3\n";
        let s = super::series(t, "lar_generation_tokens_total");
        assert_eq!(s, vec![("a:latest".into(), 12.0), ("b".into(), 3.0)]);
    }
}
