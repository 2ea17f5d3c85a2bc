//! The data that flows through the knowledge base: a [`Document`] (what a connector makes of one file, or of one
//! message of an mbox, one event of a calendar) made of [`Section`]s that each know where they are ([`Location`]), and
//! the [`Chunk`]s cut from them, which carry everything a citation or a filter needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What kind of source a document came from (a search filter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Mail,
    Calendar,
    Transcript,
}

impl SourceKind {
    pub const ALL: [SourceKind; 8] = [
        SourceKind::Text,
        SourceKind::Markdown,
        SourceKind::Html,
        SourceKind::Pdf,
        SourceKind::Docx,
        SourceKind::Mail,
        SourceKind::Calendar,
        SourceKind::Transcript,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Text => "text",
            SourceKind::Markdown => "markdown",
            SourceKind::Html => "html",
            SourceKind::Pdf => "pdf",
            SourceKind::Docx => "docx",
            SourceKind::Mail => "mail",
            SourceKind::Calendar => "calendar",
            SourceKind::Transcript => "transcript",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Document-level metadata by name: for mail `from`, `to`, `cc`, `date`, `subject`, `message_id`, `thread`
/// (the root message id), `in_reply_to`; for calendar events `summary`, `start`, `end`, `location`, `attendees`,
/// `organizer`, `uid`. Dates are RFC 3339.
pub type Meta = BTreeMap<String, String>;

/// Where a piece of text sits in its document; every field is optional and only the ones that apply are set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// 1-based page (PDF).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Heading path, outermost first, joined by " > " (Markdown, HTML, DOCX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// Who speaks (transcripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// Start and end timestamps of a transcript cue, as written in the file ("00:01:02.500").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A run of text with one location: a Markdown section's body, a PDF page, a transcript cue, a mail body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub text: String,
    pub loc: Location,
}

/// What a connector makes of a file (or of one message of an mbox, one event of a calendar).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The file it came from, as the ingest names it (absolute path).
    pub path: String,
    pub kind: SourceKind,
    /// Title (first heading, `<title>`, DOCX title, mail subject, event summary), if any.
    pub title: Option<String>,
    /// When: the mail's Date, the event's start; Unix seconds (UTC). Used by the date-range filter.
    pub date: Option<i64>,
    /// The mail sender's address (`From`), lower-case; used by the sender filter.
    pub sender: Option<String>,
    pub meta: Meta,
    pub sections: Vec<Section>,
}

impl Document {
    pub fn new(path: impl Into<String>, kind: SourceKind) -> Self {
        Document {
            path: path.into(),
            kind,
            title: None,
            date: None,
            sender: None,
            meta: Meta::new(),
            sections: Vec::new(),
        }
    }
}

/// A piece of a document as it is embedded, indexed and cited.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub path: String,
    pub kind: SourceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Meta::is_empty")]
    pub meta: Meta,
    #[serde(flatten)]
    pub loc: Location,
    /// Position of the chunk within its file (0-based, across the file's documents).
    pub ord: u32,
    pub text: String,
}
