//! PDF files, through pdf-extract (on lopdf): one section per page with its 1-based page number, the title from the
//! document information dictionary. Encrypted files that do not open with the empty password are
//! [`Error::Unreadable`] ("encrypted"). pdf-extract can panic or loop on hostile or odd files, so it never runs on the
//! ingest's own stack: [`PdfIsolation::Thread`] runs it in a thread (big stack, panics caught, abandoned at the
//! timeout: [`isolated`]), [`PdfIsolation::Subprocess`] in a child process running [`worker_main`], killed at the
//! timeout. Only the subprocess survives a stack overflow or an abort inside the parser, and only it gets its CPU
//! back from a parser that loops. Scanned PDFs (images, no text layer) come out empty: there is no OCR here.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{DEFAULT_MAX_BYTES, PdfIsolation, ReadOptions, read_limited, tidy};
use crate::doc::{Location, Section, SourceKind};
use crate::{Document, Error, Result};

/// The environment variable through which the parent tells [`worker_main`] its byte limit.
pub const MAX_BYTES_ENV: &str = "LAR_PDF_MAX_BYTES";
/// Stack of the parser thread: lopdf and pdf-extract recurse on nested objects.
const THREAD_STACK: usize = 64 << 20;
/// At most this much of the worker's stderr is kept (for the error message).
const MAX_STDERR: u64 = 64 << 10;

/// The text of a PDF: its title and one string per page (page `i + 1` at index `i`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PdfText {
    pub title: Option<String>,
    pub pages: Vec<String>,
}

/// Parses PDF bytes (read by the caller) under `opts.pdf`'s isolation.
pub fn parse(name: &str, bytes: Vec<u8>, opts: &ReadOptions) -> Result<Vec<Document>> {
    let text = match &opts.pdf {
        PdfIsolation::Thread { timeout } => match isolated(*timeout, move || extract(&bytes)) {
            Ok(Ok(text)) => text,
            Ok(Err(reason)) => return Err(Error::unreadable(name, reason)),
            Err(IsolationError::Failed(msg)) => {
                return Err(Error::unreadable(name, format!("PDF parser failed: {msg}")));
            }
            Err(IsolationError::TimedOut(t)) => return Err(timed_out(name, t)),
        },
        PdfIsolation::Subprocess { .. } => return parse_file(name, Path::new(name), opts),
    };
    Ok(vec![document(name, text)])
}

/// Parses the PDF at `path` in the worker process of `opts.pdf` (or, for [`PdfIsolation::Thread`], reads it and
/// parses it in a thread).
pub fn parse_file(name: &str, path: &Path, opts: &ReadOptions) -> Result<Vec<Document>> {
    match &opts.pdf {
        PdfIsolation::Subprocess {
            program,
            args,
            timeout,
        } => {
            let text = run_worker(name, path, program, args, *timeout, opts.max_bytes)?;
            Ok(vec![document(name, text)])
        }
        PdfIsolation::Thread { .. } => parse(name, read_limited(path, name, opts.max_bytes)?, opts),
    }
}

fn document(name: &str, text: PdfText) -> Document {
    let mut doc = Document::new(name, SourceKind::Pdf);
    doc.title = text
        .title
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_string());
    for (i, page) in text.pages.iter().enumerate() {
        let page_text = tidy(page);
        if !page_text.is_empty() {
            doc.sections.push(Section {
                text: page_text,
                loc: Location {
                    page: u32::try_from(i + 1).ok(),
                    ..Location::default()
                },
            });
        }
    }
    doc
}

fn timed_out(name: &str, t: Duration) -> Error {
    Error::unreadable(
        name,
        format!("PDF parser timed out after {}s", t.as_secs_f64()),
    )
}

fn has_encrypt_entry(bytes: &[u8]) -> bool {
    bytes.windows(8).any(|w| w == b"/Encrypt")
}

