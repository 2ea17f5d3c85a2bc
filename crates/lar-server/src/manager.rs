//! The model manager: which models are loaded, loading on demand, keep-alive, and unloading.
//!
//! - A model loads on its first request. Requests that arrive while it loads either wait for it (Ollama's
//!   behaviour, [`Wait::Yes`]) or are answered 503 with `Retry-After` (llama-server's, [`Wait::No`]).
//! - Each request holds a [`Lease`]; when the last lease of a model ends, its keep-alive starts (the request's own
//!   `keep_alive`, else the server's). A sweeper unloads idle models whose keep-alive ran out; `keep_alive: 0`
//!   unloads at the end of the request; a negative keep-alive keeps the model loaded.
//! - Before a load, idle models go in least-recently-used order while more than `max_loaded` would be loaded, and
//!   when the planner refuses the load for memory, one at a time until it fits or none is idle.
//! - A model takes at most `parallel + max_queue` requests at once; past that, a 503 at once, never a hang.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use lar_models::LoraSlot;
use tokio::sync::watch;

use crate::catalog::{Catalog, LoadOptions, ModelEntry, Opened, Runner};
use crate::error::{ApiError, ApiResult};

/// How long an idle model stays loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    For(Duration),
    /// Never unload (a negative keep-alive).
    Forever,
}

impl KeepAlive {
    /// Ollama's forms: a number of seconds, or a duration string (`5m`, `1h30m`, `300ms`, `-1`, `0`).
    pub fn parse(v: &serde_json::Value) -> Result<Self, String> {
        let secs = match v {
            serde_json::Value::Number(n) => n.as_f64().ok_or("not a number")?,
            serde_json::Value::String(s) => parse_duration(s)?,
            _ => return Err("a number of seconds or a duration such as \"5m\"".into()),
        };
        if secs < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        if !secs.is_finite() || secs > 1e9 {
            return Err(format!("{secs} seconds is out of range"));
        }
        Ok(KeepAlive::For(Duration::from_secs_f64(secs)))
    }
}

/// `1h2m3s`, `5m`, `300ms`, `1.5h`, `-1`, `10` (seconds): Go's duration syntax, which Ollama uses.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let bad = || format!("'{s}' is not a duration (such as 30s, 5m, 1h, or -1 for forever)");
    let t = s.trim();
    if let Ok(n) = t.parse::<f64>() {
        return Ok(n);
    }
    let (neg, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Ok(if neg { -total } else { total })
}

/// Whether a request waits for a model that is loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Yes,
    No,
}

#[derive(Clone, Debug)]
pub struct ManagerConfig {
    pub keep_alive: KeepAlive,
    /// Most models loaded at once.
    pub max_loaded: usize,
    /// Sequences each model runs at once, and requests that may wait beyond them.
    pub parallel: usize,
    pub max_queue: usize,
    /// How long a request that does not wait ([`Wait::No`]) still waits for a load before its 503.
    pub load_wait: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            keep_alive: KeepAlive::For(Duration::from_secs(300)),
            max_loaded: 3,
            parallel: 1,
            max_queue: 64,
            load_wait: Duration::from_secs(3),
        }
    }
}

/// A loaded model.
pub struct Loaded {
    pub entry: ModelEntry,
    pub runner: Runner,
    /// Bytes the load was planned to take.
    pub size: u64,
    pub ctx: usize,
    pub load_secs: f64,
    /// The model's vocabulary for constrained decoding, built on the first request that asks for a grammar.
    pub(crate) grammar_vocab: std::sync::OnceLock<Result<Arc<lar_grammar::Vocabulary>, String>>,
    active: AtomicUsize,
    usage: Mutex<Usage>,
}

struct Usage {
    last_used: Instant,
    /// When an idle model unloads; `None`: never.
    expires: Option<Instant>,
    /// The keep-alive the last request asked for.
    keep_alive: KeepAlive,
}

