//! Test fixtures: small, valid (or deliberately broken) files of every format the connectors read, written by hand so
//! that no test needs a document from outside the repository. Used by the connector tests here and by the CLI's tests.
//! Not part of the API people program against (hidden from the docs); nothing here is fit to produce real documents:
//! the PDF writer knows one font and ASCII, the DOCX writer only paragraphs, headings and tables.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Characters per PDF text line before wrapping onto the next (`T*`).
const PDF_LINE_CHARS: usize = 80;

/// A PDF 1.4 with one page of Helvetica text per entry of `pages` (ASCII; other characters become '?'; `\n` breaks a
/// line, long lines wrap at word boundaries). pdf-extract reads it back page by page.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    write_pdf(None, pages, false)
}

/// Like [`pdf`], with a `/Title` in the document information dictionary.
pub fn pdf_with_title(title: &str, pages: &[&str]) -> Vec<u8> {
    write_pdf(Some(title), pages, false)
}

/// A one-page PDF whose trailer names an `/Encrypt` dictionary (standard security handler, revision 2) whose keys
/// match no password: readers must refuse it as encrypted.
pub fn encrypted_pdf() -> Vec<u8> {
    write_pdf(None, &["Secret plans"], true)
}

fn pdf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// Lines of at most [`PDF_LINE_CHARS`] characters, broken at spaces where possible.
fn wrap(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > PDF_LINE_CHARS {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

fn write_pdf(title: Option<&str>, pages: &[&str], encrypt: bool) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, 3 font, then per page a page and its content stream, then info, then encrypt.
    let n = pages.len();
    let page_id = |i: usize| 4 + 2 * i;
    let info_id = 4 + 2 * n;
    let encrypt_id = info_id + 1;
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", page_id(i))).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")).into_bytes());
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (i, text) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> \
                 /Contents {} 0 R >>",
                page_id(i) + 1
            )
            .into_bytes(),
        );
        let mut content = String::from("BT\n/F1 11 Tf\n14 TL\n72 720 Td\n");
        for (j, line) in wrap(text).iter().enumerate() {
            if j > 0 {
                content.push_str("T*\n");
            }
            content.push_str(&pdf_string(line));
            content.push_str(" Tj\n");
        }
        content.push_str("ET\n");
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend_from_slice(content.as_bytes());
        stream.extend_from_slice(b"endstream");
        objects.push(stream);
    }
    let info = match title {
        Some(t) => format!("<< /Title {} /Producer (lar fixtures) >>", pdf_string(t)),
        None => "<< /Producer (lar fixtures) >>".to_string(),
    };
    objects.push(info.into_bytes());
    if encrypt {
        let o = "7A".repeat(32);
        let u = "5C".repeat(32);
        objects.push(
            format!("<< /Filter /Standard /V 1 /R 2 /Length 40 /O <{o}> /U <{u}> /P -44 >>")
                .into_bytes(),
        );
    }

    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    let mut trailer = format!(
        "<< /Size {} /Root 1 0 R /Info {info_id} 0 R",
        objects.len() + 1
    );
    if encrypt {
        let id = "0123456789ABCDEF0123456789ABCDEF";
        trailer.push_str(&format!(" /Encrypt {encrypt_id} 0 R /ID [<{id}> <{id}>]"));
    }
    trailer.push_str(" >>");
    out.extend_from_slice(format!("trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n").as_bytes());
    out
}

/// A block of a DOCX body.
#[derive(Clone, Debug)]
pub enum Block {
    /// A heading: level 0 is the "Title" style, 1..=9 "Heading1".."Heading9".
    Heading(u8, String),
    Para(String),
    /// Rows of cells.
    Table(Vec<Vec<String>>),
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

fn docx_paragraph(style: Option<&str>, text: &str) -> String {
    let ppr = style
        .map(|s| format!("<w:pPr><w:pStyle w:val=\"{s}\"/></w:pPr>"))
        .unwrap_or_default();
    format!(
        "<w:p>{ppr}<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
        xml_escape(text)
    )
}

/// The `word/document.xml` of [`docx`].
pub fn docx_document_xml(blocks: &[Block]) -> String {
    let mut body = String::new();
    for b in blocks {
        match b {
            Block::Heading(0, t) => body.push_str(&docx_paragraph(Some("Title"), t)),
            Block::Heading(l, t) => body.push_str(&docx_paragraph(Some(&format!("Heading{l}")), t)),
            Block::Para(t) => body.push_str(&docx_paragraph(None, t)),
            Block::Table(rows) => {
                body.push_str("<w:tbl><w:tblPr/>");
                for row in rows {
                    body.push_str("<w:tr>");
                    for cell in row {
                        body.push_str("<w:tc><w:tcPr/>");
                        body.push_str(&docx_paragraph(None, cell));
                        body.push_str("</w:tc>");
                    }
                    body.push_str("</w:tr>");
                }
                body.push_str("</w:tbl>");
            }
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:document xmlns:w=\"{W_NS}\"><w:body>{body}\
         <w:sectPr/></w:body></w:document>"
    )
}

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/><Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/></Types>"#;

const RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/></Relationships>"#;

fn core_xml(title: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<cp:coreProperties \
         xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><dc:title>{}</dc:title><dc:creator>Lar \
         Fixtures</dc:creator><dcterms:created xsi:type=\"dcterms:W3CDTF\">2024-03-01T09:00:00Z</dcterms:created>\
         </cp:coreProperties>",
        xml_escape(title)
    )
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

/// Writes a zip of (name, contents) entries. Panics on a write error (in memory, there are none).
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, deflated()).expect("zip entry");
        w.write_all(data).expect("zip write");
    }
    w.finish().expect("zip finish").into_inner()
}

