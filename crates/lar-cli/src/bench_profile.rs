//! `lar bench --profile`: where each token's time goes, by kind of operation ([`lar_models::profile`]), for the
//! prompt and for decode: milliseconds per token and the share of the phase's wall time, the rest being the
//! engine's own (scheduling, streaming, waiting for the pool's threads to wake).

use std::time::Duration;

use lar_models::profile::{self, Op};

/// The time per kind and the wall time of one phase (prompt or decode), summed over its runs.
#[derive(Default)]
pub(crate) struct Phase {
    ops: Vec<(Op, Duration)>,
    wall: Duration,
    tokens: usize,
}

impl Phase {
    /// Adds one run: `wall` long, `tokens` tokens, and the counters since the last [`profile::take`].
    pub(crate) fn add(&mut self, wall: Duration, tokens: usize) {
        let taken = profile::take();
        if self.ops.is_empty() {
            self.ops = taken;
        } else {
            for ((_, sum), (_, d)) in self.ops.iter_mut().zip(taken) {
                *sum += d;
            }
        }
        self.wall += wall;
        self.tokens += tokens;
    }

    fn per_token_ms(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e3 / self.tokens.max(1) as f64
    }

    /// The kinds that took any time, then the engine's rest, then the total: (name, ms per token, share).
    fn rows(&self) -> Vec<(String, f64, f64)> {
        let wall = self.wall.as_secs_f64().max(1e-12);
        let mut rows: Vec<(String, f64, f64)> = self
            .ops
            .iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(op, d)| {
                (
                    op.name().to_string(),
                    self.per_token_ms(*d),
                    d.as_secs_f64() / wall,
                )
            })
            .collect();
        let counted: Duration = self.ops.iter().map(|(_, d)| *d).sum();
        let rest = self.wall.saturating_sub(counted);
        rows.push((
            "engine (the rest)".into(),
            self.per_token_ms(rest),
            rest.as_secs_f64() / wall,
        ));
        rows.push(("total".into(), self.per_token_ms(self.wall), 1.0));
        rows
    }

    fn json(&self) -> serde_json::Value {
        let ms: serde_json::Map<String, serde_json::Value> = self
            .rows()
            .into_iter()
            .map(|(name, ms, _)| (name, serde_json::json!(ms)))
            .collect();
        serde_json::json!({"tokens": self.tokens, "ms_per_token": ms})
    }
}

/// Both phases of a profiled bench.
#[derive(Default)]
pub(crate) struct Profile {
    pub prompt: Phase,
    pub decode: Phase,
}

impl Profile {
    /// Turns the counters on and clears them.
    pub(crate) fn start() -> Profile {
        profile::enable(true);
        profile::take();
        Profile::default()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({"prompt": self.prompt.json(), "decode": self.decode.json()})
    }

    /// A Markdown table: one row per kind, both phases side by side.
    pub(crate) fn table(&self) -> String {
        let (p, d) = (self.prompt.rows(), self.decode.rows());
        let mut names: Vec<String> = Op::ALL.iter().map(|o| o.name().to_string()).collect();
        names.extend(["engine (the rest)".to_string(), "total".to_string()]);
        let find = |rows: &[(String, f64, f64)], n: &str| {
            rows.iter()
                .find(|(name, _, _)| name == n)
                .map_or("|".to_string(), |(_, ms, share)| {
                    format!("{ms:.3} | {:.1}%", share * 100.0)
                })
        };
        let mut out = String::from(
            "| op | prompt ms/token | prompt share | decode ms/token | decode share |\n|---|---|---|---|---|\n",
        );
        for n in names {
            if p.iter().chain(&d).any(|(name, _, _)| *name == n) {
                out += &format!("| {n} | {} | {} |\n", find(&p, &n), find(&d, &n));
            }
        }
        out
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        profile::enable(false);
    }
}