impl Loaded {
    /// Requests holding a lease on it now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// When it will unload if no request comes (wall clock), `None` for never.
    pub fn expires_at(&self) -> Option<SystemTime> {
        let u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        if self.active() > 0 {
            return match u.keep_alive {
                KeepAlive::For(d) => Some(SystemTime::now() + d),
                KeepAlive::Forever => None,
            };
        }
        let left = u.expires?.saturating_duration_since(Instant::now());
        Some(SystemTime::now() + left)
    }

    fn idle_since(&self) -> Option<Instant> {
        (self.active() == 0).then(|| {
            self.usage
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_used
        })
    }
}

/// A request's hold on a loaded model: the model is not unloaded while one is held.
pub struct Lease {
    pub model: Arc<Loaded>,
    /// This request waited for the model to load (Ollama reports the load's time only then).
    pub waited_for_load: bool,
    /// The LoRA adapter the model name asked for (`base+NAME`): its name and slot.
    pub lora: Option<(String, LoraSlot)>,
    manager: Arc<Manager>,
}

impl Lease {
    /// The model as the request named it: `base` or `base+adapter`.
    pub fn name(&self) -> String {
        match &self.lora {
            Some((a, _)) => format!("{}+{a}", self.model.entry.name),
            None => self.model.entry.name.clone(),
        }
    }
}

/// A request's model name split into the store name and the LoRA adapter it asks for (`smollm2+support`).
pub fn split_adapter(name: &str) -> (&str, Option<&str>) {
    match name.split_once('+') {
        Some((base, adapter)) => (base, Some(adapter)),
        None => (name, None),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let m = &self.model;
        if m.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = Instant::now();
            let mut u = m.usage.lock().unwrap_or_else(|p| p.into_inner());
            u.last_used = now;
            u.expires = match u.keep_alive {
                KeepAlive::For(d) => Some(now + d),
                KeepAlive::Forever => None,
            };
            let unload_now = u.keep_alive == KeepAlive::For(Duration::ZERO);
            drop(u);
            // A new expiry: the sweeper sleeps until the earliest one.
            self.manager.wake.notify_one();
            if unload_now {
                self.manager.sweep();
            }
        }
    }
}

type LoadResult = Option<Result<Arc<Loaded>, ApiError>>;

enum Slot {
    Loading(watch::Receiver<LoadResult>),
    Ready(Arc<Loaded>),
}

pub struct Manager {
    catalog: Arc<dyn Catalog>,
    pub cfg: ManagerConfig,
    slots: Mutex<HashMap<String, Slot>>,
    /// Held by the load in progress.
    loads: Mutex<()>,
    /// Wakes the sweeper when an expiry may have moved (a model loaded, a last lease ended).
    wake: Arc<tokio::sync::Notify>,
}

