//! HTML files. The page is parsed by html5ever (through html2text's DOM) and walked here: the title is `<title>` (or
//! the first `<h1>`), every `<h1>`..`<h6>` opens a section located by its heading path like Markdown's, table rows
//! come out one per line with cells joined by " | ", list items one per line, `<pre>` verbatim. Scripts, styles,
//! navigation, forms' buttons, embedded frames and SVG are dropped. Bytes that are not UTF-8 are read as Latin-1
//! (a `<meta charset>` is not honoured). [`html_to_text`] serves the mail connector for HTML-only messages.

use html2text::Handle;

use super::{Outline, collapse_ws};
use crate::doc::{Section, SourceKind};
use crate::{Document, Error, Result};

/// Elements whose content is not part of the page's text.
const SKIPPED: &[&str] = &[
    "script", "style", "nav", "noscript", "template", "iframe", "object", "embed", "svg", "canvas",
    "button", "select", "head", "math",
];
/// Block elements that end with a blank line.
const BLOCKS: &[&str] = &[
    "p",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "blockquote",
    "figure",
    "address",
    "dl",
    "form",
    "fieldset",
    "details",
    "hr",
    "center",
];
/// Elements that end a line.
const LINES: &[&str] = &[
    "div",
    "dt",
    "dd",
    "summary",
    "figcaption",
    "caption",
    "legend",
    "label",
];
/// Past this depth the walk stops following structure and just collects text (no recursion on hostile nesting).
const MAX_DEPTH: usize = 200;

/// Parses an HTML file into one document.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = decode(name, bytes)?;
    let (title, sections) =
        render(&text).map_err(|e| Error::unreadable(name, format!("invalid HTML: {e}")))?;
    let mut doc = Document::new(name, SourceKind::Html);
    doc.title = title;
    doc.sections = sections;
    Ok(vec![doc])
}

/// The text of an HTML fragment or page, sections joined by blank lines.
pub fn html_to_text(html: &str) -> String {
    match render(html) {
        Ok((_, sections)) => sections
            .into_iter()
            .map(|s| s.text)
            .collect::<Vec<_>>()
            .join("\n\n"),
        Err(_) => String::new(),
    }
}

/// UTF-8 (BOM dropped), or else Latin-1 when the bytes still look like text.
fn decode(name: &str, bytes: &[u8]) -> Result<String> {
    match super::text::decode(name, bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(e) if bytes.contains(&0) => Err(e),
        Err(e) => {
            let s: String = bytes.iter().map(|&b| char::from(b)).collect();
            let control = s
                .chars()
                .filter(|c| c.is_control() && !c.is_whitespace())
                .count();
            if control * 20 > s.chars().count() {
                Err(e)
            } else {
                Ok(s)
            }
        }
    }
}

fn render(html: &str) -> std::result::Result<(Option<String>, Vec<Section>), html2text::Error> {
    let dom = html2text::config::plain().parse_html(html.as_bytes())?;
    let mut w = Walker::default();
    w.walk(&dom.document, 0);
    let title = w.title.or(w.first_h1);
    Ok((title, w.out.finish()))
}

#[derive(Default)]
struct Walker {
    out: Outline,
    title: Option<String>,
    first_h1: Option<String>,
    heading: Option<(u8, String)>,
    row: Option<Vec<String>>,
    cell: Option<String>,
    pre: usize,
    lists: Vec<Option<u64>>,
}

/// The element's local name, if the node is an element.
fn tag_of(node: &Handle) -> Option<String> {
    match &node.data {
        html2text::Element { name, .. } => Some(name.local.to_string().to_ascii_lowercase()),
        _ => None,
    }
}

/// The text of a text node. html2text does not export the text variant of its DOM, so the node is serialized (which
/// for a text node writes its text, escaped) and unescaped.
fn text_of(node: &Handle) -> Option<String> {
    match &node.data {
        html2text::Element { .. } | html2text::Document | html2text::Comment { .. } => None,
        _ => {
            let mut buf = Vec::new();
            node.serialize(&mut buf).ok()?;
            let s = String::from_utf8(buf).ok()?;
            if s.starts_with("<!") || s.starts_with("<?") {
                return None; // doctype, processing instruction
            }
            Some(
                s.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&nbsp;", "\u{a0}")
                    .replace("&amp;", "&"),
            )
        }
    }
}

