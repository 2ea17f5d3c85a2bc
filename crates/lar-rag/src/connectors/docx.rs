//! Word documents (.docx: a zip of XML parts). `word/document.xml` gives the body: paragraphs styled "Title" or
//! "Heading1".."Heading9" (or carrying an outline level) open sections located by their heading path, as in
//! Markdown; tables come out one row per line with cells joined by " | "; text in text boxes is read once (the
//! fallback copy is skipped). `docProps/core.xml` gives the title (`dc:title`, else the first Title-styled paragraph),
//! and `author`, `created`, `modified` in the metadata. Headers, footers, footnotes, comments and tracked deletions
//! are not read. The zip is never trusted: the number of entries, the declared and the actual unpacked size of each
//! part are capped (a zip bomb is [`Error::Unreadable`] after reading at most the cap), and an OLE compound file
//! (an encrypted Office document, or a legacy .doc) is refused with that reason.

use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{Outline, collapse_ws, human_size};
use crate::doc::SourceKind;
use crate::{Document, Error, Result};

/// Largest unpacked `word/document.xml` we read.
pub const MAX_XML_BYTES: u64 = 64 << 20;
/// Largest unpacked `docProps/core.xml`.
const MAX_CORE_BYTES: u64 = 1 << 20;
/// Most entries a zip may have.
const MAX_ENTRIES: usize = 10_000;
/// The signature of an OLE compound file (how Office stores encrypted documents, and the old .doc format).
const OLE_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// Parses a .docx file into one document.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    parse_with_limit(name, bytes, MAX_XML_BYTES)
}

fn parse_with_limit(name: &str, bytes: &[u8], max_xml: u64) -> Result<Vec<Document>> {
    let bad = |reason: String| Error::unreadable(name, reason);
    if bytes.starts_with(OLE_MAGIC) {
        return Err(bad(
            "encrypted (password-protected Office file) or a legacy .doc: an OLE compound file, not a DOCX zip".into(),
        ));
    }
    if !bytes.starts_with(b"PK") {
        return Err(bad("not a DOCX (not a zip archive)".into()));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a DOCX (corrupt zip: {e})")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "not a DOCX ({} zip entries, over the {MAX_ENTRIES} limit)",
            zip.len()
        )));
    }
    let document = read_part(&mut zip, "word/document.xml", max_xml)
        .map_err(bad)?
        .ok_or_else(|| bad("not a DOCX (no word/document.xml)".into()))?;
    let core = read_part(&mut zip, "docProps/core.xml", MAX_CORE_BYTES)
        .ok()
        .flatten();

    let body =
        Body::parse(&document).map_err(|e| bad(format!("corrupt word/document.xml: {e}")))?;
    let mut doc = Document::new(name, SourceKind::Docx);
    if let Some(core) = core {
        for (key, value) in core_properties(&core) {
            if key == "title" {
                doc.title = Some(value);
            } else {
                doc.meta.insert(key, value);
            }
        }
    }
    if doc.title.is_none() {
        doc.title = body.title;
    }
    doc.sections = body.out.finish();
    Ok(vec![doc])
}

/// The text of one zip entry, at most `max` bytes unpacked; `Ok(None)` when there is no such entry.
fn read_part(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    part: &str,
    max: u64,
) -> std::result::Result<Option<String>, String> {
    let mut file = match zip.by_name(part) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("cannot open {part}: {e}")),
    };
    if file.encrypted() {
        return Err(format!("encrypted ({part} is password-protected)"));
    }
    let too_big = |n: u64| {
        format!(
            "{part} unpacks to {}, over the {} limit (zip bomb?)",
            human_size(n),
            human_size(max)
        )
    };
    if file.size() > max {
        return Err(too_big(file.size()));
    }
    let mut buf = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
    // The declared size may lie: never read past the limit whatever it says.
    (&mut file)
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| format!("corrupt {part}: {e}"))?;
    if buf.len() as u64 > max {
        return Err(too_big(buf.len() as u64));
    }
    let buf = buf
        .strip_prefix(b"\xEF\xBB\xBF")
        .map(<[u8]>::to_vec)
        .unwrap_or(buf);
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| format!("{part} is not UTF-8"))
}

/// `dc:title`, `dc:creator` (as `author`), `dcterms:created`, `dcterms:modified` of `docProps/core.xml`.
fn core_properties(xml: &str) -> Vec<(String, String)> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<&'static str> = None;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = match e.local_name().as_ref() {
                    "title" => Some("title"),
                    "creator" => Some("author"),
                    "created" => Some("created"),
                    "modified" => Some("modified"),
                    _ => None,
                };
                text.clear();
            }
            Ok(Event::Text(t)) if current.is_some() => text.push_str(&t.xml10_content()),
            Ok(Event::GeneralRef(r)) if current.is_some() => push_ref(&mut text, &r),
            Ok(Event::End(_)) => {
                if let Some(key) = current.take() {
                    let value = collapse_ws(&text);
                    if !value.is_empty() {
                        out.push((key.to_string(), value));
                    }
                }
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

/// Appends the character an entity or character reference stands for (unknown ones are kept as written).
fn push_ref(out: &mut String, r: &quick_xml::events::BytesRef<'_>) {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
    } else if let Some(s) = quick_xml::escape::resolve_xml_entity(r) {
        out.push_str(s);
    } else {
        out.push('&');
        out.push_str(r);
        out.push(';');
    }
}