impl Manager {
    pub fn new(catalog: Arc<dyn Catalog>, cfg: ManagerConfig) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            cfg,
            slots: Mutex::default(),
            loads: Mutex::default(),
            wake: Arc::default(),
        })
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded models.
    pub fn loaded(&self) -> Vec<Arc<Loaded>> {
        let mut v: Vec<_> = self
            .slots()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(m) => Some(m.clone()),
                Slot::Loading(_) => None,
            })
            .collect();
        v.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        v
    }

    /// Models being loaded now.
    pub fn loading(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| matches!(s, Slot::Loading(_)))
            .count()
    }

    /// A lease on `name` (a store name; `smollm2` means `smollm2:latest`), loading it first if needed.
    pub async fn get(
        self: &Arc<Self>,
        name: &str,
        opts: &LoadOptions,
        keep_alive: Option<KeepAlive>,
        wait: Wait,
    ) -> ApiResult<Lease> {
        let (base, adapter) = split_adapter(name);
        let mut lease = self.get_base(base, opts, keep_alive, wait).await?;
        if let Some(a) = adapter {
            lease.lora = Some((a.to_string(), adapter_slot(&lease, a)?));
        }
        Ok(lease)
    }

    async fn get_base(
        self: &Arc<Self>,
        name: &str,
        opts: &LoadOptions,
        keep_alive: Option<KeepAlive>,
        wait: Wait,
    ) -> ApiResult<Lease> {
        let key = crate::catalog::parse_name(name)?.to_string();
        if !self.slots().contains_key(&key) {
            // An unknown name is a 404 at once, not a load that fails later.
            let cat = self.catalog.clone();
            let k = key.clone();
            tokio::task::spawn_blocking(move || cat.entry(&k))
                .await
                .map_err(ApiError::internal)??;
        }
        let mut reloaded = false;
        let mut waited = false;
        loop {
            let rx = {
                let mut slots = self.slots();
                match slots.get(&key) {
                    Some(Slot::Ready(m)) => {
                        let m = m.clone();
                        // What a load can give: the ask, capped by the model's own context.
                        let own = m.entry.context_length;
                        let want = opts.ctx.map(|c| if own > 0 { c.min(own) } else { c });
                        let ctx_ok = want.is_none_or(|c| c <= m.ctx || m.ctx == 0);
                        if ctx_ok || m.active() > 0 || reloaded {
                            drop(slots);
                            return self.lease(&m, keep_alive).map(|mut l| {
                                l.waited_for_load = waited;
                                l
                            });
                        }
                        // A larger context than the one loaded: load again with it, as Ollama does (once).
                        reloaded = true;
                        slots.remove(&key);
                        continue;
                    }
                    Some(Slot::Loading(rx)) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        slots.insert(key.clone(), Slot::Loading(rx.clone()));
                        let me = self.clone();
                        let (k, o) = (key.clone(), opts.clone());
                        tokio::spawn(async move {
                            let r = me.clone().load(&k, o).await;
                            let mut slots = me.slots();
                            match &r {
                                Ok(m) => {
                                    me.wake.notify_one();
                                    slots.insert(k, Slot::Ready(m.clone()))
                                }
                                Err(_) => slots.remove(&k),
                            };
                            drop(slots);
                            let _ = tx.send(Some(r));
                        });
                        rx
                    }
                }
            };
            let mut rx = rx;
            waited = true;
            let done = rx.wait_for(Option::is_some);
            let r = match wait {
                Wait::Yes => done.await,
                // A short load is waited for; a long one is a 503 the client retries.
                Wait::No => match tokio::time::timeout(self.cfg.load_wait, done).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(ApiError::unavailable(
                            format!("model '{key}' is loading; try again shortly"),
                            2,
                        )
                        .code("model_loading"));
                    }
                },
            }
            .map_err(|_| ApiError::internal("a model load was abandoned"))?
            .clone();
            match r {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None => continue,
            }
        }
    }

    /// One more lease on a model already leased (each further sequence of a request with `n > 1` or several
    /// prompts takes one, so the queue limit counts sequences).
    pub fn lease_again(self: &Arc<Self>, lease: &Lease) -> ApiResult<Lease> {
        let mut again = self.lease(&lease.model, None)?;
        again.lora = lease.lora.clone();
        Ok(again)
    }

    /// Counts a request in, unless the model already has `parallel + max_queue` (then a 503 at once).
    fn lease(self: &Arc<Self>, m: &Arc<Loaded>, keep_alive: Option<KeepAlive>) -> ApiResult<Lease> {
        let limit = self.cfg.parallel + self.cfg.max_queue;
        // Counted in only below the limit: a refused request never holds (or drops) a lease.
        if let Err(prev) = m
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a < limit).then_some(a + 1)
            })
        {
            return Err(ApiError::unavailable(
                format!(
                    "the server is busy: {prev} requests are running or queued for '{}' (--parallel {} + --max-queue {})",
                    m.entry.name, self.cfg.parallel, self.cfg.max_queue
                ),
                1,
            )
            .code("queue_full"));
        }
        let mut u = m.usage.lock().unwrap_or_else(|p| p.into_inner());
        u.last_used = Instant::now();
        // In use: no expiry until the last lease ends (the sweeper never acts on an old one meanwhile).
        u.expires = None;
        u.keep_alive = keep_alive.unwrap_or(self.cfg.keep_alive);
        drop(u);
        Ok(Lease {
            model: m.clone(),
            waited_for_load: false,
            lora: None,
            manager: self.clone(),
        })
    }

    async fn load(self: Arc<Self>, name: &str, opts: LoadOptions) -> ApiResult<Arc<Loaded>> {
        let me = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || me.load_blocking(&name, &opts))
            .await
            .map_err(|e| ApiError::internal(format!("model load panicked: {e}")))?
    }

    fn load_blocking(&self, name: &str, opts: &LoadOptions) -> ApiResult<Arc<Loaded>> {
        // One load at a time: each plans against the memory the others left, and `max_loaded` counts them all.
        let _one = self.loads.lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.catalog.entry(name)?;
        while self.loaded().len() >= self.cfg.max_loaded.max(1) {
            if !self.unload_lru(name) {
                break;
            }
        }
        let started = Instant::now();
        let opened = loop {
            match self.catalog.open(name, opts) {
                Ok(o) => break o,
                Err(e)
                    if e.status == StatusCode::SERVICE_UNAVAILABLE
                        && e.code == Some("insufficient_memory")
                        && self.unload_lru(name) =>
                {
                    tracing::info!(
                        "unloaded the least recently used model to make room for {name}"
                    );
                    // Its engine thread frees the memory when it ends, a moment after the last handle goes.
                    std::thread::sleep(Duration::from_millis(300));
                }
                Err(e) => return Err(e),
            }
        };
        let Opened { runner, size, ctx } = opened;
        tracing::info!(
            "loaded {name} ({size} bytes planned, context {ctx}) in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        Ok(Arc::new(Loaded {
            entry,
            runner,
            size,
            ctx,
            load_secs: started.elapsed().as_secs_f64(),
            grammar_vocab: std::sync::OnceLock::new(),
            active: AtomicUsize::new(0),
            usage: Mutex::new(Usage {
                last_used: Instant::now(),
                // Loaded for a request that may never come back (a 503 that was not retried, a client gone):
                // the keep-alive runs from the load.
                expires: match self.cfg.keep_alive {
                    KeepAlive::For(d) => Some(Instant::now() + d),
                    KeepAlive::Forever => None,
                },
                keep_alive: self.cfg.keep_alive,
            }),
        }))
    }

    /// Unloads the idle model used least recently (never `except`); false when none is idle.
    fn unload_lru(&self, except: &str) -> bool {
        let mut slots = self.slots();
        let victim = slots
            .iter()
            .filter(|(k, _)| k.as_str() != except)
            .filter_map(|(k, s)| match s {
                Slot::Ready(m) => m.idle_since().map(|t| (t, k.clone())),
                Slot::Loading(_) => None,
            })
            .min();
        match victim {
            Some((_, k)) => {
                tracing::info!("unloading {k} (least recently used)");
                slots.remove(&k);
                true
            }
            None => false,
        }
    }

    /// Forgets `name` at once, busy or not (its running requests finish on the engine they hold): for a model
    /// deleted from the store, or whose engine has stopped.
    pub fn forget(&self, name: &str) {
        if let Ok(n) = crate::catalog::parse_name(name) {
            self.slots().remove(&n.to_string());
        }
    }

    /// Unloads `name` now if it is idle (Ollama's `keep_alive: 0` with no prompt), else when its requests end;
    /// true if it was loaded. A name the store does not have is a 404.
    pub async fn unload(&self, name: &str) -> ApiResult<bool> {
        let key = crate::catalog::parse_name(name)?.to_string();
        let cat = self.catalog.clone();
        let k = key.clone();
        tokio::task::spawn_blocking(move || cat.entry(&k))
            .await
            .map_err(ApiError::internal)??;
        let mut slots = self.slots();
        let Some(Slot::Ready(m)) = slots.get(&key) else {
            return Ok(false);
        };
        if m.active() == 0 {
            slots.remove(&key);
        } else {
            m.usage.lock().unwrap_or_else(|p| p.into_inner()).keep_alive =
                KeepAlive::For(Duration::ZERO);
        }
        Ok(true)
    }

    /// Unloads every idle model whose keep-alive has run out.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.slots().retain(|k, s| {
            let Slot::Ready(m) = s else { return true };
            if m.active() > 0 {
                return true;
            }
            let expires = m.usage.lock().unwrap_or_else(|p| p.into_inner()).expires;
            let keep = expires.is_none_or(|e| e > now);
            if !keep {
                tracing::info!("unloading {k} (keep-alive ran out)");
            }
            keep
        });
    }

    /// Runs [`Self::sweep`] every `every` until the manager is dropped.
    /// When the next idle model's keep-alive runs out, if one is idle with an expiry.
    fn next_expiry(&self) -> Option<Instant> {
        self.slots()
            .values()
            .filter_map(|s| match s {
                Slot::Ready(m) if m.active() == 0 => {
                    m.usage.lock().unwrap_or_else(|p| p.into_inner()).expires
                }
                _ => None,
            })
            .min()
    }

    /// Sweeps whenever a keep-alive runs out, until the manager is dropped: it sleeps until the earliest expiry
    /// (or until woken by a load or a request's end), at most `every` at a time, so an idle server spends no CPU.
    pub fn start_sweeper(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                let Some(m) = weak.upgrade() else { break };
                m.sweep();
                let cap = Instant::now() + every;
                let until = m.next_expiry().map_or(cap, |t| t.min(cap));
                drop(m);
                tokio::select! {
                    () = tokio::time::sleep_until(until.into()) => {}
                    () = wake.notified() => {}
                }
            }
        });
    }
}

