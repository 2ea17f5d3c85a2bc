//! `lar kb create|add|sync|list|stats|rm|search|eval`: the knowledge base from the command line. The work is in
//! lar-rag; this wires in the sentence embedder, a progress bar, the ingest summary and the PDF worker process (the
//! PDF parser runs in a child `lar` so a panic or a hang in it never takes the ingest down).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lar_engine::SentenceEmbedder;
use lar_rag::connectors::PdfIsolation;
use lar_rag::eval;
use lar_rag::ingest::{self, Progress, Root};
use lar_rag::kb::{KbConfig, Registry};
use lar_rag::search::{SearchOptions, search};
use lar_rag::store::Filter;

/// The embedder a knowledge base gets when none is named: all-MiniLM-L6-v2 (384 dimensions, English).
pub const DEFAULT_EMBEDDER: &str = "all-minilm";

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create a knowledge base.
    Create(CreateArgs),
    /// Add files and folders (recursively) to a knowledge base.
    Add(AddArgs),
    /// Re-ingest what changed under the added paths (by content hash) and drop what was deleted.
    Sync(NameArgs),
    /// The knowledge bases.
    List(ListArgs),
    /// Files, chunks per kind and size of a knowledge base.
    Stats(NameArgs),
    /// Delete a knowledge base (the indexed files are not touched).
    Rm(NameArgs),
    /// Hybrid search (BM25 + vectors): the best chunks with their sources.
    Search(SearchArgs),
    /// Retrieval quality on a JSON Lines file of questions: recall@k and MRR.
    Eval(EvalArgs),
    /// Internal: extract one PDF's pages as JSON (the isolated PDF parser).
    #[command(hide = true)]
    PdfWorker { path: PathBuf },
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// Sentence-transformers model directory or store name.
    #[arg(long, default_value = DEFAULT_EMBEDDER)]
    pub embedder: String,
    /// `sqlite` (one file under $LAR_HOME/kb) or a `postgres://` URL (pgvector).
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// How full-text search treats words: `auto` (each chunk stemmed in its detected language), a language code
    /// (en, es, fr, de, it, pt, nl, da, sv, no, fi, ro, hu, tr) or `none` (no stemming).
    #[arg(long, default_value = "auto")]
    pub language: String,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    pub name: String,
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Only files matching this glob (name or relative path; repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Leave out files matching this glob (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Print the ingest summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(clap::Args, Debug)]
pub struct NameArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

/// Filters shared by `kb search` and `ask`.
#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// Only this source kind (text, markdown, html, pdf, docx, mail, calendar, transcript; repeatable).
    #[arg(long = "kind")]
    pub kinds: Vec<String>,
    /// Only paths matching this glob (`*.pdf`, `contracts/*.pdf`: a relative glob matches at any depth).
    #[arg(long)]
    pub path: Option<String>,
    /// Only documents dated on or after (YYYY-MM-DD or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only documents dated on or before (a date alone includes that whole day).
    #[arg(long)]
    pub until: Option<String>,
    /// Only mail whose sender contains this.
    #[arg(long = "from")]
    pub sender: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    pub name: String,
    pub query: String,
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub rerank: RerankArgs,
}

/// The optional reranking stage.
#[derive(clap::Args, Debug, Clone)]
pub struct RerankArgs {
    /// Rerank the best candidates by this chat model's judgement of their relevance (slower: one short prompt
    /// per candidate).
    #[arg(long, value_name = "MODEL")]
    pub rerank: Option<String>,
    /// Candidates the judge reads.
    #[arg(long, default_value_t = lar_rag::rerank::DEFAULT_DEPTH)]
    pub rerank_depth: usize,
}

impl RerankArgs {
    /// The judge and its depth, when reranking was asked for.
    pub fn judge(&self, threads: usize) -> Result<Option<(crate::judge::EngineJudge, usize)>> {
        if self.rerank_depth == 0 {
            bail!("--rerank-depth must be at least 1");
        }
        self.rerank
            .as_deref()
            .map(|m| {
                Ok((
                    crate::judge::EngineJudge::load(m, threads)?,
                    self.rerank_depth,
                ))
            })
            .transpose()
    }
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    pub name: String,
    /// Lines of `{"q": "...", "pages": ["file.md", ...]}`.
    pub questions: PathBuf,
    #[arg(short, default_value_t = 5)]
    pub k: usize,
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub rerank: RerankArgs,
}