/// Extracts title and page texts in this thread (no isolation). The error is the reason the file is unreadable.
pub fn extract(bytes: &[u8]) -> std::result::Result<PdfText, String> {
    const ENCRYPTED: &str = "encrypted (password-protected PDF)";
    let mut doc = pdf_extract::Document::load_mem(bytes).map_err(|e| {
        if has_encrypt_entry(bytes) {
            ENCRYPTED.to_string()
        } else {
            format!("not a readable PDF: {e}")
        }
    })?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(ENCRYPTED.to_string());
    }
    let title = info_title(&doc);
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    let mut pages = Vec::with_capacity(numbers.len());
    let mut first_error = None;
    for n in numbers {
        let mut s = String::new();
        let result = {
            let mut out = pdf_extract::PlainTextOutput::new(&mut s);
            pdf_extract::output_doc_page(&doc, &mut out, n)
        };
        if let Err(e) = result {
            first_error.get_or_insert_with(|| e.to_string());
            s.clear();
        }
        pages.push(s);
    }
    if let Some(e) = first_error
        && pages.iter().all(|p| p.trim().is_empty())
    {
        return Err(format!("no page could be read: {e}"));
    }
    Ok(PdfText { title, pages })
}

/// The `/Title` of the document information dictionary (UTF-16BE with BOM, or PDFDocEncoding read as Latin-1).
fn info_title(doc: &pdf_extract::Document) -> Option<String> {
    use pdf_extract::Object;
    let info = match doc.trailer.get(b"Info").ok()? {
        Object::Reference(id) => doc.get_object(*id).ok()?,
        other => other,
    };
    let Object::Dictionary(info) = info else {
        return None;
    };
    let Object::String(raw, _) = info.get(b"Title").ok()? else {
        return None;
    };
    let title = if let Some(utf16) = raw.strip_prefix(&[0xFE, 0xFF]) {
        let units = utf16
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or('\u{fffd}'))
            .collect()
    } else {
        raw.iter().map(|&b| char::from(b)).collect::<String>()
    };
    let title = title.trim().to_string();
    (!title.is_empty()).then_some(title)
}

/// Why an [`isolated`] call gave no result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IsolationError {
    /// The closure panicked (with this message), or its thread could not be started.
    Failed(String),
    /// No result within this time; the thread was abandoned and still runs.
    TimedOut(Duration),
}

impl std::fmt::Display for IsolationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IsolationError::Failed(m) => write!(f, "failed: {m}"),
            IsolationError::TimedOut(t) => write!(f, "timed out after {}s", t.as_secs_f64()),
        }
    }
}

/// Runs `f` in its own thread (with a 64 MiB stack), catching a panic and waiting at most `timeout`. On timeout the
/// thread is left to finish on its own: Rust cannot stop it, so a parser that loops forever keeps a core busy.
pub fn isolated<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, IsolationError> {
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("lar-isolated".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(panic_message);
            let _ = tx.send(result); // the receiver is gone after a timeout: nothing to do
        });
    if let Err(e) = spawned {
        return Err(IsolationError::Failed(format!(
            "cannot start a thread: {e}"
        )));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(IsolationError::Failed(msg)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(IsolationError::TimedOut(timeout)),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(IsolationError::Failed(
            "thread ended without a result".into(),
        )),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Runs `program args... path`, reads its JSON answer, kills it at `timeout`.
fn run_worker(
    name: &str,
    path: &Path,
    program: &Path,
    args: &[String],
    timeout: Duration,
    max_bytes: u64,
) -> Result<PdfText> {
    let mut child = Command::new(program)
        .args(args)
        .arg(path)
        .env(MAX_BYTES_ENV, max_bytes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::unreadable(
                name,
                format!("cannot start the PDF worker {}: {e}", program.display()),
            )
        })?;
    // Text can be several times the size of the compressed PDF; past this the answer is refused.
    let max_out = max_bytes.saturating_mul(8).max(16 << 20);
    let out_rx = drain(child.stdout.take(), max_out);
    let err_rx = drain(child.stderr.take(), MAX_STDERR);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(timed_out(name, timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::unreadable(name, format!("PDF worker: {e}")));
            }
        }
    };
    // The pipes close when the worker exits (unless it left children holding them: then give up waiting).
    let grace = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let stdout = out_rx.recv_timeout(grace).unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_millis(100))
        .unwrap_or_default();
    if stdout.len() as u64 > max_out {
        return Err(Error::unreadable(name, "PDF worker printed too much"));
    }
    match parse_answer(&stdout) {
        Some(Ok(text)) => Ok(text),
        Some(Err(reason)) => Err(Error::unreadable(name, reason)),
        None => {
            let stderr = String::from_utf8_lossy(&stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            let how = if status.success() {
                "gave no answer".to_string()
            } else {
                format!("crashed ({status})")
            };
            Err(Error::unreadable(
                name,
                format!("PDF parser {how}: {}", last.trim()),
            ))
        }
    }
}

