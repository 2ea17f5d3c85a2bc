//! `lar serve`: the OpenAI and Ollama APIs over HTTP (the server is `lar-server`; this only parses flags), and
//! `lar ps`: what a running server has loaded, as `ollama ps` shows it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use lar_plan::size::parse_bytes;
use lar_server::{
    AppState, KeepAlive, Manager, ManagerConfig, ServeConfig, ServerConfig, StoreCatalog,
};

#[derive(clap::Args, Debug)]
#[command(after_help = "\
Clients: the openai SDK (base_url http://127.0.0.1:11434/v1), the ollama SDK and Open WebUI (no configuration:
the port is Ollama's), LangChain, curl. Models are named by their store name (`lar list`).

Environment: LAR_API_KEY (keys, comma-separated, as --api-key), RUST_LOG (log filter, default info).")]
pub struct Args {
    /// Interface to listen on; anything but loopback needs an API key (or --insecure).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (Ollama's, so Ollama clients find Lar with no configuration).
    #[arg(long, default_value_t = 11434)]
    pub port: u16,
    /// Models to load at start (repeatable); others load on their first request. Starter names are pulled first.
    #[arg(long = "model")]
    pub models: Vec<String>,
    /// A LoRA adapter to serve with the --model models it fits, as `NAME=PATH` (repeatable; PATH a PEFT directory
    /// or a GGUF adapter): requests name it as the model `MODEL+NAME`, or by llama-server's `lora` field.
    #[arg(long = "lora", requires = "models")]
    pub loras: Vec<String>,
    /// Requests each model runs at once (batched together); the KV cache holds this many full contexts.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait beyond --parallel before the server answers 503.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Most models loaded at once; the least recently used idle one unloads first.
    #[arg(long, default_value_t = 3)]
    pub max_loaded: usize,
    /// Context per sequence (default: 4096, capped by the model's own); Ollama's num_ctx may ask for more.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Threads per model's forward pass; default: the number of physical cores.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// How long an idle model stays loaded (30s, 5m, 1h; -1 forever; 0 unloads at once).
    #[arg(long, default_value = "5m", allow_hyphen_values = true)]
    pub keep_alive: String,
    /// Where the forward pass runs: cpu, cuda, cuda:N, candle-cpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Most tokens in one forward pass: prompts are computed in chunks of what is left after the running
    /// sequences' decode tokens, so a smaller figure keeps decoding smooth while prompts arrive (lower inter-token
    /// latency tail) at some cost in prompt throughput.
    #[arg(long, default_value_t = 256)]
    pub max_batch_tokens: usize,
    /// Bytes the KV cache of each model may use, instead of --parallel full contexts.
    #[arg(long, value_parser = parse_bytes)]
    pub kv_budget: Option<u64>,
    /// An accepted API key (repeatable): then every route but /health needs `Authorization: Bearer KEY` or
    /// `X-Api-Key: KEY`.
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Listen on a non-loopback interface without an API key.
    #[arg(long)]
    pub insecure: bool,
    /// An origin allowed by CORS (repeatable); none: no CORS headers.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// Largest request body.
    #[arg(long, value_parser = parse_bytes, default_value = "32MiB")]
    pub body_limit: u64,
    /// Seconds a stream with nothing to send (a long prefill, a queue) waits before sending a keep-alive (an SSE
    /// comment, a space before the next NDJSON line); below a proxy's read timeout.
    #[arg(long, default_value_t = lar_server::DEFAULT_STREAM_KEEPALIVE.as_secs_f64())]
    pub stream_keepalive: f64,
    /// Write prompts and answers to the log (off by default).
    #[arg(long)]
    pub log_prompts: bool,
    /// Record every generation in the audit log ($LAR_HOME/audit.sqlite: time, route, key fingerprint, model
    /// sha256, parameters, prompt and output sha256, knowledge-base sources, tokens, end; `lar audit` reads it).
    #[arg(long)]
    pub audit: bool,
    /// With --audit: keep the prompt and output texts too.
    #[arg(long, requires = "audit")]
    pub audit_text: bool,
    /// Limit an API key to some knowledge bases: `KEY=NAME,NAME` (repeatable; `KEY=` reads none). Keys not named
    /// here read every knowledge base.
    #[arg(long = "kb-access")]
    pub kb_access: Vec<String>,
    /// The chat model that answers `kb:NAME` models (default: the first --model).
    #[arg(long)]
    pub kb_model: Option<String>,
    /// Serve no knowledge base (no /v1/kb, no kb:NAME models).
    #[arg(long)]
    pub no_kb: bool,
}

/// `--kb-access KEY=NAME,NAME`: the key (which may itself hold '=') before the last '='.
fn kb_grants(
    args: &Args,
    keys: &[String],
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut grants = std::collections::HashMap::new();
    for g in &args.kb_access {
        let (key, names) = g
            .rsplit_once('=')
            .ok_or_else(|| anyhow!("--kb-access {g}: write KEY=NAME,NAME"))?;
        if !keys.iter().any(|k| k == key) {
            bail!(
                "--kb-access: that key is not one of the server's API keys (--api-key, LAR_API_KEY)"
            );
        }
        let names: Vec<String> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        for n in &names {
            lar_rag::kb::check_name(n).map_err(|e| anyhow!("--kb-access: {e}"))?;
        }
        // Repeated for one key: the union.
        grants
            .entry(key.to_string())
            .or_insert_with(Vec::new)
            .extend(names);
    }
    Ok(grants)
}

/// Every API key from the flags, the key file and LAR_API_KEY.
fn api_keys(args: &Args) -> Result<Vec<String>> {
    let mut keys = args.api_keys.clone();
    if let Some(f) = &args.api_key_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("--api-key-file {}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    if let Ok(env) = std::env::var("LAR_API_KEY") {
        keys.extend(
            env.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from),
        );
    }
    if keys.iter().any(|k| k.len() < 8) {
        bail!("an API key must have at least 8 characters");
    }
    Ok(keys)
}

