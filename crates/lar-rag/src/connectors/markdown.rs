//! Markdown files (CommonMark with tables, strikethrough and task lists, parsed by pulldown-cmark). One section per
//! heading, located by its heading path ("Intro > Setup > Linux"), its text starting with the heading itself; text
//! before the first heading is a section without a heading. Tables come out one row per line with cells joined by
//! " | ", list items one per line, code blocks verbatim. The title is the front matter's `title:` (YAML front matter is
//! stripped) or else the first level-1 heading. Raw HTML inside Markdown is dropped, links keep their text only.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use super::{Outline, collapse_ws};
use crate::doc::SourceKind;
use crate::{Document, Result};

/// Parses a Markdown file into one document.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = super::text::decode(name, bytes)?.replace("\r\n", "\n");
    let (front_title, body) = split_front_matter(&text);
    let (title, sections) = render(body);
    let mut doc = Document::new(name, SourceKind::Markdown);
    doc.title = front_title.or(title);
    doc.sections = sections;
    Ok(vec![doc])
}

/// The `title:` of a YAML front matter block (`---` ... `---` or `...` at the very top) and the text after it.
fn split_front_matter(text: &str) -> (Option<String>, &str) {
    let Some(rest) = text.strip_prefix("---\n") else {
        return (None, text);
    };
    let mut offset = 0;
    let mut title = None;
    for line in rest.split_inclusive('\n') {
        offset += line.len();
        let l = line.trim_end();
        if l == "---" || l == "..." {
            return (title, &rest[offset..]);
        }
        if let Some(v) = l.strip_prefix("title:") {
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !v.is_empty() {
                title = Some(v.to_string());
            }
        }
    }
    (None, text) // no closing line: not front matter
}

fn level_of(h: HeadingLevel) -> u8 {
    match h {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

#[derive(Default)]
struct Renderer {
    out: Outline,
    title: Option<String>,
    heading: Option<(u8, String)>,
    row: Option<Vec<String>>,
    cell: Option<String>,
    /// One entry per open list: the next number of an ordered list, None for bullets.
    lists: Vec<Option<u64>>,
    in_code: bool,
}

impl Renderer {
    fn text(&mut self, s: &str) {
        if let Some((_, h)) = &mut self.heading {
            h.push_str(s);
        } else if let Some(c) = &mut self.cell {
            c.push_str(s);
        } else if self.in_code {
            self.out.raw(s);
        } else {
            self.out.inline(s);
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Heading { level, .. } => self.heading = Some((level_of(level), String::new())),
            Tag::CodeBlock(_) => {
                self.out.end_block();
                self.in_code = true;
            }
            Tag::List(first) => {
                self.out.end_line();
                self.lists.push(first);
            }
            Tag::Item => {
                self.out.end_line();
                let depth = self.lists.len().saturating_sub(1);
                let marker = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!("{}. ", *n - 1)
                    }
                    _ => "- ".to_string(),
                };
                self.out.raw(&"  ".repeat(depth));
                self.out.raw(&marker);
            }
            Tag::Table(_) | Tag::BlockQuote(_) => self.out.end_block(),
            Tag::TableHead | Tag::TableRow => self.row = Some(Vec::new()),
            Tag::TableCell => self.cell = Some(String::new()),
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Heading(_) => {
                if let Some((level, text)) = self.heading.take() {
                    let text = collapse_ws(&text);
                    if level == 1 && self.title.is_none() && !text.is_empty() {
                        self.title = Some(text.clone());
                    }
                    self.out.heading(level, &text);
                }
            }
            TagEnd::Paragraph => {
                if self.lists.is_empty() {
                    self.out.end_block();
                } else {
                    self.out.end_line();
                }
            }
            TagEnd::CodeBlock => {
                self.in_code = false;
                self.out.end_block();
            }
            TagEnd::List(_) => {
                self.lists.pop();
                if self.lists.is_empty() {
                    self.out.end_block();
                }
            }
            TagEnd::Item => self.out.end_line(),
            TagEnd::TableCell => {
                if let (Some(cell), Some(row)) = (self.cell.take(), self.row.as_mut()) {
                    row.push(collapse_ws(&cell));
                }
            }
            TagEnd::TableHead | TagEnd::TableRow => {
                if let Some(row) = self.row.take() {
                    self.out.line(&row.join(" | "));
                }
            }
            TagEnd::Table | TagEnd::BlockQuote(_) => self.out.end_block(),
            _ => {}
        }
    }
}