pub fn registry() -> Registry {
    Registry::new(lar_store::default_home().join("kb"))
}

/// The sentence embedder a knowledge base names (a directory, or a store name pulled on first use).
pub fn embedder(name: &str, threads: usize) -> Result<SentenceEmbedder> {
    let path = crate::common::model_path(name)?;
    if !path.is_dir() {
        bail!(
            "{} is not a sentence-transformers model directory (the embedder of a knowledge base)",
            path.display()
        );
    }
    SentenceEmbedder::open(&path, threads).with_context(|| format!("loading {}", path.display()))
}

/// Opens a knowledge base with its embedder.
pub fn open(
    name: &str,
    threads: usize,
) -> Result<(KbConfig, Box<dyn lar_rag::store::Store>, SentenceEmbedder)> {
    let reg = registry();
    let cfg = reg.get(name)?;
    let store = reg.open(&cfg)?;
    let emb = embedder(&cfg.embedder, threads)?;
    Ok((cfg, store, emb))
}

pub fn main(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Create(a) => create(a),
        Cmd::Add(a) => add(a),
        Cmd::Sync(a) => sync(a),
        Cmd::List(a) => list(a),
        Cmd::Stats(a) => stats(a),
        Cmd::Rm(a) => {
            registry().remove(&a.name)?;
            eprintln!("removed knowledge base '{}'", a.name);
            Ok(())
        }
        Cmd::Search(a) => search_cmd(a),
        Cmd::Eval(a) => eval_cmd(a),
        Cmd::PdfWorker { path } => std::process::exit(lar_rag::connectors::pdf::worker_main(&path)),
    }
}

fn create(a: CreateArgs) -> Result<()> {
    lar_rag::kb::check_name(&a.name)?;
    let language = lar_rag::lang::Analyzer::parse(&a.language)?;
    // A directory is recorded absolute, so the knowledge base works from any working directory.
    let embedder_name = match std::fs::canonicalize(&a.embedder) {
        Ok(p) if Path::new(&a.embedder).is_dir() => p.display().to_string(),
        _ => a.embedder.clone(),
    };
    let e = embedder(&embedder_name, 1)?;
    let dim = lar_types::Embedder::dim(&e);
    let cfg = registry().create(&a.name, &embedder_name, dim, &a.store, language)?;
    eprintln!(
        "created knowledge base '{}' (embedder {}, {} dimensions, language {}, store {})",
        cfg.name,
        cfg.embedder,
        dim,
        language.name(),
        if cfg.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        }
    );
    Ok(())
}

fn options(e: &SentenceEmbedder) -> ingest::Options {
    let mut o = ingest::Options::for_embedder(e);
    // The PDF parser runs in a child process of this same binary, with a time limit.
    if let Ok(exe) = std::env::current_exe() {
        o.read.pdf = PdfIsolation::Subprocess {
            program: exe,
            args: vec!["kb".into(), "pdf-worker".into()],
            timeout: std::time::Duration::from_secs(60),
        };
    }
    o
}

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} files {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

fn run_ingest(
    name: &str,
    threads: usize,
    json: bool,
    work: impl FnOnce(
        &mut dyn lar_rag::store::Store,
        &SentenceEmbedder,
        &ingest::Options,
        &mut dyn FnMut(Progress<'_>),
    ) -> lar_rag::Result<ingest::Report>,
) -> Result<()> {
    let (_, mut store, emb) = open(name, threads)?;
    let opts = options(&emb);
    let pb = progress_bar();
    let mut on = |p: Progress<'_>| match p {
        Progress::Found(n) => pb.set_length(n as u64),
        Progress::File(f) => {
            pb.inc(1);
            pb.set_message(short(f));
        }
        Progress::Chunks(n) => pb.set_message(format!("{n} chunks")),
    };
    let report = work(store.as_mut(), &emb, &opts, &mut on)?;
    pb.finish_and_clear();
    print_report(&report, json)
}

fn short(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or(path.to_string(), |n| n.to_string_lossy().to_string())
}

fn print_report(r: &ingest::Report, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(r)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} files read, {} unchanged, {} removed, {} skipped; {} chunks added, {} removed; {:.1} s",
        r.files_read,
        r.files_unchanged,
        r.files_removed,
        r.skipped.len(),
        r.chunks_added,
        r.chunks_removed,
        r.seconds
    )?;
    for s in &r.skipped {
        writeln!(out, "  skipped {}: {}", s.path, s.reason)?;
    }
    Ok(())
}