impl Walker {
    fn children(&mut self, node: &Handle, depth: usize) {
        let children: Vec<Handle> = node.children.borrow().clone();
        for child in &children {
            self.walk(child, depth + 1);
        }
    }

    fn text(&mut self, s: &str) {
        if let Some((_, h)) = &mut self.heading {
            h.push_str(s);
        } else if let Some(c) = &mut self.cell {
            c.push_str(s);
        } else if self.pre > 0 {
            self.out.raw(s);
        } else {
            self.out.inline(s);
        }
    }

    fn walk(&mut self, node: &Handle, depth: usize) {
        if depth > MAX_DEPTH {
            let text = flat_text(node);
            self.text(&text);
            return;
        }
        let Some(tag) = tag_of(node) else {
            if let Some(t) = text_of(node) {
                self.text(&t);
            } else if matches!(node.data, html2text::Document) {
                self.children(node, depth);
            }
            return;
        };
        let tag = tag.as_str();
        match tag {
            "head" => {
                if let Some(t) = find(node, "title") {
                    let t = collapse_ws(&flat_text(&t));
                    if !t.is_empty() {
                        self.title.get_or_insert(t);
                    }
                }
            }
            _ if SKIPPED.contains(&tag) => {}
            "title" => {
                let t = collapse_ws(&flat_text(node));
                if !t.is_empty() {
                    self.title.get_or_insert(t);
                }
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
                if self.heading.is_none() && self.cell.is_none() =>
            {
                let level = tag.as_bytes()[1] - b'0';
                self.heading = Some((level, String::new()));
                self.children(node, depth);
                if let Some((level, text)) = self.heading.take() {
                    let text = collapse_ws(&text);
                    if level == 1 && self.first_h1.is_none() && !text.is_empty() {
                        self.first_h1 = Some(text.clone());
                    }
                    self.out.heading(level, &text);
                }
            }
            "br" => {
                if self.heading.is_some() || self.cell.is_some() {
                    self.text(" ");
                } else if self.pre > 0 {
                    self.out.raw("\n");
                } else {
                    self.out.end_line();
                }
            }
            "pre" => {
                self.out.end_block();
                self.pre += 1;
                self.children(node, depth);
                self.pre -= 1;
                self.out.end_block();
            }
            "ul" | "ol" => {
                self.out.end_line();
                self.lists.push((tag == "ol").then_some(1));
                self.children(node, depth);
                self.lists.pop();
                if self.lists.is_empty() {
                    self.out.end_block();
                }
            }
            "li" if self.cell.is_none() && self.heading.is_none() => {
                self.out.end_line();
                let depth_in = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_string(),
                };
                self.out.raw(&"  ".repeat(depth_in));
                self.out.raw(&marker);
                self.children(node, depth);
                self.out.end_line();
            }
            "table" if self.cell.is_none() => {
                self.out.end_block();
                self.children(node, depth);
                self.out.end_block();
            }
            "tr" if self.cell.is_none() && self.heading.is_none() => {
                self.row = Some(Vec::new());
                self.children(node, depth);
                if let Some(row) = self.row.take()
                    && row.iter().any(|c| !c.is_empty())
                {
                    self.out.line(&row.join(" | "));
                }
            }
            "td" | "th" if self.row.is_some() && self.cell.is_none() => {
                self.cell = Some(String::new());
                self.children(node, depth);
                if let (Some(cell), Some(row)) = (self.cell.take(), self.row.as_mut()) {
                    row.push(collapse_ws(&cell));
                }
            }
            _ if BLOCKS.contains(&tag) => {
                self.block_break();
                self.children(node, depth);
                self.block_break();
            }
            _ if LINES.contains(&tag) || matches!(tag, "li" | "tr" | "table" | "td" | "th") => {
                self.line_break();
                self.children(node, depth);
                self.line_break();
            }
            _ => self.children(node, depth),
        }
    }