/// A DOCX with `title` in its core properties (none when empty) and `blocks` as its body.
pub fn docx(title: &str, blocks: &[Block]) -> Vec<u8> {
    let document = docx_document_xml(blocks);
    let core = core_xml(title);
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", RELS.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ];
    if !title.is_empty() {
        entries.push(("docProps/core.xml", core.as_bytes()));
    }
    zip(&entries)
}

/// A DOCX whose `word/document.xml` inflates to 1 GiB of spaces (about 1 MiB compressed). Written in 1 MiB pieces,
/// so building it never holds more than that.
pub fn zip_bomb_docx() -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("[Content_Types].xml", deflated())
        .expect("zip entry");
    w.write_all(CONTENT_TYPES.as_bytes()).expect("zip write");
    w.start_file("word/document.xml", deflated().compression_level(Some(9)))
        .expect("zip entry");
    w.write_all(
        format!("<?xml version=\"1.0\"?><w:document xmlns:w=\"{W_NS}\"><w:body><w:p><w:r><w:t>")
            .as_bytes(),
    )
    .expect("zip write");
    let spaces = vec![b' '; 1 << 20];
    for _ in 0..1024 {
        w.write_all(&spaces).expect("zip write");
    }
    w.write_all(b"</w:t></w:r></w:p></w:body></w:document>")
        .expect("zip write");
    w.finish().expect("zip finish").into_inner()
}

/// A DOCX whose `word/document.xml` declares 100 bytes (in its local and central headers) but inflates to `actual`
/// bytes: a reader trusting the header would allocate whatever the data holds.
pub fn lying_docx(actual: usize) -> Vec<u8> {
    let mut xml =
        format!("<?xml version=\"1.0\"?><w:document xmlns:w=\"{W_NS}\"><w:body><w:p><w:r><w:t>")
            .into_bytes();
    xml.resize(actual, b' ');
    let mut bytes = zip(&[
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("word/document.xml", &xml),
    ]);
    let name = b"word/document.xml";
    for (sig, size_at, name_at) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let mut i = 0;
        while let Some(p) = bytes[i..].windows(4).position(|w| w == sig) {
            let at = i + p;
            if bytes.get(at + name_at..at + name_at + name.len()) == Some(&name[..]) {
                bytes[at + size_at..at + size_at + 4].copy_from_slice(&100u32.to_le_bytes());
            }
            i = at + 4;
        }
    }
    bytes
}