/// The value of the `w:val` (any prefix) attribute.
fn val_attr(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == "val")
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// The heading level of a paragraph style id or name: "Title" is 0, "Heading2" / "heading 2" is 2.
fn style_level(style: &str) -> Option<u8> {
    let s: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    if s == "title" {
        return Some(0);
    }
    let n: u8 = s.strip_prefix("heading")?.parse().ok()?;
    (1..=9).contains(&n).then_some(n)
}

#[derive(Default)]
struct Body {
    out: Outline,
    title: Option<String>,
    /// The paragraph being read and its heading level, if any.
    para: String,
    level: Option<u8>,
    /// Paragraphs interrupted by one nested in them (a text box inside a run).
    outer: Vec<(String, Option<u8>)>,
    para_depth: usize,
    in_text: bool,
    /// Inside paragraph properties (where `w:tab` is a tab stop, not a tab).
    in_ppr: bool,
    /// Open table rows (one per nesting level) and open cells.
    rows: Vec<Vec<String>>,
    cells: Vec<String>,
    /// Depth inside `mc:Fallback` (a copy of content already read from `mc:Choice`).
    fallback: usize,
}

impl Body {
    fn parse(xml: &str) -> std::result::Result<Body, quick_xml::Error> {
        let mut reader = Reader::from_str(xml);
        let mut b = Body::default();
        loop {
            let event = reader.read_event()?;
            if b.fallback > 0 {
                match event {
                    Event::Start(e) if e.local_name().as_ref() == "Fallback" => b.fallback += 1,
                    Event::End(e) if e.local_name().as_ref() == "Fallback" => b.fallback -= 1,
                    Event::Eof => break,
                    _ => {}
                }
                continue;
            }
            match event {
                Event::Start(e) => b.start(&e, false),
                Event::Empty(e) => b.start(&e, true),
                Event::End(e) => b.end(e.local_name().as_ref()),
                Event::Text(t) if b.in_text => b.para.push_str(&t.xml10_content()),
                Event::CData(t) if b.in_text => b.para.push_str(&t.xml10_content()),
                Event::GeneralRef(r) if b.in_text => push_ref(&mut b.para, &r),
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(b)
    }

    fn start(&mut self, e: &BytesStart<'_>, empty: bool) {
        match e.local_name().as_ref() {
            "p" if !empty => {
                if self.para_depth > 0 {
                    self.outer
                        .push((std::mem::take(&mut self.para), self.level.take()));
                }
                self.para_depth += 1;
                self.para.clear();
                self.level = None;
            }
            "pPr" if !empty => self.in_ppr = true,
            "pStyle" => {
                if let Some(level) = val_attr(e).as_deref().and_then(style_level) {
                    self.level = Some(level);
                }
            }
            "outlineLvl" => {
                if let Some(n) = val_attr(e)
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|n| *n < 9)
                {
                    self.level.get_or_insert(n + 1);
                }
            }
            "t" if !empty => self.in_text = true,
            "tab" if !self.in_ppr => self.para.push('\t'),
            "br" | "cr" => self.para.push('\n'),
            "tr" if !empty => self.rows.push(Vec::new()),
            "tc" if !empty => self.cells.push(String::new()),
            "Fallback" if !empty => self.fallback = 1,
            _ => {}
        }
    }

    fn end(&mut self, name: &str) {
        match name {
            "t" => self.in_text = false,
            "pPr" => self.in_ppr = false,
            "p" => {
                self.end_paragraph();
                self.para_depth = self.para_depth.saturating_sub(1);
                if let Some((para, level)) = self.outer.pop() {
                    self.para = para;
                    self.level = level;
                }
            }
            "tc" => {
                if let Some(cell) = self.cells.pop()
                    && let Some(row) = self.rows.last_mut()
                {
                    row.push(collapse_ws(&cell));
                }
            }
            "tr" => {
                if let Some(row) = self.rows.pop()
                    && row.iter().any(|c| !c.is_empty())
                {
                    let line = row.join(" | ");
                    match self.cells.last_mut() {
                        Some(cell) => {
                            cell.push(' ');
                            cell.push_str(&line);
                        }
                        None => self.out.line(&line),
                    }
                }
            }
            "tbl" if self.cells.is_empty() => self.out.end_block(),
            _ => {}
        }
    }

    fn end_paragraph(&mut self) {
        let text = std::mem::take(&mut self.para);
        if let Some(cell) = self.cells.last_mut() {
            cell.push(' ');
            cell.push_str(&text);
            return;
        }
        match self.level.take() {
            Some(level) if !text.trim().is_empty() => {
                if level == 0 && self.title.is_none() {
                    self.title = Some(collapse_ws(&text));
                }
                self.out.heading(level, &text);
            }
            _ => {
                for line in text.split('\n') {
                    self.out.inline(line);
                    self.out.end_line();
                }
                self.out.end_block();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_testdata::fixtures::{self, Block};

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn headings_tables_and_title() {
        let bytes = fixtures::docx(
            "Travel policy",
            &[
                Block::Para(s("Read this first & keep it.")),
                Block::Heading(1, s("Booking")),
                Block::Para(s("Book early.")),
                Block::Heading(2, s("Rates")),
                Block::Table(vec![
                    vec![s("City"), s("Per night")],
                    vec![s("Paris"), s("180 <EUR>")],
                ]),
                Block::Heading(1, s("Expenses")),
                Block::Para(s("Keep receipts.")),
            ],
        );
        let docs = parse("p.docx", &bytes).unwrap();
        let d = &docs[0];
        assert_eq!(d.kind, SourceKind::Docx);
        assert_eq!(d.title.as_deref(), Some("Travel policy"));
        assert_eq!(
            d.meta.get("author").map(String::as_str),
            Some("Lar Fixtures")
        );
        assert_eq!(
            d.meta.get("created").map(String::as_str),
            Some("2024-03-01T09:00:00Z")
        );
        let got: Vec<(Option<&str>, &str)> = d
            .sections
            .iter()
            .map(|s| (s.loc.heading.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "Read this first & keep it."),
                (Some("Booking"), "Booking\n\nBook early."),
                (
                    Some("Booking > Rates"),
                    "Rates\n\nCity | Per night\nParis | 180 <EUR>"
                ),
                (Some("Expenses"), "Expenses\n\nKeep receipts."),
            ]
        );
    }

    #[test]
    fn title_style_heads_the_paths_when_core_has_no_title() {
        let bytes = fixtures::docx(
            "",
            &[
                Block::Heading(0, s("Plan")),
                Block::Heading(1, s("Goals")),
                Block::Para(s("Win.")),
            ],
        );
        let d = &parse("p.docx", &bytes).unwrap()[0];
        assert_eq!(d.title.as_deref(), Some("Plan"));
        assert_eq!(
            d.sections.last().unwrap().loc.heading.as_deref(),
            Some("Plan > Goals")
        );
    }

    #[test]
    fn zip_bomb_is_refused_by_its_declared_size() {
        let bomb = fixtures::zip_bomb_docx();
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let start = std::time::Instant::now();
        let err = parse("bomb.docx", &bomb).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
        let Error::Unreadable { reason, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            reason,
            "word/document.xml unpacks to 1.0 GiB, over the 64 MiB limit (zip bomb?)"
        );
    }

    #[test]
    fn lying_header_cannot_make_us_read_past_the_limit() {
        // document.xml claims 100 bytes and holds 3 MiB: whatever the limit, reading stops at the lie or the limit.
        let bytes = fixtures::lying_docx(3 << 20);
        for limit in [1 << 20, 8 << 20] {
            let err = parse_with_limit("lie.docx", &bytes, limit).unwrap_err();
            let Error::Unreadable { reason, .. } = &err else {
                panic!("{err}")
            };
            assert!(
                reason.contains("declared") || reason.contains("limit"),
                "{reason}"
            );
        }
    }

    #[test]
    fn not_a_docx() {
        let reason = |bytes: &[u8]| match parse("x.docx", bytes).unwrap_err() {
            Error::Unreadable { reason, .. } => reason,
            e => panic!("{e}"),
        };
        assert!(reason(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1rest").starts_with("encrypted"));
        assert_eq!(reason(b"hello"), "not a DOCX (not a zip archive)");
        assert!(reason(b"PK\x03\x04 truncated").starts_with("not a DOCX (corrupt zip"));
        let no_doc = fixtures::zip(&[("other.xml", b"<a/>")]);
        assert_eq!(reason(&no_doc), "not a DOCX (no word/document.xml)");
    }

    #[test]
    fn text_boxes_and_tab_stops() {
        let xml = r#"<w:document xmlns:w="w" xmlns:mc="mc"><w:body><w:p><w:pPr><w:tabs><w:tab w:val="left"/></w:tabs></w:pPr>
            <w:r><w:t>Before</w:t></w:r><w:r><mc:AlternateContent><mc:Choice><w:txbxContent><w:p><w:r><w:t>In box</w:t></w:r></w:p>
            </w:txbxContent></mc:Choice><mc:Fallback><w:txbxContent><w:p><w:r><w:t>In box</w:t></w:r></w:p></w:txbxContent>
            </mc:Fallback></mc:AlternateContent></w:r><w:r><w:tab/><w:t>after</w:t></w:r></w:p></w:body></w:document>"#;
        let bytes = fixtures::zip(&[("word/document.xml", xml.as_bytes())]);
        let d = &parse("t.docx", &bytes).unwrap()[0];
        assert_eq!(d.sections[0].text, "In box\n\nBefore after");
    }

    #[test]
    fn style_levels() {
        assert_eq!(style_level("Heading3"), Some(3));
        assert_eq!(style_level("heading 2"), Some(2));
        assert_eq!(style_level("Title"), Some(0));
        assert_eq!(style_level("Heading10"), None);
        assert_eq!(style_level("Normal"), None);
    }
}