pub fn main(args: Args) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let ip: IpAddr = match args.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .parse()
            .map_err(|_| anyhow!("--host: '{h}' is not an IP address"))?,
    };
    let keys = api_keys(&args)?;
    if !ip.is_loopback() && keys.is_empty() && !args.insecure {
        bail!(
            "--host {ip} would let anyone on the network use this machine's models with no key: give --api-key \
             (or LAR_API_KEY), or --insecure if this network is trusted"
        );
    }
    let grants = kb_grants(&args, &keys)?;
    let keep_alive = KeepAlive::parse(&serde_json::Value::String(args.keep_alive.clone()))
        .map_err(|e| anyhow!("--keep-alive: {e}"))?;
    let engine = lar_engine::EngineConfig {
        ctx: args.ctx,
        threads: lar_engine::load::check_threads(args.threads)
            .map_err(|e| anyhow!("--threads: {e}"))?,
        device: args.device.parse().map_err(|e| anyhow!("--device: {e}"))?,
        parallel: args.parallel.max(1),
        max_seqs: args.parallel.max(1),
        kv_budget: args.kv_budget,
        max_batch_tokens: args.max_batch_tokens.max(1),
        ..Default::default()
    };
    // Starter names given at start are pulled now, with progress, rather than inside a request.
    for m in &args.models {
        lar_store::ModelName::parse(m).map_err(|_| {
            anyhow!("--model {m}: the server serves store names (see `lar list`); add a file with `lar import`")
        })?;
        crate::store::model_path(m)?;
    }
    let engine_threads = engine.threads;
    let store = crate::store::open()?;
    let loras = args
        .loras
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
                .ok_or_else(|| anyhow!("--lora {l}: write NAME=PATH"))
        })
        .collect::<Result<Vec<_>>>()?;
    let adapters = lar_server::catalog::plan_adapters(&store, &args.models, &loras)
        .map_err(|e| anyhow!("--lora: {e}"))?;
    let catalog = Arc::new(StoreCatalog::new(store, engine).with_adapters(adapters));
    let manager = Manager::new(
        catalog,
        ManagerConfig {
            keep_alive,
            max_loaded: args.max_loaded.max(1),
            parallel: args.parallel.max(1),
            max_queue: args.max_queue,
            ..Default::default()
        },
    );
    let cfg = ServerConfig {
        api_keys: keys,
        cors_origins: args.cors_origins.clone(),
        body_limit: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
        log_prompts: args.log_prompts,
        audit: if args.audit {
            Some(std::sync::Arc::new(
                lar_lab::audit::AuditLog::open_home(&lar_store::default_home())
                    .context("opening the audit log")?,
            ))
        } else {
            None
        },
        audit_text: args.audit_text,
        stream_keepalive: std::time::Duration::try_from_secs_f64(args.stream_keepalive)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--stream-keepalive must be a positive number of seconds, not {}",
                    args.stream_keepalive
                )
            })?,
        // /v1/responses keeps its answers (for previous_response_id) beside the store.
        responses_db: Some(lar_store::default_home().join("responses.sqlite")),
        // The web UI's conversations, also beside the store.
        ui_db: Some(lar_store::default_home().join("ui.sqlite")),
        // The lab's run records: the same file `lar bench`, `lar eval` and `lar quantize` write.
        runs_db: Some(lar_store::default_home().join("runs.sqlite")),
        kb: lar_server::kb::KbServing {
            root: (!args.no_kb).then(|| lar_store::default_home().join("kb")),
            grants,
            default_model: args
                .kb_model
                .clone()
                .or_else(|| args.models.first().cloned()),
            threads: engine_threads,
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lar-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = SocketAddr::new(ip, args.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow!(
                    "port {} is already in use on {ip} (is Ollama or another lar serve running?): stop it or pass --port",
                    args.port
                )
            } else {
                anyhow!("cannot listen on {addr}: {e}")
            }
        })?;
        manager.start_sweeper(std::time::Duration::from_secs(3600));
        let state = AppState::new(manager, cfg);
        state.preload(args.models.clone());
        let auth = if state.cfg.api_keys.is_empty() { "no API key" } else { "API key required" };
        eprintln!("lar serve: listening on http://{addr} ({auth}); OpenAI API at http://{addr}/v1, Ollama API at http://{addr}/api");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("lar serve: stopping");
        };
        lar_server::serve(listener, lar_server::app(state), ServeConfig::default(), shutdown)
            .await
            .context("serving")
    })
}