/// An mbox of four messages: a plain-text one, one of binary junk with no headers (to be skipped), an HTML reply with
/// an attachment, and a reply with an unreadable `Date`.
pub fn mbox_with_broken_message() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(
        b"From alice@example.com Mon Jan  1 10:00:00 2024\n\
From: Alice Example <Alice@Example.com>\n\
To: Bob <bob@example.com>, carol@example.com\n\
Cc: Dan <dan@example.com>\n\
Subject: Quarterly budget\n\
Date: Mon, 1 Jan 2024 10:00:00 +0100\n\
Message-ID: <root@example.com>\n\
Content-Type: text/plain; charset=utf-8\n\
\n\
The budget for Q1 is 42k.\n\
>From the archive: unchanged.\n\
\n",
    );
    m.extend_from_slice(
        b"From mallory Mon Jan  1 11:00:00 2024\n\x00\x01\x02\xff\xfe\x00\n\x00\x00\n\n",
    );
    m.extend_from_slice(
        b"From bob@example.com Mon Jan  1 12:00:00 2024\n\
From: Bob <bob@example.com>\n\
To: Alice Example <alice@example.com>\n\
Subject: Re: Quarterly budget\n\
Date: Mon, 1 Jan 2024 12:30:00 +0100\n\
Message-ID: <reply@example.com>\n\
In-Reply-To: <root@example.com>\n\
References: <root@example.com>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"b1\"\n\
\n\
--b1\n\
Content-Type: text/html; charset=utf-8\n\
\n\
<p>Looks <b>fine</b> to me.</p><script>x()</script>\n\
--b1\n\
Content-Type: application/pdf; name=\"budget.pdf\"\n\
Content-Disposition: attachment; filename=\"budget.pdf\"\n\
Content-Transfer-Encoding: base64\n\
\n\
JVBERi0xLjQK\n\
--b1--\n\
\n",
    );
    m.extend_from_slice(
        b"From carol@example.com Mon Jan  1 13:00:00 2024\n\
From: carol@example.com\n\
Subject: Re: Quarterly budget\n\
Date: yesterday-ish\n\
Message-ID: <c@example.com>\n\
In-Reply-To: <reply@example.com>\n\
References: <root@example.com> <reply@example.com>\n\
\n\
Agreed.\n",
    );
    m
}

/// A calendar of three events: a timed one with attendees, one with the impossible `DTSTART:20241345T990000`, and an
/// all-day one. The first event's description is folded over two lines.
pub fn ics_with_invalid_date() -> String {
    "BEGIN:VCALENDAR\r\n\
VERSION:2.0\r\n\
PRODID:-//lar//fixtures//EN\r\n\
BEGIN:VEVENT\r\n\
UID:ev1@example.com\r\n\
DTSTART:20240315T090000Z\r\n\
DTEND:20240315T100000Z\r\n\
SUMMARY:Budget review\\, Q1\r\n\
LOCATION:Room 4\r\n\
ORGANIZER;CN=Alice Example:mailto:alice@example.com\r\n\
ATTENDEE;CN=Bob;ROLE=REQ-PARTICIPANT:mailto:bob@example.com\r\n\
ATTENDEE:MAILTO:carol@example.com\r\n\
DESCRIPTION:Bring the numbers.\\nAnd the coffee for every\r\n \
one.\r\n\
BEGIN:VALARM\r\n\
ACTION:DISPLAY\r\n\
TRIGGER:-PT15M\r\n\
END:VALARM\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:ev2@example.com\r\n\
DTSTART:20241345T990000\r\n\
SUMMARY:Broken date\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:ev3@example.com\r\n\
DTSTART;VALUE=DATE:20240401\r\n\
DTEND;VALUE=DATE:20240402\r\n\
SUMMARY:Offsite\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n"
        .to_string()
}

/// A WebVTT transcript with a title, NOTE and STYLE blocks, voice tags (two consecutive cues by Alice), markup, and
/// a cue with a malformed timestamp.
pub fn vtt_with_voices() -> String {
    "WEBVTT - Weekly sync\n\
\n\
NOTE This is a comment\n\
that spans lines\n\
\n\
STYLE\n\
::cue { color: lime }\n\
\n\
1\n\
00:00:01.000 --> 00:00:04.000\n\
<v Alice>Good morning everyone.\n\
\n\
00:00:04.500 --> 00:00:06.000 align:start\n\
<v Alice>Let's start with the budget.\n\
\n\
intro-2\n\
00:00:06.000 --> 00:00:09.250\n\
<v.loud Bob Smith>I have the <b>numbers</b> &amp; charts.</v>\n\
\n\
00:00:10.000 --> 00:0x:12.000\n\
<v Bob Smith>This cue has a bad timestamp.\n\
\n\
01:00:12.000 --> 01:00:15.000\n\
<v Alice>Thanks Bob.\n"
        .to_string()
}

/// An SRT transcript using the "Speaker: text" convention for three cues and none for the last.
pub fn srt_with_speakers() -> String {
    "1\r\n\
00:00:01,000 --> 00:00:03,000\r\n\
ALICE: Hello there.\r\n\
\r\n\
2\r\n\
00:00:03,500 --> 00:00:05,000\r\n\
ALICE: How are you?\r\n\
\r\n\
3\r\n\
00:00:05,000 --> 00:00:07,000\r\n\
Bob Smith: <i>Fine</i>, thanks.\r\n\
\r\n\
4\r\n\
00:00:07,000 --> 00:00:09,000\r\n\
Note the time: it is late.\r\n"
        .to_string()
}