/// The first H1 and the sections of a Markdown text (without front matter).
fn render(md: &str) -> (Option<String>, Vec<crate::doc::Section>) {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut r = Renderer::default();
    for event in Parser::new_ext(md, opts) {
        match event {
            Event::Start(tag) => r.start(tag),
            Event::End(tag) => r.end(tag),
            Event::Text(s) | Event::Code(s) | Event::InlineMath(s) | Event::DisplayMath(s) => {
                r.text(&s)
            }
            Event::SoftBreak => r.text(" "),
            Event::HardBreak => {
                if r.heading.is_some() || r.cell.is_some() {
                    r.text(" ");
                } else {
                    r.out.end_line();
                }
            }
            Event::Rule => r.out.end_block(),
            Event::TaskListMarker(done) => r.out.raw(if done { "[x] " } else { "[ ] " }),
            _ => {} // raw HTML, footnote references
        }
    }
    (r.title, r.out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sections(md: &str) -> Vec<(Option<String>, String)> {
        let docs = parse("a.md", md.as_bytes()).unwrap();
        docs[0]
            .sections
            .iter()
            .map(|s| (s.loc.heading.clone(), s.text.clone()))
            .collect()
    }

    #[test]
    fn heading_paths_and_preface() {
        let md = "Intro text\nwrapped.\n\n# Guide\n\nWelcome.\n\n## Setup\n\nInstall it.\n\n### Linux\n\nUse apt.\n\n## Usage\n\nRun it.\n";
        let docs = parse("a.md", md.as_bytes()).unwrap();
        assert_eq!(docs[0].title.as_deref(), Some("Guide"));
        assert_eq!(docs[0].kind, SourceKind::Markdown);
        let s = sections(md);
        let h = |x: &str| Some(x.to_string());
        assert_eq!(
            s,
            vec![
                (None, "Intro text wrapped.".to_string()),
                (h("Guide"), "Guide\n\nWelcome.".to_string()),
                (h("Guide > Setup"), "Setup\n\nInstall it.".to_string()),
                (h("Guide > Setup > Linux"), "Linux\n\nUse apt.".to_string()),
                (h("Guide > Usage"), "Usage\n\nRun it.".to_string()),
            ]
        );
    }

    #[test]
    fn tables_lists_and_code() {
        let md = "# Data\n\n| Name | Qty |\n|------|-----|\n| *apple* | 3 |\n| pear | 5 |\n\n- one\n- two\n  1. nested\n\n```rust\nfn main() {\n    x();\n}\n```\n";
        let s = sections(md);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].1,
            "Data\n\nName | Qty\napple | 3\npear | 5\n\n- one\n- two\n  1. nested\n\nfn main() {\n    x();\n}"
        );
    }

    #[test]
    fn front_matter_title_wins_and_is_stripped() {
        let md = "---\ntitle: \"Release notes\"\ntags: [a]\n---\n# Version 2\n\nFaster.\n";
        let docs = parse("a.md", md.as_bytes()).unwrap();
        assert_eq!(docs[0].title.as_deref(), Some("Release notes"));
        assert_eq!(docs[0].sections.len(), 1);
        assert_eq!(docs[0].sections[0].text, "Version 2\n\nFaster.");
    }

    #[test]
    fn no_h1_no_title() {
        let docs = parse("a.md", b"## Only a subsection\n\ntext\n").unwrap();
        assert_eq!(docs[0].title, None);
        assert_eq!(
            docs[0].sections[0].loc.heading.as_deref(),
            Some("Only a subsection")
        );
    }

    #[test]
    fn html_and_links_reduce_to_text() {
        let s = sections("See [the docs](https://x.invalid) <b>now</b>.\n\n<div>\nraw\n</div>\n");
        assert_eq!(s[0].1, "See the docs now.");
    }
}
