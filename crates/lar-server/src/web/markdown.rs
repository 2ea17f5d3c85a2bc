//! Model output as Markdown, rendered on the server so that it can never run script: raw HTML in the text is shown
//! as text, a link or image whose address is not http(s), mailto or a same-site path becomes plain text, images
//! are shown as links (a page loads nothing the model names), and fenced code is highlighted ([`super::highlight`]).

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// Whether a link address may be followed: http(s), mailto, or a path/fragment of this site.
pub fn safe_url(url: &str) -> bool {
    let u = url.trim_start();
    let lower: String = u
        .chars()
        .take(12)
        .filter(|c| !c.is_ascii_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
    {
        return true;
    }
    // No scheme at all: a relative address (`/x`, `#x`, `x.html`), but not `//host` (another site).
    let scheme_end = u.find(':');
    let path_end = u.find(['/', '?', '#']).unwrap_or(u.len());
    !u.starts_with("//") && scheme_end.is_none_or(|i| i > path_end)
}

/// `text` (Markdown) as safe HTML.
pub fn render(text: &str) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut events: Vec<Event> = Vec::new();
    // Inside a link or image whose address was refused: its tags are dropped, its text kept.
    let mut dropped: Vec<bool> = Vec::new();
    let mut code: Option<(String, String)> = None;
    for ev in Parser::new_ext(text, opts) {
        if let Some((lang, buf)) = code.as_mut() {
            match ev {
                Event::Text(t) => buf.push_str(&t),
                Event::End(TagEnd::CodeBlock) => {
                    let html = super::highlight::block(lang, buf);
                    events.push(Event::Html(CowStr::from(html)));
                    code = None;
                }
                _ => {}
            }
            continue;
        }
        match ev {
            Event::Html(h) | Event::InlineHtml(h) => events.push(Event::Text(h)),
            Event::Start(Tag::CodeBlock(kind)) => {
                let lang = match kind {
                    CodeBlockKind::Fenced(l) => {
                        l.split_whitespace().next().unwrap_or("").to_string()
                    }
                    CodeBlockKind::Indented => String::new(),
                };
                code = Some((lang, String::new()));
            }
            Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                let ok = safe_url(&dest_url);
                dropped.push(!ok);
                if ok {
                    events.push(Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }));
                }
            }
            Event::End(TagEnd::Link) => {
                if dropped.pop() == Some(false) {
                    events.push(Event::End(TagEnd::Link));
                }
            }
            Event::Start(Tag::Image {
                link_type,
                dest_url,
                title,
                id,
            }) => {
                // Shown as a link to the image: nothing is loaded by the page on the model's say-so.
                let ok = safe_url(&dest_url);
                dropped.push(!ok);
                if ok {
                    events.push(Event::Start(Tag::Link {
                        link_type,
                        dest_url,
                        title,
                        id,
                    }));
                }
            }
            Event::End(TagEnd::Image) => {
                if dropped.pop() == Some(false) {
                    events.push(Event::End(TagEnd::Link));
                }
            }
            other => events.push(other),
        }
    }
    if let Some((lang, buf)) = code {
        events.push(Event::Html(CowStr::from(super::highlight::block(
            &lang, &buf,
        ))));
    }
    let mut out = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_html_is_shown_as_text() {
        let h = render("hi <script>alert(1)</script> <img src=x onerror=alert(1)>");
        assert!(!h.contains("<script"), "{h}");
        assert!(!h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;"), "{h}");
    }

    #[test]
    fn only_safe_links_stay_links() {
        let h = render(
            "[a](javascript:alert(1)) [b](https://x.org) [c]( JaVa\tScRiPt:alert(1)) [d](/ui) [e](data:text/html,x)",
        );
        assert!(!h.to_lowercase().contains("javascript:alert"), "{h}");
        assert!(!h.contains("data:text"), "{h}");
        assert!(h.contains("href=\"https://x.org\""), "{h}");
        assert!(h.contains("href=\"/ui\""), "{h}");
        for t in ["a", "c", "e"] {
            assert!(h.contains(t), "the text of a refused link stays: {h}");
        }
    }

    #[test]
    fn images_become_links() {
        let h = render("![cat](https://x.org/cat.png) ![x](javascript:alert(1))");
        assert!(!h.contains("<img"), "{h}");
        assert!(
            h.contains("<a href=\"https://x.org/cat.png\">cat</a>"),
            "{h}"
        );
    }

    #[test]
    fn code_is_highlighted_and_escaped() {
        let h = render("```rust\nfn main() { let s = \"<b>\"; } // hi\n```\n");
        assert!(h.contains("<pre><code class=\"language-rust\">"), "{h}");
        assert!(h.contains("<span class=\"kw\">fn</span>"), "{h}");
        assert!(
            h.contains("<span class=\"str\">&quot;&lt;b&gt;&quot;</span>"),
            "{h}"
        );
        assert!(h.contains("<span class=\"com\">// hi</span>"), "{h}");
        assert!(!h.contains("<b>"), "{h}");
    }

    #[test]
    fn unclosed_code_at_the_end_of_a_stopped_answer() {
        let h = render("see:\n```py\nprint('<x>')");
        assert!(h.contains("language-py"), "{h}");
        assert!(!h.contains("<x>"), "{h}");
    }
}
