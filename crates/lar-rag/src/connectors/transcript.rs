//! Meeting transcripts and subtitles: WebVTT (.vtt) and SubRip (.srt), read by our own small parser. Every cue gives
//! its start and end as written ("00:01:02.500", SRT's "00:01:02,500") and its speaker: a WebVTT voice tag
//! (`<v Alice>`, `<v.loud Bob Smith>`) or, in SRT, the "Speaker: text" convention (a short capitalized name before a
//! colon). Consecutive cues by the same speaker are merged into one section, a speaker turn, from the first cue's
//! start to the last one's end (turns are cut at about 1500 characters so a citation's time range stays useful);
//! cues without a speaker stay one section each. NOTE, STYLE and REGION blocks and all markup are dropped; a cue with
//! a malformed timestamp is skipped. The WebVTT header's text ("WEBVTT - Weekly sync") is the title, and the
//! metadata's `speakers` lists who speaks.

use crate::doc::{Location, Section, SourceKind};
use crate::{Document, Error, Result};

/// A speaker turn is cut after this many characters.
const MAX_TURN_CHARS: usize = 1500;

/// One timed piece of speech.
#[derive(Debug, PartialEq, Eq)]
struct Segment {
    start: String,
    end: String,
    speaker: Option<String>,
    text: String,
}

/// Parses a WebVTT file.
pub fn parse_vtt(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = normalize(super::text::decode(name, bytes)?);
    let mut blocks = blocks(&text).into_iter();
    let header = blocks.next().unwrap_or_default();
    let first = header.first().copied().unwrap_or("");
    let rest = first
        .strip_prefix("WEBVTT")
        .filter(|r| r.is_empty() || r.starts_with([' ', '\t']));
    let Some(rest) = rest else {
        return Err(Error::unreadable(
            name,
            "not a WebVTT file (no WEBVTT header)",
        ));
    };
    let title = rest.trim().trim_start_matches('-').trim();
    let mut segments = Vec::new();
    let mut cues = 0;
    for block in blocks {
        let head = block[0];
        if ["NOTE", "STYLE", "REGION"]
            .iter()
            .any(|k| head == *k || head.starts_with(&format!("{k} ")))
        {
            continue;
        }
        cues += 1;
        let Some((start, end, payload)) = timing(&block, is_vtt_time) else {
            continue;
        };
        let mut voice: Option<String> = None;
        for line in payload {
            if let Some(v) = voice_of(line) {
                voice = Some(v);
            }
            let text = strip_markup(line);
            push_segment(&mut segments, &start, &end, voice.clone(), &text);
        }
    }
    finish(
        name,
        (!title.is_empty()).then(|| title.to_string()),
        segments,
        cues,
    )
}

/// Parses a SubRip file.
pub fn parse_srt(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = normalize(super::text::decode(name, bytes)?);
    let mut segments = Vec::new();
    let mut cues = 0;
    for block in blocks(&text) {
        cues += 1;
        let Some((start, end, payload)) = timing(&block, is_srt_time) else {
            continue;
        };
        let mut speaker: Option<String> = None;
        for line in payload {
            let mut text = strip_markup(line);
            if let Some((who, said)) = speaker_prefix(&text) {
                speaker = Some(who);
                text = said;
            }
            push_segment(&mut segments, &start, &end, speaker.clone(), &text);
        }
    }
    finish(name, None, segments, cues)
}