/// Reads a pipe to its end on a thread, keeping at most `max + 1` bytes (the rest is read and dropped, so the writer
/// never blocks).
fn drain(pipe: Option<impl Read + Send + 'static>, max: u64) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut limited = pipe.take(max.saturating_add(1));
            let _ = limited.read_to_end(&mut buf);
            let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
            let _ = tx.send(buf);
        });
    }
    rx
}

/// The worker's answer: the whole of stdout as JSON, or else its last non-empty line (a library may have printed
/// before it).
fn parse_answer(stdout: &[u8]) -> Option<std::result::Result<PdfText, String>> {
    let text = String::from_utf8_lossy(stdout);
    let value: serde_json::Value = serde_json::from_str(&text).ok().or_else(|| {
        let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
        serde_json::from_str(last).ok()
    })?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        return Some(Err(err.to_string()));
    }
    let pages = value
        .get("pages")?
        .as_array()?
        .iter()
        .map(|p| p.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()?;
    let title = value
        .get("title")
        .and_then(|t| t.as_str())
        .map(str::to_string);
    Some(Ok(PdfText { title, pages }))
}

/// The PDF worker: extracts the PDF at `path` in this process and prints `{"pages": [...], "title": ...}` or
/// `{"error": "..."}` as one line on stdout; returns the exit code (0 with pages, 1 with an error). The byte limit
/// comes from [`MAX_BYTES_ENV`] (default 64 MiB). The CLI exposes it as a hidden subcommand for
/// [`PdfIsolation::Subprocess`].
pub fn worker_main(path: &Path) -> i32 {
    let (answer, code) = worker_answer(path);
    println!("{answer}");
    code
}

