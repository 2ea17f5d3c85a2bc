//! Streaming output: bytes of tokens become text only once they form whole UTF-8 characters, and text that might be
//! the start of a stop string is held back until it is known not to be one.

/// Turns a stream of token bytes into valid UTF-8 text pieces.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Adds `bytes`; returns the text that is now complete. An incomplete character at the end is kept for the next
    /// call; a byte sequence that can never be valid becomes U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // SAFETY-free: `good` was validated by from_utf8.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Whatever is left, with an incomplete character replaced by U+FFFD.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Cuts generated text at the first stop string, also when the stop string arrives split over several pieces.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: Option<String>,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            matched: None,
        }
    }

    /// Adds a piece of text; returns the text safe to show now, and whether a stop string was found (in which case
    /// the returned text ends right before it and nothing more should be generated).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        if let Some((pos, s)) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|p| (p, s)))
            .min_by_key(|(p, _)| *p)
        {
            let out = self.held[..pos].to_string();
            self.matched = Some(s.clone());
            self.held.clear();
            return (out, true);
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            if let Some(i) = (1..s.len())
                .rev()
                .find(|&i| s.is_char_boundary(i) && self.held.ends_with(&s[..i]))
            {
                keep = keep.max(i);
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// The stop string that ended the text, once one has.
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    /// The text still held back (generation ended without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_over_tokens_is_joined() {
        let mut s = Utf8Stream::default();
        let bytes = "ñ🦀".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "ñ");
        assert_eq!(s.push(&bytes[3..5]), "");
        assert_eq!(s.push(&bytes[5..]), "🦀");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::default();
        assert_eq!(s.push(&[b'a', 0xFF, b'b']), "a\u{FFFD}b");
        assert_eq!(s.push(&[0xE2, 0x82]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }

    #[test]
    fn stop_string_split_across_pieces() {
        let mut m = StopMatcher::new(&["</answer>".to_string()]);
        let mut shown = String::new();
        let mut stopped = false;
        for piece in ["The answer is 4", "</ans", "wer> and more"] {
            let (t, s) = m.push(piece);
            shown.push_str(&t);
            if s {
                stopped = true;
                break;
            }
        }
        assert!(stopped);
        assert_eq!(shown, "The answer is 4");
    }

    #[test]
    fn held_text_is_released_when_it_is_not_a_stop() {
        let mut m = StopMatcher::new(&["STOP".to_string()]);
        assert_eq!(m.push("abc ST"), ("abc ".to_string(), false));
        assert_eq!(m.push("AR"), ("STAR".to_string(), false));
        assert_eq!(m.push(" S"), (" ".to_string(), false));
        assert_eq!(m.finish(), "S");
    }
}