fn add(a: AddArgs) -> Result<()> {
    let reg = registry();
    let mut cfg = reg.get(&a.name)?;
    let mut roots = Vec::new();
    for p in &a.paths {
        // Recorded absolute (for `sync`); a path that does not resolve is reported by the walk.
        let path = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let path = path
            .to_str()
            .with_context(|| format!("{}: the path is not valid UTF-8", p.display()))?
            .to_string();
        roots.push(Root {
            path,
            include: a.include.clone(),
            exclude: a.exclude.clone(),
        });
    }
    let (files, skipped) = ingest::walk(&roots)?;
    for r in &roots {
        if !cfg.roots.contains(r) && Path::new(&r.path).exists() {
            cfg.roots.retain(|old| old.path != r.path);
            cfg.roots.push(r.clone());
        }
    }
    reg.save(&cfg)?;
    run_ingest(&a.name, a.threads, a.json, |store, emb, opts, on| {
        let mut rep = ingest::ingest(store, emb, &files, opts, on)?;
        rep.skipped.splice(0..0, skipped);
        Ok(rep)
    })
}

fn sync(a: NameArgs) -> Result<()> {
    let cfg = registry().get(&a.name)?;
    run_ingest(&a.name, a.threads, a.json, |store, emb, opts, on| {
        ingest::sync(store, emb, &cfg.roots, opts, on)
    })
}

fn list(a: ListArgs) -> Result<()> {
    let kbs = registry().list()?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let shown: Vec<KbConfig> = kbs.iter().cloned().map(without_password).collect();
        writeln!(out, "{}", serde_json::to_string(&shown)?)?;
        return Ok(());
    }
    if kbs.is_empty() {
        eprintln!("no knowledge bases (create one with `lar kb create NAME`)");
    }
    for k in kbs {
        let store = if k.is_postgres() {
            "postgres"
        } else {
            "sqlite"
        };
        writeln!(
            out,
            "{:<20} {:<8} {} ({} roots)",
            k.name,
            store,
            k.embedder,
            k.roots.len()
        )?;
    }
    Ok(())
}

/// The config as `kb list --json` shows it: a PostgreSQL URL's password replaced by `***`.
fn without_password(mut cfg: KbConfig) -> KbConfig {
    if cfg.is_postgres() {
        cfg.store = lar_rag::store::postgres::redact(&cfg.store);
    }
    cfg
}

