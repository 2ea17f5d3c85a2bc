//! Ingest: walk the given paths, skip what has not changed (by sha256 of the bytes), read each new or changed file
//! through its connector, chunk it, embed the chunks and replace the file's entry in the store in one transaction.
//! `sync` does the same for a knowledge base's recorded roots and drops files that are gone. Nothing one file does
//! (unreadable, corrupt, encrypted, too large, a symlink loop, removed halfway) stops the others: it is skipped and
//! the reason reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use lar_types::Embedder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chunk::{ChunkConfig, chunk_documents, embed_text};
use crate::connectors::{self, ReadOptions};
use crate::store::{FileEntry, Store};
use crate::{Error, Result};

/// A path given to `kb add`, with its filters; `sync` walks the same roots again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Root {
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// A file left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What an ingest did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Files read and (re)indexed.
    pub files_read: u64,
    /// Files whose content hash had not changed.
    pub files_unchanged: u64,
    /// Files dropped because they are gone (sync).
    pub files_removed: u64,
    pub chunks_added: u64,
    pub chunks_removed: u64,
    pub skipped: Vec<Skipped>,
    pub seconds: f64,
}

/// Progress of an ingest, for a progress bar.
pub enum Progress<'a> {
    /// The walk is done: this many candidate files.
    Found(usize),
    /// One file done (indexed, unchanged or skipped).
    File(&'a str),
    /// Chunks embedded so far in this file.
    Chunks(usize),
}

/// How an ingest reads and cuts files.
#[derive(Clone, Debug)]
pub struct Options {
    pub read: ReadOptions,
    pub chunk: ChunkConfig,
    /// Texts per embedder call.
    pub batch: usize,
}

impl Options {
    pub fn for_embedder(e: &dyn Embedder) -> Self {
        Options {
            read: ReadOptions::default(),
            chunk: ChunkConfig::for_embedder(e.max_tokens()),
            batch: 64,
        }
    }
}