fn worker_answer(path: &Path) -> (serde_json::Value, i32) {
    let max = std::env::var(MAX_BYTES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_BYTES);
    let name = path.display().to_string();
    let result = read_limited(path, &name, max)
        .map_err(|e| match e {
            Error::Unreadable { reason, .. } => reason,
            other => other.to_string(),
        })
        .and_then(|bytes| extract(&bytes));
    match result {
        Ok(text) => (
            serde_json::json!({ "pages": text.pages, "title": text.title }),
            0,
        ),
        Err(reason) => (serde_json::json!({ "error": reason }), 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_testdata::fixtures;

    fn thread_opts(ms: u64) -> ReadOptions {
        ReadOptions {
            pdf: PdfIsolation::Thread {
                timeout: Duration::from_millis(ms),
            },
            ..ReadOptions::default()
        }
    }

    #[test]
    fn pages_round_trip_with_numbers_and_title() {
        let long = "This sentence is long enough to wrap onto a second line of the page because it goes on and on.";
        let bytes = fixtures::pdf_with_title(
            "Annual (2024) report",
            &["First page text", "", long, "Back\\slash"],
        );
        let docs = parse("r.pdf", bytes, &ReadOptions::default()).unwrap();
        let d = &docs[0];
        assert_eq!(d.kind, SourceKind::Pdf);
        assert_eq!(d.title.as_deref(), Some("Annual (2024) report"));
        let pages: Vec<Option<u32>> = d.sections.iter().map(|s| s.loc.page).collect();
        assert_eq!(pages, vec![Some(1), Some(3), Some(4)]); // the empty page 2 has no section
        assert_eq!(d.sections[0].text, "First page text");
        assert!(
            d.sections[1].text.contains("wrap onto a second"),
            "{}",
            d.sections[1].text
        );
        assert!(
            d.sections[1].text.contains("on and on."),
            "{}",
            d.sections[1].text
        );
        assert_eq!(d.sections[2].text, "Back\\slash");
    }

    #[test]
    fn encrypted_pdf_is_unreadable() {
        let err = parse("e.pdf", fixtures::encrypted_pdf(), &ReadOptions::default()).unwrap_err();
        let Error::Unreadable { reason, .. } = &err else {
            panic!("{err}")
        };
        assert!(reason.contains("encrypted"), "{reason}");
    }

    #[test]
    fn garbage_is_unreadable() {
        let err = parse(
            "g.pdf",
            b"%PDF-1.4 nothing else".to_vec(),
            &ReadOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unreadable { .. }), "{err}");
    }

    #[test]
    fn isolation_catches_panics() {
        let r: std::result::Result<(), _> = isolated(Duration::from_secs(5), || panic!("bad xref"));
        assert_eq!(r, Err(IsolationError::Failed("bad xref".into())));
        let r: std::result::Result<(), _> =
            isolated(Duration::from_secs(5), || panic!("page {}", 7));
        assert_eq!(r, Err(IsolationError::Failed("page 7".into())));
        assert_eq!(isolated(Duration::from_secs(5), || 42), Ok(42));
    }

    #[test]
    fn isolation_abandons_a_slow_parser() {
        let start = Instant::now();
        let r = isolated(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(3))
        });
        assert_eq!(r, Err(IsolationError::TimedOut(Duration::from_millis(50))));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(
            timed_out("x.pdf", Duration::from_secs(30)).to_string(),
            "x.pdf: PDF parser timed out after 30s"
        );
    }

    #[test]
    fn thread_isolation_reads_through_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.PDF");
        std::fs::write(&path, fixtures::pdf(&["hello pdf"])).unwrap();
        let docs = super::super::read(&path, &thread_opts(30_000)).unwrap();
        assert_eq!(docs[0].sections[0].text, "hello pdf");
    }

    fn sh(script: &str, timeout: Duration) -> ReadOptions {
        ReadOptions {
            pdf: PdfIsolation::Subprocess {
                program: "sh".into(),
                args: vec!["-c".into(), script.into(), "sh".into()],
                timeout,
            },
            ..ReadOptions::default()
        }
    }

    #[cfg(unix)]
    #[test]
    fn subprocess_answers_errors_crashes_and_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pdf");
        std::fs::write(&path, fixtures::pdf(&["x"])).unwrap();
        let secs = Duration::from_secs(10);
        // The path comes last; noise before the JSON line is tolerated.
        let ok = sh(
            r#"test -f "$1" && echo noise && echo '{"pages": ["one", "", "three"], "title": "T"}'"#,
            secs,
        );
        let d = &super::super::read(&path, &ok).unwrap()[0];
        assert_eq!(d.title.as_deref(), Some("T"));
        assert_eq!(
            d.sections.iter().map(|s| s.loc.page).collect::<Vec<_>>(),
            vec![Some(1), Some(3)]
        );

        let err = super::super::read(&path, &sh(r#"echo '{"error": "encrypted"}'; exit 1"#, secs))
            .unwrap_err();
        assert_eq!(err.to_string(), format!("{}: encrypted", path.display()));

        let err = super::super::read(
            &path,
            &sh("echo 'thread main panicked' >&2; exit 101", secs),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("crashed") && err.to_string().contains("panicked"),
            "{err}"
        );

        let start = Instant::now();
        let err =
            super::super::read(&path, &sh("sleep 5", Duration::from_millis(200))).unwrap_err();
        assert!(err.to_string().contains("timed out after 0.2s"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn worker_answers_in_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pdf");
        std::fs::write(&path, fixtures::pdf(&["one", "two"])).unwrap();
        let (answer, code) = worker_answer(&path);
        assert_eq!(code, 0);
        assert_eq!(answer["pages"][1].as_str().unwrap().trim(), "two");
        let parsed = parse_answer(answer.to_string().as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(parsed.pages.len(), 2);

        std::fs::write(&path, fixtures::encrypted_pdf()).unwrap();
        let (answer, code) = worker_answer(&path);
        assert_eq!(code, 1);
        assert!(answer["error"].as_str().unwrap().contains("encrypted"));
    }
}