fn normalize(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Runs of non-blank lines.
fn blocks(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(line.trim_end());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The cue's start, end and payload lines: the timing line is the first or (after a cue id) the second line.
fn timing<'a>(
    block: &[&'a str],
    valid: fn(&str) -> bool,
) -> Option<(String, String, Vec<&'a str>)> {
    let at = block.iter().take(2).position(|l| l.contains("-->"))?;
    let (start, rest) = block[at].split_once("-->")?;
    let start = start.trim();
    let end = rest.split_whitespace().next()?;
    if !valid(start) || !valid(end) {
        return None;
    }
    Some((start.to_string(), end.to_string(), block[at + 1..].to_vec()))
}

fn all_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

fn minutes_seconds(mm: &str, ss: &str) -> bool {
    all_digits(mm, 2) && all_digits(ss, 2) && mm < "60" && ss < "60"
}

/// `mm:ss.ttt` or `hh:mm:ss.ttt` (hours of two or more digits).
fn is_vtt_time(t: &str) -> bool {
    let Some((hms, millis)) = t.split_once('.') else {
        return false;
    };
    let parts: Vec<&str> = hms.split(':').collect();
    all_digits(millis, 3)
        && match parts.as_slice() {
            [mm, ss] => minutes_seconds(mm, ss),
            [hh, mm, ss] => {
                hh.len() >= 2 && hh.bytes().all(|b| b.is_ascii_digit()) && minutes_seconds(mm, ss)
            }
            _ => false,
        }
}

/// `hh:mm:ss,ttt` (a '.' is accepted for the comma).
fn is_srt_time(t: &str) -> bool {
    let Some((hms, millis)) = t.split_once([',', '.']) else {
        return false;
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let [hh, mm, ss] = parts.as_slice() else {
        return false;
    };
    all_digits(millis, 3)
        && !hh.is_empty()
        && hh.bytes().all(|b| b.is_ascii_digit())
        && minutes_seconds(mm, ss)
}

/// The speaker of a WebVTT voice tag in `line` (`<v Name>`, `<v.class Name>`).
fn voice_of(line: &str) -> Option<String> {
    let at = line.find("<v")?;
    let tag = &line[at + 2..];
    let close = tag.find('>')?;
    let tag = &tag[..close];
    if !tag.starts_with(['.', ' ', '\t']) {
        return None; // another tag starting with v
    }
    // Classes (".loud") run up to the first white space; the name follows.
    let name = tag.trim_start_matches(|c: char| !c.is_whitespace()).trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The text without `<tags>` and `{\an8}`-style overrides, entities decoded, white space collapsed.
fn strip_markup(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_tag = None;
    for c in line.chars() {
        match (in_tag, c) {
            (None, '<') => in_tag = Some('>'),
            (None, '{') => in_tag = Some('}'),
            (Some(close), c) if c == close => in_tag = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    let out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&lrm;", "")
        .replace("&rlm;", "")
        .replace("&amp;", "&");
    super::collapse_ws(&out)
}

/// "ALICE: hello" / "Bob Smith: hello": a name of one to four capitalized words, without digits, before a colon.
fn speaker_prefix(line: &str) -> Option<(String, String)> {
    let (who, said) = line.split_once(':')?;
    let who = who.trim();
    let said = said.trim();
    let words: Vec<&str> = who.split_whitespace().collect();
    let name_like = |w: &&str| {
        w.chars().next().is_some_and(char::is_uppercase)
            && w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '.' | '\'' | '-'))
    };
    if said.is_empty()
        || words.is_empty()
        || words.len() > 4
        || who.chars().count() > 40
        || !words.iter().all(name_like)
    {
        return None;
    }
    Some((who.to_string(), said.to_string()))
}

fn push_segment(
    segments: &mut Vec<Segment>,
    start: &str,
    end: &str,
    speaker: Option<String>,
    text: &str,
) {
    if text.is_empty() {
        return;
    }
    // Lines of one cue by one speaker are one segment.
    if let Some(last) = segments.last_mut()
        && last.start == start
        && last.end == end
        && last.speaker == speaker
    {
        last.text.push(' ');
        last.text.push_str(text);
        return;
    }
    segments.push(Segment {
        start: start.to_string(),
        end: end.to_string(),
        speaker,
        text: text.to_string(),
    });
}

/// Merges speaker turns into sections and makes the document.
fn finish(
    name: &str,
    title: Option<String>,
    segments: Vec<Segment>,
    cues: usize,
) -> Result<Vec<Document>> {
    if segments.is_empty() && cues > 0 {
        return Err(Error::unreadable(name, "no cues with valid timestamps"));
    }
    let mut doc = Document::new(name, SourceKind::Transcript);
    doc.title = title;
    let mut speakers: Vec<String> = Vec::new();
    for seg in segments {
        if let Some(s) = &seg.speaker
            && !speakers.contains(s)
        {
            speakers.push(s.clone());
        }
        if let Some(last) = doc.sections.last_mut()
            && seg.speaker.is_some()
            && last.loc.speaker == seg.speaker
            && last.text.len() + seg.text.len() < MAX_TURN_CHARS
        {
            last.text.push(' ');
            last.text.push_str(&seg.text);
            last.loc.end = Some(seg.end);
            continue;
        }
        doc.sections.push(Section {
            text: seg.text,
            loc: Location {
                speaker: seg.speaker,
                start: Some(seg.start),
                end: Some(seg.end),
                ..Location::default()
            },
        });
    }
    if !speakers.is_empty() {
        doc.meta.insert("speakers".into(), speakers.join(", "));
    }
    Ok(vec![doc])
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_testdata::fixtures;

    fn turns(d: &Document) -> Vec<(Option<&str>, &str, &str, &str)> {
        d.sections
            .iter()
            .map(|s| {
                (
                    s.loc.speaker.as_deref(),
                    s.loc.start.as_deref().unwrap(),
                    s.loc.end.as_deref().unwrap(),
                    s.text.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn vtt_speakers_turns_and_timestamps() {
        let docs = parse_vtt("sync.vtt", fixtures::vtt_with_voices().as_bytes()).unwrap();
        let d = &docs[0];
        assert_eq!(d.kind, SourceKind::Transcript);
        assert_eq!(d.title.as_deref(), Some("Weekly sync"));
        assert_eq!(
            d.meta.get("speakers").map(String::as_str),
            Some("Alice, Bob Smith")
        );
        assert_eq!(
            turns(d),
            vec![
                (
                    Some("Alice"),
                    "00:00:01.000",
                    "00:00:06.000",
                    "Good morning everyone. Let's start with the budget."
                ),
                (
                    Some("Bob Smith"),
                    "00:00:06.000",
                    "00:00:09.250",
                    "I have the numbers & charts."
                ),
                (Some("Alice"), "01:00:12.000", "01:00:15.000", "Thanks Bob."),
            ]
        );
    }

    #[test]
    fn vtt_without_header_or_cues() {
        assert!(matches!(
            parse_vtt("a.vtt", b"00:01.000 --> 00:02.000\nhi\n"),
            Err(Error::Unreadable { .. })
        ));
        assert!(
            parse_vtt("a.vtt", b"WEBVTT\n").unwrap()[0]
                .sections
                .is_empty()
        );
        let bad = parse_vtt("a.vtt", b"WEBVTT\n\n00:01.000 --> 00:99.000\nhi\n").unwrap_err();
        assert!(
            bad.to_string().contains("no cues with valid timestamps"),
            "{bad}"
        );
        // Short mm:ss.ttt times and multi-line cues without voices.
        let d = &parse_vtt(
            "a.vtt",
            b"WEBVTT\n\n00:01.000 --> 00:02.500\nline one\nline two\n",
        )
        .unwrap()[0];
        assert_eq!(
            turns(d),
            vec![(None, "00:01.000", "00:02.500", "line one line two")]
        );
    }

    #[test]
    fn srt_speaker_prefixes() {
        let docs = parse_srt("a.srt", fixtures::srt_with_speakers().as_bytes()).unwrap();
        assert_eq!(
            turns(&docs[0]),
            vec![
                (
                    Some("ALICE"),
                    "00:00:01,000",
                    "00:00:05,000",
                    "Hello there. How are you?"
                ),
                (
                    Some("Bob Smith"),
                    "00:00:05,000",
                    "00:00:07,000",
                    "Fine, thanks."
                ),
                (
                    None,
                    "00:00:07,000",
                    "00:00:09,000",
                    "Note the time: it is late."
                ),
            ]
        );
    }

    #[test]
    fn srt_skips_malformed_cues() {
        let srt = "1\n00:00:01,000 --> 00:00:02\nbad\n\n2\n00:00:02,000 --> 00:00:03,000\ngood\n";
        let d = &parse_srt("a.srt", srt.as_bytes()).unwrap()[0];
        assert_eq!(
            turns(d),
            vec![(None, "00:00:02,000", "00:00:03,000", "good")]
        );
    }

    #[test]
    fn long_turns_are_cut() {
        let mut srt = String::new();
        for i in 0..40 {
            srt.push_str(&format!(
                "{}\n00:00:{i:02},000 --> 00:00:{i:02},500\nAlice: {}\n\n",
                i + 1,
                "word ".repeat(20)
            ));
        }
        let d = &parse_srt("a.srt", srt.as_bytes()).unwrap()[0];
        assert!(d.sections.len() > 1);
        assert!(
            d.sections
                .iter()
                .all(|s| s.text.len() <= MAX_TURN_CHARS + 100)
        );
    }
}