#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:11434", env = "LAR_URL")]
    pub url: String,
}

pub fn ps(args: PsArgs) -> Result<()> {
    let url = format!("{}/api/ps", args.url.trim_end_matches('/'));
    let mut req = reqwest::blocking::Client::new().get(&url);
    if let Some(k) = std::env::var("LAR_API_KEY")
        .ok()
        .and_then(|k| k.split(',').next().map(str::to_string))
    {
        req = req.bearer_auth(k.trim());
    }
    let resp = req
        .send()
        .with_context(|| format!("is `lar serve` running? ({url})"))?;
    let status = resp.status();
    let text = resp.text().with_context(|| format!("reading {url}"))?;
    let body: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{url}: not JSON"))?;
    if !status.is_success() {
        bail!(
            "{url}: HTTP {status}: {}",
            body["error"].as_str().unwrap_or("")
        );
    }
    println!(
        "{:<32} {:>10} {:>8} {:<30}",
        "NAME", "SIZE", "CONTEXT", "UNTIL"
    );
    for m in body["models"].as_array().into_iter().flatten() {
        let size = m["size"].as_u64().unwrap_or(0);
        println!(
            "{:<32} {:>10} {:>8} {:<30}",
            m["name"].as_str().unwrap_or("?"),
            lar_plan::size::fmt_bytes(size),
            m["context_length"].as_u64().unwrap_or(0),
            m["expires_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
