//! Connectors: one file in, [`crate::Document`]s out. [`detect`] names a file's [`Format`] from its extension (or
//! from its place in a Maildir); [`read`] checks the file's size against [`ReadOptions::max_bytes`] before reading a
//! byte, reads it through a bounded reader and hands the bytes to the format's parser, one module per format. A file
//! that cannot be understood (binary, corrupt, encrypted, too large, a parser that panics or hangs) is reported as
//! [`Error::Unreadable`] with a reason, so the ingest can skip it and say why; an extension we do not read is
//! [`Error::Unsupported`]. Nothing here walks directories, chunks or embeds: that is the ingest's and the chunker's
//! work.

pub mod calendar;
pub mod docx;
pub mod html;
pub mod mail;
pub mod markdown;
pub mod pdf;
pub mod text;
pub mod transcript;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::doc::{Location, Section, SourceKind};
use crate::{Document, Error, Result};

/// The file formats the connectors read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Eml,
    Mbox,
    Ics,
    Vtt,
    Srt,
}

impl Format {
    /// The format a file extension (without the dot, any case) names.
    pub fn from_extension(ext: &str) -> Option<Format> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "txt" | "text" => Format::Text,
            "md" | "markdown" => Format::Markdown,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            "eml" => Format::Eml,
            "mbox" => Format::Mbox,
            "ics" => Format::Ics,
            "vtt" => Format::Vtt,
            "srt" => Format::Srt,
            _ => return None,
        })
    }

    /// The kind of document this format makes (the search filter).
    pub fn kind(self) -> SourceKind {
        match self {
            Format::Text => SourceKind::Text,
            Format::Markdown => SourceKind::Markdown,
            Format::Html => SourceKind::Html,
            Format::Pdf => SourceKind::Pdf,
            Format::Docx => SourceKind::Docx,
            Format::Eml | Format::Mbox => SourceKind::Mail,
            Format::Ics => SourceKind::Calendar,
            Format::Vtt | Format::Srt => SourceKind::Transcript,
        }
    }
}

/// The format of the file at `path`: by extension (case-insensitive), or [`Format::Eml`] for a message file of a
/// Maildir (a file directly inside `cur/` or `new/` whose parent also has `tmp/`, `cur/` and `new/`). Only the
/// Maildir check touches the file system.
pub fn detect(path: &Path) -> Option<Format> {
    if is_maildir_message(path) {
        return Some(Format::Eml);
    }
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
}

fn is_maildir_message(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    if name.starts_with('.') {
        return false;
    }
    let Some(dir) = path.parent() else {
        return false;
    };
    if !matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("cur" | "new")
    ) {
        return false;
    }
    let Some(root) = dir.parent() else {
        return false;
    };
    ["cur", "new", "tmp"].iter().all(|d| root.join(d).is_dir())
}

/// The default [`ReadOptions::max_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// How [`read`] treats a file.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Files larger than this are [`Error::Unreadable`] without being read.
    pub max_bytes: u64,
    /// How the PDF parser (which may panic or loop on hostile files) is kept from taking the ingest down.
    pub pdf: PdfIsolation,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_bytes: DEFAULT_MAX_BYTES,
            pdf: PdfIsolation::default(),
        }
    }
}

/// Where the PDF parser runs.
#[derive(Clone, Debug)]
pub enum PdfIsolation {
    /// In a spawned thread: a panic is caught, and past `timeout` the thread is abandoned (it keeps its CPU and
    /// memory until it ends on its own) and the file reported as timed out.
    Thread { timeout: Duration },
    /// In a child process `program args... PATH` that prints `{"pages": [...]}` or `{"error": "..."}` on stdout (see
    /// [`pdf::worker_main`]); killed at `timeout`. Costs a process start per PDF; nothing it does can reach us.
    Subprocess {
        program: PathBuf,
        args: Vec<String>,
        timeout: Duration,
    },
}

impl Default for PdfIsolation {
    fn default() -> Self {
        PdfIsolation::Thread {
            timeout: Duration::from_secs(30),
        }
    }
}

/// Reads the file at `path` into documents (several for an mbox or a calendar, one otherwise).
///
/// Errors: [`Error::Unsupported`] for a format we do not read; [`Error::Unreadable`] for a file that is missing,
/// larger than `opts.max_bytes`, named in non-UTF-8, or that its parser cannot understand.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Vec<Document>> {
    let format = detect(path).ok_or_else(|| Error::Unsupported(path.display().to_string()))?;
    let name = path
        .to_str()
        .ok_or_else(|| Error::unreadable(path.display(), "file name is not valid UTF-8"))?;
    if let (Format::Pdf, PdfIsolation::Subprocess { .. }) = (format, &opts.pdf) {
        // The worker reads the file itself (with the same limit): only check it here.
        check_size(path, name, opts.max_bytes)?;
        return pdf::parse_file(name, path, opts);
    }
    let bytes = read_limited(path, name, opts.max_bytes)?;
    parse(name, format, bytes, opts)
}

