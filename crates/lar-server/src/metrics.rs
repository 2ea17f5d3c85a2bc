//! `/metrics` in Prometheus text. Request counters and latency histograms go through a `metrics` recorder owned by
//! the app (not a global one, so several apps in one process, as in tests, keep their own books); the engines'
//! gauges (running, waiting, KV blocks, prefix cache, preemptions) are read from each loaded model when scraped,
//! so an unloaded model leaves no stale series.

use std::fmt::Write as _;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::catalog::Runner;
use crate::manager::Manager;

/// Bucket bounds in seconds for every latency histogram: 1 ms to 2 minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A metric family written by hand: name, type, help, and its series (labels, value).
type Family = (&'static str, &'static str, &'static str, Vec<(String, f64)>);

pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl Default for Metrics {
    fn default() -> Self {
        let b = PrometheusBuilder::new();
        let b = match b.set_buckets(BUCKETS) {
            Ok(b) => b,
            // Only refused for an empty list, which BUCKETS is not.
            Err(_) => PrometheusBuilder::new(),
        };
        Self {
            recorder: b.build_recorder(),
        }
    }
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// One answered request.
    pub fn request(&self, route: &str, status: u16) {
        let (route, status) = (route.to_string(), status.to_string());
        self.with(|| {
            counter!("lar_requests_total", "route" => route, "status" => status).increment(1)
        });
    }

    pub fn first_token(&self, model: &str, secs: f64) {
        let m = model.to_string();
        self.with(|| histogram!("lar_time_to_first_token_seconds", "model" => m).record(secs));
    }

    pub fn inter_token(&self, model: &str, secs: f64) {
        let m = model.to_string();
        self.with(|| histogram!("lar_inter_token_latency_seconds", "model" => m).record(secs));
    }

    /// A finished generation: its end-to-end and queue times and its token counts.
    pub fn finished(&self, model: &str, e2e: f64, queue: f64, prompt: usize, generated: usize) {
        let m = model.to_string();
        self.with(|| {
            histogram!("lar_e2e_request_latency_seconds", "model" => m.clone()).record(e2e);
            histogram!("lar_request_queue_time_seconds", "model" => m.clone()).record(queue);
            counter!("lar_prompt_tokens_total", "model" => m.clone()).increment(prompt as u64);
            counter!("lar_generation_tokens_total", "model" => m).increment(generated as u64);
        });
    }

    /// The scrape: recorded series, then the loaded models' engine gauges.
    pub fn render(&self, manager: &Manager) -> String {
        let handle = self.recorder.handle();
        handle.run_upkeep();
        let mut out = handle.render();
        let loaded = manager.loaded();
        let mut gauges: Vec<Family> = vec![
            (
                "lar_models_loaded",
                "gauge",
                "Models loaded now.",
                vec![(String::new(), loaded.len() as f64)],
            ),
            (
                "lar_models_loading",
                "gauge",
                "Models being loaded now.",
                vec![(String::new(), manager.loading() as f64)],
            ),
        ];
        let mut rows: Vec<Family> = vec![
            (
                "lar_requests_running",
                "gauge",
                "Sequences in the running batch.",
                vec![],
            ),
            (
                "lar_requests_waiting",
                "gauge",
                "Requests waiting for admission.",
                vec![],
            ),
            ("lar_kv_blocks_total", "gauge", "KV cache blocks.", vec![]),
            (
                "lar_kv_blocks_used",
                "gauge",
                "KV cache blocks owned by sequences.",
                vec![],
            ),
            (
                "lar_kv_blocks_free",
                "gauge",
                "KV cache blocks free (cached ones included).",
                vec![],
            ),
            (
                "lar_kv_blocks_cached",
                "gauge",
                "Free KV cache blocks still holding a prompt prefix.",
                vec![],
            ),
            (
                "lar_prefix_cache_queries_total",
                "counter",
                "Prompt tokens looked up in the prefix cache.",
                vec![],
            ),
            (
                "lar_prefix_cache_hits_total",
                "counter",
                "Prompt tokens found in the prefix cache.",
                vec![],
            ),
            (
                "lar_preemptions_total",
                "counter",
                "Sequences preempted for KV blocks.",
                vec![],
            ),
            (
                "lar_engine_requests_cancelled_total",
                "counter",
                "Requests cancelled (client gone or aborted).",
                vec![],
            ),
        ];
        for m in &loaded {
            let Runner::Chat(h) = &m.runner else { continue };
            let s = h.stats();
            let label = format!("model=\"{}\"", m.entry.name.replace('"', ""));
            let values = [
                s.running as f64,
                s.waiting as f64,
                s.kv_blocks_total as f64,
                s.kv_blocks_total.saturating_sub(s.kv_blocks_free) as f64,
                s.kv_blocks_free as f64,
                s.kv_blocks_cached as f64,
                s.prefix_query_tokens as f64,
                s.prefix_hit_tokens as f64,
                s.preemptions as f64,
                s.requests_cancelled as f64,
            ];
            for (row, v) in rows.iter_mut().zip(values) {
                row.3.push((label.clone(), v));
            }
        }
        gauges.append(&mut rows);
        for (name, ty, help, series) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
            for (labels, v) in series {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        out
    }
}