/// Compiled include/exclude globs of a root. A glob matches a file when it matches the path relative to the root or
/// the file name alone (`*.md`, `notes/**`).
struct Globs {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn globset(pats: &[String]) -> Result<Option<GlobSet>> {
    if pats.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in pats {
        b.add(Glob::new(p).map_err(|e| Error::Invalid(format!("bad glob '{p}': {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Invalid(format!("bad glob: {e}")))
}

impl Globs {
    fn new(root: &Root) -> Result<Self> {
        Ok(Globs {
            include: globset(&root.include)?,
            exclude: globset(&root.exclude)?,
        })
    }
    fn wants(&self, rel: &Path) -> bool {
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let hit = |g: &GlobSet| g.is_match(rel) || g.is_match(name);
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }
}

/// Whether a directory entry is hidden (`.git`, `.cache`), except Maildir++ folders (`.Sent`), which hold mail.
fn hidden(entry: &walkdir::DirEntry) -> bool {
    entry.depth() > 0
        && entry.file_name().to_string_lossy().starts_with('.')
        && !(entry.file_type().is_dir() && entry.path().join("cur").is_dir())
}

/// The files under `roots` that a connector reads and the globs let through (absolute paths, sorted, no
/// duplicates), and what was skipped on the way (symlink loops, unreadable directories, unsupported types).
pub fn walk(roots: &[Root]) -> Result<(Vec<PathBuf>, Vec<Skipped>)> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for root in roots {
        let globs = Globs::new(root)?;
        let base = match std::fs::canonicalize(&root.path) {
            Ok(p) => p,
            Err(e) => {
                skipped.push(Skipped {
                    path: root.path.clone(),
                    reason: io_reason(&e),
                });
                continue;
            }
        };
        let it = walkdir::WalkDir::new(&base)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| !hidden(e));
        for entry in it {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e
                        .path()
                        .map_or(root.path.clone(), |p| p.display().to_string());
                    let reason = if e.loop_ancestor().is_some() {
                        "symlink loop".to_string()
                    } else {
                        e.io_error().map_or(e.to_string(), io_reason)
                    };
                    skipped.push(Skipped { path, reason });
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            // A root that is a file is its own relative path: match the globs on its name, not on "".
            let rel = match path.strip_prefix(&base) {
                Ok(r) if !r.as_os_str().is_empty() => r,
                _ => path,
            };
            if !globs.wants(rel) {
                continue;
            }
            if connectors::detect(path).is_none() {
                // Only worth a line when the user named the file itself.
                if entry.depth() == 0 {
                    skipped.push(Skipped {
                        path: path.display().to_string(),
                        reason: "unsupported file type".into(),
                    });
                }
                continue;
            }
            // One entry per file, however many links lead to it.
            files.push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        }
    }
    files.sort();
    files.dedup();
    Ok((files, skipped))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(40) => "symlink loop".into(), // ELOOP
        _ if e.kind() == std::io::ErrorKind::NotFound => "not found".into(),
        _ if e.kind() == std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Indexes `files` (new or changed ones; unchanged hashes are skipped). Files already stored and not in `files` are
/// left alone.
pub fn ingest(
    store: &mut dyn Store,
    embedder: &dyn Embedder,
    files: &[PathBuf],
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report> {
    let t0 = Instant::now();
    let known: HashMap<String, FileEntry> = store
        .files()?
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect();
    let mut report = Report::default();
    progress(Progress::Found(files.len()));
    for path in files {
        let name = path.display().to_string();
        match ingest_one(store, embedder, path, known.get(&name), opts, progress) {
            Ok(Some((added, removed))) => {
                report.files_read += 1;
                report.chunks_added += added;
                report.chunks_removed += removed;
            }
            Ok(None) => report.files_unchanged += 1,
            Err(Error::Unreadable { path, reason }) => {
                report.skipped.push(Skipped { path, reason })
            }
            Err(Error::Unsupported(path)) => report.skipped.push(Skipped {
                path,
                reason: "unsupported file type".into(),
            }),
            Err(e) => return Err(e),
        }
        progress(Progress::File(&name));
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

/// `Some((chunks added, chunks removed))` when indexed, `None` when unchanged.
fn ingest_one(
    store: &mut dyn Store,
    embedder: &dyn Embedder,
    path: &Path,
    known: Option<&FileEntry>,
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Option<(u64, u64)>> {
    let name = path
        .to_str()
        .ok_or_else(|| Error::unreadable(path.display(), "the path is not valid UTF-8"))?;
    let format = connectors::detect(path).ok_or_else(|| Error::Unsupported(name.to_string()))?;
    // One bounded read serves both the hash and the parser (a PDF read by the isolated worker is the exception).
    let bytes = connectors::read_limited(path, name, opts.read.max_bytes)?;
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if known.is_some_and(|k| k.sha256 == sha256) {
        return Ok(None);
    }
    let size = bytes.len() as u64;
    let mtime = std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let docs = match (format, &opts.read.pdf) {
        (connectors::Format::Pdf, connectors::PdfIsolation::Subprocess { .. }) => {
            connectors::read(path, &opts.read)?
        }
        _ => connectors::parse(name, format, bytes, &opts.read)?,
    };
    let chunks = chunk_documents(&docs, &opts.chunk, &|s| embedder.count_tokens(s));
    let texts: Vec<String> = chunks.iter().map(embed_text).collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(opts.batch.max(1)) {
        let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
        let v = embedder
            .embed(&refs)
            .map_err(|e| Error::Embed(format!("{name}: {e}")))?;
        vectors.extend(v);
        progress(Progress::Chunks(vectors.len()));
    }
    let entry = FileEntry {
        path: name.to_string(),
        sha256,
        size,
        mtime,
        chunks: chunks.len() as u64,
    };
    store.put_file(&entry, &chunks, &vectors)?;
    Ok(Some((chunks.len() as u64, known.map_or(0, |k| k.chunks))))
}

/// Re-walks `roots`: indexes what is new or changed, drops files the walk no longer yields.
pub fn sync(
    store: &mut dyn Store,
    embedder: &dyn Embedder,
    roots: &[Root],
    opts: &Options,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report> {
    let t0 = Instant::now();
    let (files, skipped) = walk(roots)?;
    let mut report = ingest(store, embedder, &files, opts, progress)?;
    let present: std::collections::HashSet<String> =
        files.iter().map(|p| p.display().to_string()).collect();
    // Dropped: files the walk no longer yields (deleted, moved, now excluded by a glob or hidden), except under a
    // path the walk could not read this time (an unreadable folder keeps its files until it can be read again; a
    // root that is gone loses them).
    let unreadable: Vec<&str> = skipped
        .iter()
        .filter(|s| s.reason != "not found")
        .map(|s| s.path.as_str())
        .collect();
    for f in store.files()? {
        let blocked = unreadable
            .iter()
            .any(|u| f.path == *u || f.path.starts_with(&format!("{u}/")));
        if !present.contains(&f.path) && !blocked {
            store.remove_file(&f.path)?;
            report.files_removed += 1;
            report.chunks_removed += f.chunks;
        }
    }
    report.skipped.splice(0..0, skipped);
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}