/// Parses `bytes` as `format`; `name` becomes [`Document::path`] and names the file in errors.
pub fn parse(
    name: &str,
    format: Format,
    bytes: Vec<u8>,
    opts: &ReadOptions,
) -> Result<Vec<Document>> {
    match format {
        Format::Text => text::parse(name, &bytes),
        Format::Markdown => markdown::parse(name, &bytes),
        Format::Html => html::parse(name, &bytes),
        Format::Pdf => pdf::parse(name, bytes, opts),
        Format::Docx => docx::parse(name, &bytes),
        Format::Eml => mail::parse_eml(name, &bytes),
        Format::Mbox => mail::parse_mbox(name, &bytes),
        Format::Ics => calendar::parse(name, &bytes),
        Format::Vtt => transcript::parse_vtt(name, &bytes),
        Format::Srt => transcript::parse_srt(name, &bytes),
    }
}

/// The file's size, checked against `max` from its metadata (nothing is read).
fn check_size(path: &Path, name: &str, max: u64) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| io_unreadable(name, &e))?;
    if !meta.is_file() {
        return Err(Error::unreadable(name, "not a regular file"));
    }
    if meta.len() > max {
        return Err(too_large(name, meta.len(), max));
    }
    Ok(meta.len())
}

/// Reads at most `max` bytes of the file, after checking its size: a file larger than `max` (or one that grows past
/// it while we read) is [`Error::Unreadable`] and never fully in memory.
pub fn read_limited(path: &Path, name: &str, max: u64) -> Result<Vec<u8>> {
    let len = check_size(path, name, max)?;
    let file = std::fs::File::open(path).map_err(|e| io_unreadable(name, &e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io_unreadable(name, &e))?;
    if bytes.len() as u64 > max {
        return Err(too_large(name, bytes.len() as u64, max));
    }
    Ok(bytes)
}

fn io_unreadable(name: &str, e: &std::io::Error) -> Error {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "file not found (removed while reading?)".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    Error::unreadable(name, reason)
}

fn too_large(name: &str, len: u64, max: u64) -> Error {
    Error::unreadable(
        name,
        format!(
            "{} is larger than the {} limit",
            human_size(len),
            human_size(max)
        ),
    )
}

/// "64 MiB", "2.0 GiB", "812 bytes".
pub(crate) fn human_size(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// Builds sections along a heading outline (Markdown, HTML, DOCX): each heading closes the current section and
/// opens one whose [`Location::heading`] is the path of headings above it ("H1 > H2 > H3") and whose text starts
/// with the heading's own text. Text before the first heading is a section with no heading.
#[derive(Default)]
pub(crate) struct Outline {
    stack: Vec<(u8, String)>,
    sections: Vec<Section>,
    text: String,
    heading: Option<String>,
}

impl Outline {
    /// Starts a section under a heading of `level` (smaller is outer; headings at or below `level` are closed).
    pub(crate) fn heading(&mut self, level: u8, title: &str) {
        let title = collapse_ws(title);
        if title.is_empty() {
            return;
        }
        self.flush();
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        self.stack.push((level, title.clone()));
        let path: Vec<&str> = self.stack.iter().map(|(_, t)| t.as_str()).collect();
        self.heading = Some(path.join(" > "));
        self.text = title;
        self.text.push_str("\n\n");
    }

    /// Appends inline text, collapsing runs of white space into one space.
    pub(crate) fn inline(&mut self, s: &str) {
        push_inline(&mut self.text, s);
    }

    /// Appends text as is (code, preformatted text).
    pub(crate) fn raw(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// Ends the current line (no-op at the start of a line).
    pub(crate) fn end_line(&mut self) {
        trim_trailing_spaces(&mut self.text);
        if !self.text.is_empty() && !self.text.ends_with('\n') {
            self.text.push('\n');
        }
    }

    /// Ends the current block with a blank line.
    pub(crate) fn end_block(&mut self) {
        self.end_line();
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// Appends a whole line (a table row, a list item) and ends it.
    pub(crate) fn line(&mut self, s: &str) {
        self.end_line();
        self.text.push_str(s.trim_end());
        self.end_line();
    }

    fn flush(&mut self) {
        let text = tidy(&std::mem::take(&mut self.text));
        if !text.is_empty() {
            self.sections.push(Section {
                text,
                loc: Location {
                    heading: self.heading.clone(),
                    ..Location::default()
                },
            });
        }
    }

    pub(crate) fn finish(mut self) -> Vec<Section> {
        self.flush();
        self.sections
    }
}

/// Appends `s` to `out` with runs of white space collapsed into one space (none at the start of a line).
pub(crate) fn push_inline(out: &mut String, s: &str) {
    let starts_ws = s.starts_with(char::is_whitespace);
    for (i, word) in s.split_whitespace().enumerate() {
        if (i > 0 || starts_ws) && !out.is_empty() && !out.ends_with([' ', '\n']) {
            out.push(' ');
        }
        out.push_str(word);
    }
    if s.ends_with(char::is_whitespace) && !out.is_empty() && !out.ends_with([' ', '\n']) {
        out.push(' ');
    }
}

fn trim_trailing_spaces(s: &mut String) {
    let trimmed = s.trim_end_matches([' ', '\t']).len();
    s.truncate(trimmed);
}

/// `s` with white space runs collapsed into single spaces and trimmed.
pub(crate) fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Trims trailing spaces of every line, keeps at most one blank line in a row, trims the whole.
pub(crate) fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_extension_in_any_case() {
        assert_eq!(detect(Path::new("a/b.TXT")), Some(Format::Text));
        assert_eq!(detect(Path::new("notes.Markdown")), Some(Format::Markdown));
        assert_eq!(detect(Path::new("x.htm")), Some(Format::Html));
        assert_eq!(detect(Path::new("x.PDF")), Some(Format::Pdf));
        assert_eq!(detect(Path::new("x.docx")), Some(Format::Docx));
        assert_eq!(detect(Path::new("x.eml")), Some(Format::Eml));
        assert_eq!(detect(Path::new("x.mbox")), Some(Format::Mbox));
        assert_eq!(detect(Path::new("x.ics")), Some(Format::Ics));
        assert_eq!(detect(Path::new("x.vtt")), Some(Format::Vtt));
        assert_eq!(detect(Path::new("x.srt")), Some(Format::Srt));
        assert_eq!(detect(Path::new("x.doc")), None);
        assert_eq!(detect(Path::new("Makefile")), None);
    }

    #[test]
    fn detects_maildir_messages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        for d in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let msg = root.join("cur/1700000000.M1P2.host:2,S");
        std::fs::write(&msg, "From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
        assert_eq!(detect(&msg), Some(Format::Eml));
        assert_eq!(
            detect(&root.join("new/1700000001.M3P4.host")),
            Some(Format::Eml)
        );
        assert_eq!(detect(&root.join("cur/.hidden")), None);
        // A directory merely called "cur" is not a Maildir.
        let lone = dir.path().join("lone/cur");
        std::fs::create_dir_all(&lone).unwrap();
        assert_eq!(detect(&lone.join("1700000000.M1P2.host")), None);
        let docs = read(&msg, &ReadOptions::default()).unwrap();
        assert_eq!(docs[0].kind, SourceKind::Mail);
        assert_eq!(docs[0].title.as_deref(), Some("hi"));
    }

    #[test]
    fn unknown_extension_is_unsupported() {
        let err = read(Path::new("/nonexistent/x.xyz"), &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
    }

    #[test]
    fn missing_file_is_unreadable() {
        let err = read(Path::new("/nonexistent/x.txt"), &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn two_gib_file_is_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.txt");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(2 << 30).unwrap(); // sparse: no disk, and reading it would take seconds and 2 GiB
        let start = std::time::Instant::now();
        let err = read(&path, &ReadOptions::default()).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        let Error::Unreadable { reason, path: p } = &err else {
            panic!("{err}")
        };
        assert_eq!(reason, "2.0 GiB is larger than the 64 MiB limit");
        assert_eq!(p, path.to_str().unwrap());
    }

    #[test]
    fn bounded_read_refuses_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "0123456789").unwrap();
        let name = path.to_str().unwrap();
        assert_eq!(read_limited(&path, name, 10).unwrap().len(), 10);
        assert!(matches!(
            read_limited(&path, name, 9),
            Err(Error::Unreadable { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_path_is_unreadable() {
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/caf\xe9.txt"));
        let err = read(path, &ReadOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn document_path_is_the_path_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("note.txt");
        std::fs::write(&path, "Hello\n\nworld").unwrap();
        let docs = read(&path, &ReadOptions::default()).unwrap();
        assert_eq!(docs[0].path, path.to_str().unwrap());
    }

    #[test]
    fn outline_builds_heading_paths() {
        let mut o = Outline::default();
        o.inline("preface  text ");
        o.end_block();
        o.heading(1, "A");
        o.inline("a body");
        o.heading(2, "B");
        o.line("x | y");
        o.heading(3, "C");
        o.heading(2, "D");
        o.heading(1, "E");
        let s = o.finish();
        let got: Vec<(Option<&str>, &str)> = s
            .iter()
            .map(|s| (s.loc.heading.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "preface text"),
                (Some("A"), "A\n\na body"),
                (Some("A > B"), "B\n\nx | y"),
                (Some("A > B > C"), "C"),
                (Some("A > D"), "D"),
                (Some("E"), "E"),
            ]
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(2 << 30), "2.0 GiB");
        assert_eq!(human_size(812), "812 bytes");
    }
}