    fn block_break(&mut self) {
        if self.heading.is_some() || self.cell.is_some() {
            self.text(" ");
        } else {
            self.out.end_block();
        }
    }

    fn line_break(&mut self) {
        if self.heading.is_some() || self.cell.is_some() {
            self.text(" ");
        } else {
            self.out.end_line();
        }
    }
}

/// All text under `node` (without scripts and styles), without recursion.
fn flat_text(node: &Handle) -> String {
    let mut out = String::new();
    let mut stack = vec![node.clone()];
    while let Some(n) = stack.pop() {
        if let Some(tag) = tag_of(&n) {
            if SKIPPED.contains(&tag.as_str()) {
                continue;
            }
            out.push(' ');
        } else if let Some(t) = text_of(&n) {
            out.push_str(&t);
        }
        stack.extend(n.children.borrow().iter().rev().cloned());
    }
    out
}

/// The first element named `tag` under `node` (depth-first, without recursion).
fn find(node: &Handle, tag: &str) -> Option<Handle> {
    let mut stack = vec![node.clone()];
    while let Some(n) = stack.pop() {
        if tag_of(&n).as_deref() == Some(tag) {
            return Some(n);
        }
        stack.extend(n.children.borrow().iter().rev().cloned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html>
<html><head><title> Team   handbook </title><style>body { color: red }</style>
<script>var secret = "do not index";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/about">About menu</a></nav>
<p>Welcome &amp; hello.</p>
<h1>Handbook</h1>
<p>How we <b>work</b>.<br>Second line.</p>
<h2>Holidays</h2>
<table><thead><tr><th>Country</th><th>Days</th></tr></thead>
<tbody><tr><td>France</td><td>25</td></tr><tr><td>Spain &lt;ES&gt;</td><td>22</td></tr></tbody></table>
<h3>Requests</h3><ul><li>Ask early</li><li>Use the <i>form</i></li></ul>
<h2>Tools</h2><pre>cargo  build
  --release</pre>
<script>alert("nope")</script>
</body></html>"#;

    #[test]
    fn title_headings_tables_and_no_script_text() {
        let docs = parse("a.html", PAGE.as_bytes()).unwrap();
        let d = &docs[0];
        assert_eq!(d.kind, SourceKind::Html);
        assert_eq!(d.title.as_deref(), Some("Team handbook"));
        let got: Vec<(Option<&str>, &str)> = d
            .sections
            .iter()
            .map(|s| (s.loc.heading.as_deref(), s.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "Welcome & hello."),
                (Some("Handbook"), "Handbook\n\nHow we work.\nSecond line."),
                (
                    Some("Handbook > Holidays"),
                    "Holidays\n\nCountry | Days\nFrance | 25\nSpain <ES> | 22"
                ),
                (
                    Some("Handbook > Holidays > Requests"),
                    "Requests\n\n- Ask early\n- Use the form"
                ),
                (
                    Some("Handbook > Tools"),
                    "Tools\n\ncargo  build\n  --release"
                ),
            ]
        );
        let all: String = d.sections.iter().map(|s| s.text.as_str()).collect();
        for hidden in ["secret", "nope", "color", "About menu"] {
            assert!(!all.contains(hidden), "{hidden} leaked into {all}");
        }
    }

    #[test]
    fn latin1_and_no_title() {
        let docs = parse("a.htm", b"<p>Caf\xe9 cr\xe8me</p><h1>Menu</h1>").unwrap();
        assert_eq!(docs[0].sections[0].text, "Café crème");
        assert_eq!(docs[0].title.as_deref(), Some("Menu"));
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let html = format!(
            "{}deep text{}",
            "<div><span>".repeat(20_000),
            "</span></div>".repeat(20_000)
        );
        let docs = parse("deep.html", html.as_bytes()).unwrap();
        assert_eq!(docs[0].sections[0].text, "deep text");
    }

    #[test]
    fn fragment_to_text() {
        assert_eq!(
            html_to_text("<div>Hi <b>Bob</b>,</div><div>see you</div>"),
            "Hi Bob,\nsee you"
        );
    }
}