/// The slot of adapter `name` on a leased model, or a 404 naming the adapters it has.
fn adapter_slot(lease: &Lease, name: &str) -> ApiResult<LoraSlot> {
    let model = &lease.model.entry.name;
    let crate::catalog::Runner::Chat(h) = &lease.model.runner else {
        return Err(ApiError::bad_request(format!(
            "'{model}' is an embedding model: it takes no adapter"
        ))
        .param("model"));
    };
    let info = h.model();
    match info.lora_id(name) {
        Some(id) => Ok(LoraSlot { id, scale: 1.0 }),
        None => {
            let have = if info.loras.is_empty() {
                "none (serve one with `lar serve --model M --lora NAME=PATH`)".to_string()
            } else {
                info.loras.join(", ")
            };
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "model '{model}' is served with no adapter '{name}' (its adapters: {have})"
                ),
            )
            .param("model")
            .code("model_not_found"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_go_writes_them() {
        for (s, want) in [
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("300ms", 0.3),
            ("10", 10.0),
            ("-1", -1.0),
            ("-1m", -60.0),
            ("1.5h", 5400.0),
            ("0", 0.0),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for bad in ["", "5x", "m", "-", "1h-2m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keep_alive_forms() {
        use serde_json::json;
        assert_eq!(KeepAlive::parse(&json!(-1)), Ok(KeepAlive::Forever));
        assert_eq!(
            KeepAlive::parse(&json!("2m")),
            Ok(KeepAlive::For(Duration::from_secs(120)))
        );
        assert_eq!(
            KeepAlive::parse(&json!(0)),
            Ok(KeepAlive::For(Duration::ZERO))
        );
        assert!(KeepAlive::parse(&json!(true)).is_err());
        assert!(KeepAlive::parse(&json!(1e300)).is_err());
    }
}
