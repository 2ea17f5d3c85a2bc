//! Structure-following chunking. A document's sections (a Markdown or HTML section, a PDF page, a mail, an event, a
//! speaker turn) are the units: a chunk never spans two sections with different places, except that short
//! consecutive transcript turns are packed together (a one-line turn alone is poor retrieval). A section longer than
//! the budget is cut at the coarsest boundary that fits: blank lines (paragraphs), then lines (table rows, list items),
//! then sentence ends, then spaces; a word is cut only when a single word is longer than the whole budget. Sizes are
//! in the embedder's own tokens, and the next piece repeats the tail of the previous one (up to `overlap` tokens, in
//! whole units) so a fact on a boundary is found from both sides.

use crate::{Chunk, Document, Location, SourceKind};

/// How big chunks are.
#[derive(Clone, Copy, Debug)]
pub struct ChunkConfig {
    /// Most tokens of a chunk's embedded text, special tokens and the title/heading line included.
    pub max_tokens: usize,
    /// Tokens repeated from the end of the previous piece of the same section.
    pub overlap: usize,
}

impl ChunkConfig {
    /// The default for an embedder that takes `max_tokens`: up to 256 tokens, a tenth of it as overlap.
    pub fn for_embedder(max_tokens: usize) -> Self {
        let max_tokens = max_tokens.clamp(16, 256);
        ChunkConfig {
            max_tokens,
            overlap: max_tokens / 8,
        }
    }
}

/// The text an embedder sees for a chunk: its title and heading (context the piece itself may lack), then the text.
pub fn embed_text(chunk: &Chunk) -> String {
    let mut s = String::new();
    for h in [chunk.title.as_deref(), chunk.loc.heading.as_deref()]
        .into_iter()
        .flatten()
    {
        if !h.is_empty() && !chunk.text.starts_with(h) && !s.contains(h) {
            s.push_str(h);
            s.push('\n');
        }
    }
    s.push_str(&chunk.text);
    s
}

