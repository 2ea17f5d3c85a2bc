//! Code highlighting good enough to read by, with no grammar files: one pass that marks comments, strings, numbers
//! and the keywords common to the languages models write most (Python, JavaScript/TypeScript, Rust, C/C++, Go,
//! Java, shell, SQL). Everything is escaped; the marks are `<span class="com|str|num|kw">`.

/// Keywords of any of the languages above (a word that is a keyword in one is marked in all: it reads fine).
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "and", "as", "async", "await", "break", "case", "catch", "class", "const", "continue", "def", "default", "del",
    "do", "elif", "else", "enum", "except", "export", "extern", "false", "False", "finally", "fn", "for", "from",
    "func", "function", "go", "if", "impl", "import", "in", "interface", "lambda", "let", "loop", "match", "mod",
    "mut", "new", "nil", "None", "not", "null", "or", "package", "pass", "pub", "raise", "return", "select", "self",
    "static", "struct", "switch", "this", "throw", "trait", "true", "True", "try", "type", "typeof", "use", "var",
    "void", "where", "while", "with", "yield", "int", "char", "float", "double", "bool", "string", "unsigned",
    "SELECT", "FROM", "WHERE", "INSERT", "UPDATE", "DELETE", "CREATE", "TABLE", "JOIN", "ON", "AND", "OR", "NOT",
    "fi", "then", "done", "esac", "echo", "local", "export",
];

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn span(class: &str, s: &str, out: &mut String) {
    out.push_str("<span class=\"");
    out.push_str(class);
    out.push_str("\">");
    escape(s, out);
    out.push_str("</span>");
}

/// Whether `#` starts a comment in `lang` (shell, Python, Ruby, YAML, TOML...), not a C preprocessor line.
fn hash_comments(lang: &str) -> bool {
    matches!(
        lang,
        "py" | "python"
            | "sh"
            | "bash"
            | "shell"
            | "zsh"
            | "rb"
            | "ruby"
            | "yaml"
            | "yml"
            | "toml"
            | "r"
            | "perl"
            | "make"
            | "makefile"
            | "dockerfile"
            | "conf"
            | "ini"
    )
}

/// The length in bytes of the token at the start of `s`, and its class (`None`: plain).
fn token(s: &str, lang: &str) -> (usize, Option<&'static str>) {
    let b = s.as_bytes();
    let first = s.chars().next().map_or(1, char::len_utf8);
    let line_end = s.find('\n').unwrap_or(s.len());
    if s.starts_with("//") || (s.starts_with('#') && hash_comments(lang)) || s.starts_with("-- ") {
        return (line_end, Some("com"));
    }
    if let Some(body) = s.strip_prefix("/*") {
        let end = body.find("*/").map_or(s.len(), |i| i + 4);
        return (end, Some("com"));
    }
    if matches!(b[0], b'"' | b'\'' | b'`') {
        let q = b[0];
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                c if c == q => return (i + 1, Some("str")),
                b'\n' if q != b'`' => return (i, Some("str")),
                _ => i += 1,
            }
        }
        return (b.len(), Some("str"));
    }
    if b[0].is_ascii_digit() {
        let n = b
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_'))
            .unwrap_or(b.len());
        return (n, Some("num"));
    }
    if b[0].is_ascii_alphabetic() || b[0] == b'_' {
        let n = b
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .unwrap_or(b.len());
        let class = KEYWORDS.contains(&&s[..n]).then_some("kw");
        return (n, class);
    }
    (first, None)
}

/// A fenced block as `<pre><code class="language-LANG">` with its tokens marked.
pub fn block(lang: &str, code: &str) -> String {
    let lang_l = lang.to_ascii_lowercase();
    let mut out = String::with_capacity(code.len() * 2);
    out.push_str("<pre><code");
    if !lang.is_empty() {
        out.push_str(" class=\"language-");
        escape(lang, &mut out);
        out.push('"');
    }
    out.push('>');
    let mut rest = code;
    while !rest.is_empty() {
        let (n, class) = token(rest, &lang_l);
        let n = n.clamp(1, rest.len());
        // A token never ends inside a character (the scanners above stop on ASCII bytes).
        let n = (n..=rest.len())
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(rest.len());
        match class {
            Some(c) => span(c, &rest[..n], &mut out),
            None => escape(&rest[..n], &mut out),
        }
        rest = &rest[n..];
    }
    out.push_str("</code></pre>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::block;

    #[test]
    fn marks_and_escapes() {
        let h = block("py", "# note <b>\nx = 'a\\'b' + 42  # done\n");
        assert!(
            h.contains("<span class=\"com\"># note &lt;b&gt;</span>"),
            "{h}"
        );
        assert!(
            h.contains("<span class=\"str\">&#39;a\\&#39;b&#39;</span>"),
            "{h}"
        );
        assert!(h.contains("<span class=\"num\">42</span>"), "{h}");
    }

    #[test]
    fn any_text_is_safe() {
        for s in [
            "\"unterminated",
            "/* open",
            "é\u{1F600}\"x",
            "\\",
            "'",
            "`a\nb`",
        ] {
            let h = block("", s);
            assert!(
                !h.contains("<b") && h.ends_with("</code></pre>\n"),
                "{s}: {h}"
            );
        }
    }
}