fn stats(a: NameArgs) -> Result<()> {
    let reg = registry();
    let cfg = reg.get(&a.name)?;
    let store = reg.open(&cfg)?;
    let s = store.stats()?;
    let language = store.info().language.name();
    let seen: Vec<&str> = store.languages().iter().map(|l| l.code()).collect();
    let mut out = std::io::stdout().lock();
    if a.json {
        let by: serde_json::Map<String, serde_json::Value> = s
            .by_kind
            .iter()
            .map(|(k, n)| (k.to_string(), (*n).into()))
            .collect();
        let v = serde_json::json!({
            "name": cfg.name, "embedder": cfg.embedder, "dim": cfg.dim, "store": if cfg.is_postgres() { "postgres" } else { "sqlite" },
            "files": s.files, "chunks": s.chunks, "by_kind": by, "bytes": s.bytes,
            "language": language, "languages": seen,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{}: {} files, {} chunks, {}; language {language}{}",
        cfg.name,
        s.files,
        s.chunks,
        lar_plan::size::fmt_bytes(s.bytes),
        if seen.is_empty() {
            String::new()
        } else {
            format!(" ({})", seen.join(", "))
        }
    )?;
    for (k, n) in s.by_kind {
        writeln!(out, "  {k:<11} {n} chunks")?;
    }
    Ok(())
}

impl FilterArgs {
    /// The store's filter (the rules are lar-rag's, shared with the server).
    pub fn filter(&self) -> Result<Filter> {
        let spec = lar_rag::filter::FilterSpec {
            kinds: self.kinds.clone(),
            path: self.path.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            sender: self.sender.clone(),
        };
        spec.to_filter().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn search_cmd(a: SearchArgs) -> Result<()> {
    let opts = SearchOptions {
        k: a.k,
        filter: a.filter.filter()?,
        ..Default::default()
    };
    // Checked before the knowledge base (and its embedder) is opened.
    opts.validate()?;
    let (_, store, emb) = open(&a.name, a.threads)?;
    let hits = match a.rerank.judge(a.threads)? {
        Some((mut j, depth)) => {
            lar_rag::rerank::search_reranked(store.as_ref(), &emb, &a.query, &opts, &mut j, depth)?
        }
        None => search(store.as_ref(), &emb, &a.query, &opts)?,
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&hits)?)?;
        return Ok(());
    }
    if hits.is_empty() {
        writeln!(out, "no results")?;
    }
    for (i, h) in hits.iter().enumerate() {
        let cite = lar_rag::answer::Source::from_hit(i + 1, h).cite();
        writeln!(out, "{}. [{:.4}] {cite}", i + 1, h.score)?;
        let text: String = h.chunk.text.chars().take(300).collect();
        writeln!(out, "   {}", text.replace('\n', "\n   "))?;
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.questions)
        .with_context(|| format!("reading {}", a.questions.display()))?;
    let cases = eval::read_cases(&text).with_context(|| format!("{}", a.questions.display()))?;
    let opts = SearchOptions {
        k: a.k,
        ..Default::default()
    };
    opts.validate()?;
    let (_, store, emb) = open(&a.name, a.threads)?;
    let mut judge = a.rerank.judge(a.threads)?;
    let r = eval::evaluate_with(
        store.as_ref(),
        &emb,
        &cases,
        &opts,
        judge
            .as_mut()
            .map(|(j, d)| (j as &mut dyn lar_rag::rerank::Judge, *d)),
    )?;
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        return Ok(());
    }
    for c in &r.cases {
        let mark = if c.recall >= 1.0 { "ok  " } else { "MISS" };
        writeln!(
            out,
            "{mark} {:?} -> {}",
            c.q,
            c.got
                .iter()
                .map(|g| short(g))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(
        out,
        "{} questions: recall@{} = {:.3}, MRR = {:.3}",
        r.questions, r.k, r.recall_at_k, r.mrr
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn until_a_date_includes_that_day() {
        let f = |since: &str, until: &str| {
            super::FilterArgs {
                kinds: vec![],
                path: None,
                since: Some(since.into()),
                until: Some(until.into()),
                sender: None,
            }
            .filter()
        };
        let one_day = f("2024-03-01", "2024-03-01").unwrap();
        assert_eq!(one_day.since, Some(1709251200));
        assert_eq!(one_day.until, Some(1709251200 + 86_399));
        let timed = f("2024-03-01", "2024-03-01T12:00:00Z").unwrap();
        assert_eq!(timed.until, Some(1709294400));
        let err = f("2024-03-02", "2024-03-01").unwrap_err().to_string();
        assert!(err.contains("starts after it ends"), "{err}");
        let err = f("2024-02-30", "2024-03-01").unwrap_err().to_string();
        assert!(err.contains("since: '2024-02-30' is not a date"), "{err}");
    }

    #[test]
    fn kb_list_json_hides_the_database_password() {
        let cfg = lar_rag::kb::KbConfig {
            name: "big".into(),
            embedder: "all-minilm".into(),
            dim: 384,
            store: "postgres://lar:s3cret@db.lan:5432/kb".into(),
            roots: vec![],
            created: 0,
        };
        let shown = serde_json::to_string(&super::without_password(cfg)).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://lar:***@db.lan:5432/kb"),
            "{shown}"
        );
    }

    #[test]
    fn a_relative_path_glob_matches_at_any_depth() {
        // Stored paths are absolute, so `--path '*.pdf'` used to match nothing and print "no results".
        let f = |g: &str| {
            super::FilterArgs {
                kinds: vec![],
                path: Some(g.into()),
                since: None,
                until: None,
                sender: None,
            }
            .filter()
            .unwrap()
            .path_glob
            .unwrap()
        };
        assert_eq!(f("*.pdf"), "**/*.pdf");
        assert_eq!(f("contracts/*.pdf"), "**/contracts/*.pdf");
        assert_eq!(f("**/x/*.md"), "**/x/*.md");
        assert_eq!(f("/home/ana/docs/**"), "/home/ana/docs/**");
    }
}
