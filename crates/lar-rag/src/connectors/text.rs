//! Plain text files. The bytes must be UTF-8 (a byte-order mark is dropped); anything with NUL bytes, invalid UTF-8
//! or a high share of control characters is binary and [`Error::Unreadable`]. The whole text becomes one section (the
//! chunker cuts it along paragraphs later); the title is the first non-empty line when it is short. [`decode`] is
//! shared by the other text-based connectors (Markdown, calendars, transcripts).

use crate::doc::{Location, Section, SourceKind};
use crate::{Document, Error, Result};

/// A first line at least this long is prose, not a title.
const MAX_TITLE_CHARS: usize = 100;

/// Parses a plain text file into one document.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = decode(name, bytes)?;
    let text = text.replace("\r\n", "\n");
    let mut doc = Document::new(name, SourceKind::Text);
    doc.title = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|l| l.chars().count() < MAX_TITLE_CHARS)
        .map(str::to_string);
    let body = text.trim();
    if !body.is_empty() {
        doc.sections.push(Section {
            text: body.to_string(),
            loc: Location::default(),
        });
    }
    Ok(vec![doc])
}

/// The bytes as text: valid UTF-8 without NUL bytes and with few control characters, a leading BOM removed.
pub(crate) fn decode<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let binary = || Error::unreadable(name, "binary content, not text");
    if bytes.contains(&0) {
        return Err(binary());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| binary())?;
    if looks_binary(text) {
        return Err(binary());
    }
    Ok(text)
}

/// More than 5% control characters (other than tab, line feed, carriage return, form feed).
fn looks_binary(text: &str) -> bool {
    let (mut total, mut control) = (0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c') {
            control += 1;
        }
    }
    control * 20 > total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_section_with_short_first_line_as_title() {
        let docs = parse(
            "a.txt",
            "\u{feff}\n  Meeting notes \r\n\r\nFirst point.\r\nSecond point.\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(d.kind, SourceKind::Text);
        assert_eq!(d.title.as_deref(), Some("Meeting notes"));
        assert_eq!(d.sections.len(), 1);
        assert_eq!(
            d.sections[0].text,
            "Meeting notes \n\nFirst point.\nSecond point."
        );
    }

    #[test]
    fn long_first_line_is_no_title() {
        let line = "word ".repeat(30);
        let docs = parse("a.txt", line.as_bytes()).unwrap();
        assert_eq!(docs[0].title, None);
    }

    #[test]
    fn empty_file_has_no_sections() {
        let docs = parse("a.txt", b"  \n").unwrap();
        assert!(docs[0].sections.is_empty());
    }

    #[test]
    fn junk_is_binary() {
        for junk in [
            &b"hello\0world"[..],
            &b"\xff\xfe\x00\x01 not utf-8 \xc3\x28"[..],
            &b"\x01\x02\x03\x04\x05\x06 text \x07\x08\x0e\x0f\x10\x11"[..],
        ] {
            let err = parse("junk.txt", junk).unwrap_err();
            let Error::Unreadable { reason, .. } = &err else {
                panic!("{err}")
            };
            assert_eq!(reason, "binary content, not text");
        }
    }

    #[test]
    fn a_few_escape_codes_are_still_text() {
        let log = "\x1b[32mINFO\x1b[0m server started on port 8080 and is listening for requests\n";
        assert!(parse("log.txt", log.as_bytes()).is_ok());
    }
}