/// Cuts a file's documents into chunks (`ord` numbers them across the file). `count` gives a text's tokens as the
/// embedder counts them, special tokens included.
pub fn chunk_documents(
    docs: &[Document],
    cfg: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Vec<Chunk> {
    let base = count("");
    let mut out = Vec::new();
    for doc in docs {
        let mut pieces: Vec<(String, Location)> = Vec::new();
        let tokens = |s: &str| count(s).saturating_sub(base);
        // The title/heading lines go into the embedded text too and may take at most half of it: a longer title or
        // heading (a paragraph tagged <h1>, a run-on subject) is cut for the chunk, or the embedder would silently
        // truncate the text itself.
        let half = cfg.max_tokens.saturating_sub(base) / 2;
        let title = doc.title.as_deref().map(|t| clip(t, half / 2, &tokens));
        for (text, mut loc) in group_sections(doc, cfg, count) {
            let header = |title: &Option<String>, loc: &Location| {
                tokens(&embed_text(&chunk_of(doc, title, loc, String::new(), 0)))
            };
            if header(&title, &loc) > half
                && let Some(h) = &loc.heading
            {
                let room = half.saturating_sub(header(&title, &Location::default()));
                loc.heading = Some(clip(h, room, &tokens));
            }
            let budget = cfg
                .max_tokens
                .saturating_sub(base + header(&title, &loc))
                .max(8);
            for piece in split(&text, budget, cfg.overlap.min(budget / 2), &tokens) {
                pieces.push((piece, loc.clone()));
            }
        }
        for (text, loc) in pieces {
            let ord = out.len() as u32;
            out.push(chunk_of(doc, &title, &loc, text, ord));
        }
    }
    out
}

/// The first `max` tokens' worth of `s` (by `tokens`), cut where [`split`] would cut.
fn clip(s: &str, max: usize, tokens: &dyn Fn(&str) -> usize) -> String {
    if tokens(s) <= max {
        return s.to_string();
    }
    split(s, max.max(1), 0, tokens)
        .into_iter()
        .next()
        .unwrap_or_default()
}

fn chunk_of(
    doc: &Document,
    title: &Option<String>,
    loc: &Location,
    text: String,
    ord: u32,
) -> Chunk {
    Chunk {
        path: doc.path.clone(),
        kind: doc.kind,
        title: title.clone(),
        date: doc.date,
        sender: doc.sender.clone(),
        meta: doc.meta.clone(),
        loc: loc.clone(),
        ord,
        text,
    }
}

/// A document's sections as chunking units: empty ones dropped, short transcript turns packed together.
fn group_sections(
    doc: &Document,
    cfg: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Vec<(String, Location)> {
    let mut out: Vec<(String, Location)> = Vec::new();
    let mut speakers: Vec<String> = Vec::new();
    for s in &doc.sections {
        let text = s.text.trim();
        if text.is_empty() {
            continue;
        }
        if doc.kind == SourceKind::Transcript
            && let Some((prev, loc)) = out.last_mut()
        {
            let joined = format!("{prev}\n{}", turn_text(text, &s.loc));
            if count(&joined) <= cfg.max_tokens * 3 / 4 {
                *prev = joined;
                if let Some(sp) = &s.loc.speaker
                    && !speakers.contains(sp)
                {
                    speakers.push(sp.clone());
                    loc.speaker = Some(speakers.join(", "));
                }
                if s.loc.end.is_some() {
                    loc.end = s.loc.end.clone();
                }
                continue;
            }
        }
        speakers = s.loc.speaker.iter().cloned().collect();
        let t = if doc.kind == SourceKind::Transcript {
            turn_text(text, &s.loc)
        } else {
            text.to_string()
        };
        out.push((t, s.loc.clone()));
    }
    out
}

/// A transcript turn with its speaker in front, so "what did Ana say" finds it.
fn turn_text(text: &str, loc: &Location) -> String {
    match &loc.speaker {
        Some(sp) if !text.starts_with(sp.as_str()) => format!("{sp}: {text}"),
        _ => text.to_string(),
    }
}

/// Separators from coarsest to finest: paragraphs, lines, sentence ends, spaces.
const LEVELS: [&str; 4] = ["\n\n", "\n", ". ", " "];

/// Splits `text` into pieces of at most `budget` tokens (by `count`), preferring coarse boundaries, each piece after
/// the first starting with up to `overlap` tokens of whole units from the end of the previous one.
pub fn split(
    text: &str,
    budget: usize,
    overlap: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    if count(text) <= budget {
        return vec![text.to_string()];
    }
    let units = units(text, 0, budget, count);
    pack(&units, budget, overlap, count)
}

/// `text` as units that each fit `budget`, cut at the coarsest level that makes them fit; each unit keeps its
/// trailing separator so joining units restores the text.
fn units(text: &str, level: usize, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    let Some(sep) = LEVELS.get(level) else {
        return hard_cut(text, budget, count);
    };
    let mut out = Vec::new();
    for part in text.split_inclusive(sep) {
        if count(part) <= budget {
            out.push(part.to_string());
        } else {
            out.extend(units(part, level + 1, budget, count));
        }
    }
    out
}

/// Last resort for one "word" longer than the budget (a base64 blob, a URL): cut at character boundaries.
fn hard_cut(text: &str, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // Largest prefix that fits, by bisection over char boundaries.
        let bounds: Vec<usize> = rest
            .char_indices()
            .map(|(i, _)| i)
            .skip(1)
            .chain([rest.len()])
            .collect();
        let (mut lo, mut hi) = (0usize, bounds.len() - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if count(&rest[..bounds[mid]]) <= budget {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let end = bounds[lo];
        out.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    out
}

/// Greedy packing of units into pieces of at most `budget` tokens, with whole-unit overlap.
fn pack(
    units: &[String],
    budget: usize,
    overlap: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut fresh = 0; // units in `cur` that are not overlap
    for u in units {
        let candidate: String = cur.iter().map(String::as_str).chain([u.as_str()]).collect();
        if !cur.is_empty() && count(candidate.trim()) > budget {
            out.push(cur.concat().trim().to_string());
            cur = overlap_tail(&cur, u, budget, overlap, count);
            fresh = 0;
        }
        cur.push(u.clone());
        fresh += 1;
    }
    if fresh > 0 {
        out.push(cur.concat().trim().to_string());
    }
    out.retain(|p| !p.is_empty());
    out
}

/// The units that start the piece after `cur` (before `next`): whole units from the end of `cur` while they fit in
/// `overlap` tokens and leave room for `next`; when even the last unit is longer than the overlap (a paragraph), the
/// finer units (sentences, words) at its end, so a long paragraph still overlaps. Never starts inside a word.
fn overlap_tail(
    cur: &[String],
    next: &str,
    budget: usize,
    overlap: usize,
    count: &dyn Fn(&str) -> usize,
) -> Vec<String> {
    let fits = |t: &[String]| {
        let t = t.concat();
        count(t.trim()) <= overlap && count(format!("{t}{next}").trim()) <= budget
    };
    let mut tail: Vec<String> = Vec::new();
    for prev in cur.iter().rev() {
        let mut t = vec![prev.clone()];
        t.extend(tail.iter().cloned());
        if !fits(&t) {
            break;
        }
        tail = t;
    }
    if !tail.is_empty() || overlap == 0 {
        return tail;
    }
    let Some(last) = cur.last() else {
        return tail;
    };
    // Finer units of the last one (they concatenate back to it), taken from the end; the tail is kept only where it
    // starts after white space (a hard-cut fragment would start mid-word).
    let fine = units(last, 0, overlap, count);
    let mut t: Vec<String> = Vec::new();
    let mut len = 0;
    for f in fine.iter().rev() {
        let mut longer = vec![f.clone()];
        longer.extend(t.iter().cloned());
        if !fits(&longer) {
            break;
        }
        t = longer;
        len += f.len();
        let before = &last[..last.len() - len];
        if before.is_empty() || before.ends_with(char::is_whitespace) {
            tail = t.clone();
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Section;

    /// A stand-in tokenizer: one token per word plus two special tokens.
    fn words(s: &str) -> usize {
        s.split_whitespace().count() + 2
    }

    fn doc(kind: SourceKind, sections: Vec<Section>) -> Document {
        let mut d = Document::new("/kb/a.md", kind);
        d.sections = sections;
        d
    }

    #[test]
    fn short_section_is_one_chunk_with_its_location() {
        let loc = Location {
            heading: Some("Intro".into()),
            ..Default::default()
        };
        let d = doc(
            SourceKind::Markdown,
            vec![Section {
                text: "Intro\nHello world.".into(),
                loc: loc.clone(),
            }],
        );
        let cfg = ChunkConfig {
            max_tokens: 50,
            overlap: 5,
        };
        let c = chunk_documents(&[d], &cfg, &words);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].loc, loc);
        assert_eq!(c[0].text, "Intro\nHello world.");
    }

    #[test]
    fn sections_never_share_a_chunk() {
        let s = |h: &str| Section {
            text: format!("{h} text"),
            loc: Location {
                page: Some(if h == "a" { 1 } else { 2 }),
                ..Default::default()
            },
        };
        let d = doc(SourceKind::Pdf, vec![s("a"), s("b")]);
        let c = chunk_documents(
            &[d],
            &ChunkConfig {
                max_tokens: 100,
                overlap: 5,
            },
            &words,
        );
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].loc.page, c[1].loc.page), (Some(1), Some(2)));
        assert_eq!((c[0].ord, c[1].ord), (0, 1));
    }

    #[test]
    fn long_text_splits_at_paragraphs_then_sentences_within_budget() {
        let para = |n: usize| {
            (0..5)
                .map(|i| format!("Sentence {n}{i} has five words."))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let text = (0..6).map(para).collect::<Vec<_>>().join("\n\n");
        let pieces = split(&text, 30, 6, &|s| words(s) - 2);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(words(p) - 2 <= 30, "{p}");
            // No word is cut: every piece starts and ends on a whole word of the text.
            assert!(p.starts_with("Sentence"), "{p}");
            assert!(p.ends_with('.'), "{p}");
        }
        // Every sentence survives somewhere.
        for n in 0..6 {
            for i in 0..5 {
                let s = format!("Sentence {n}{i} has");
                assert!(pieces.iter().any(|p| p.contains(&s)), "{s} lost");
            }
        }
        // Overlap: a later piece repeats the previous piece's last sentence.
        let last_of_first = pieces[0].rsplit(". ").next().unwrap_or_default();
        assert!(pieces[1].contains(last_of_first.trim_end_matches('.')));
    }

    #[test]
    fn table_rows_stay_whole() {
        let rows: Vec<String> = (0..40)
            .map(|i| format!("| row {i} | a b c | {i}.5 |"))
            .collect();
        let pieces = split(&rows.join("\n"), 40, 0, &|s| words(s) - 2);
        assert!(pieces.len() > 1);
        for p in &pieces {
            for line in p.lines() {
                assert!(
                    line.starts_with("| row") && line.ends_with(" |"),
                    "cut row: {line}"
                );
            }
        }
    }

    #[test]
    fn a_giant_word_is_cut_to_fit() {
        let blob = "x".repeat(1000);
        let count = |s: &str| s.len().div_ceil(10); // ten chars a token
        let pieces = split(&blob, 20, 0, &count);
        assert!(pieces.iter().all(|p| count(p) <= 20));
        assert_eq!(pieces.concat(), blob);
    }

    #[test]
    fn transcript_turns_pack_and_name_speakers() {
        let turn = |sp: &str, start: &str, end: &str, t: &str| Section {
            text: t.into(),
            loc: Location {
                speaker: Some(sp.into()),
                start: Some(start.into()),
                end: Some(end.into()),
                ..Default::default()
            },
        };
        let d = doc(
            SourceKind::Transcript,
            vec![
                turn("Ana", "00:00:01.000", "00:00:04.000", "Budget is approved."),
                turn("Luis", "00:00:04.000", "00:00:06.000", "Great news."),
            ],
        );
        let c = chunk_documents(
            &[d],
            &ChunkConfig {
                max_tokens: 100,
                overlap: 5,
            },
            &words,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "Ana: Budget is approved.\nLuis: Great news.");
        assert_eq!(c[0].loc.speaker.as_deref(), Some("Ana, Luis"));
        assert_eq!(c[0].loc.start.as_deref(), Some("00:00:01.000"));
        assert_eq!(c[0].loc.end.as_deref(), Some("00:00:06.000"));
    }

    #[test]
    fn a_huge_title_or_heading_never_pushes_a_chunk_over_the_budget() {
        // A paragraph tagged <h1> (or a run-on subject) used to leave the text a budget of 8 tokens on top of the
        // whole heading line: every chunk's embedded text was over the embedder's limit and silently truncated.
        let long = |w: &str, n: usize| vec![w; n].join(" ");
        let mut d = doc(
            SourceKind::Html,
            vec![Section {
                text: format!("{}\n\n{}", long("head", 300), long("body", 200)),
                loc: Location {
                    heading: Some(long("head", 300)),
                    ..Default::default()
                },
            }],
        );
        d.title = Some(long("title", 100));
        let cfg = ChunkConfig {
            max_tokens: 64,
            overlap: 8,
        };
        let c = chunk_documents(&[d], &cfg, &words);
        assert!(!c.is_empty());
        for ch in &c {
            let n = words(&embed_text(ch));
            assert!(n <= 64, "{n} tokens: {}", embed_text(ch));
            assert!(ch.loc.heading.as_deref().unwrap().starts_with("head head"));
            assert!(ch.title.as_deref().unwrap().starts_with("title title"));
        }
        // The body is all there.
        let body: usize = c.iter().map(|ch| ch.text.matches("body").count()).sum();
        assert!(body >= 200, "{body}");
    }

    #[test]
    fn embedded_text_has_title_and_heading_once() {
        let mut d = doc(
            SourceKind::Markdown,
            vec![Section {
                text: "Body words here.".into(),
                loc: Location {
                    heading: Some("Guide > Setup".into()),
                    ..Default::default()
                },
            }],
        );
        d.title = Some("Guide".into());
        let c = chunk_documents(
            &[d],
            &ChunkConfig {
                max_tokens: 50,
                overlap: 0,
            },
            &words,
        );
        assert_eq!(embed_text(&c[0]), "Guide\nGuide > Setup\nBody words here.");
        assert!(words(&embed_text(&c[0])) <= 50);
    }
}
