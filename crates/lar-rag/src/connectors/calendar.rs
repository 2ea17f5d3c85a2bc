//! Calendars (.ics, parsed by the icalendar crate): one [`SourceKind::Calendar`] document per `VEVENT`, titled by its
//! summary and dated by its start (unix seconds; an all-day event at midnight UTC), with `summary`, `start`, `end`
//! (RFC 3339, or `YYYY-MM-DD` for all-day events), `location`, `attendees`, `organizer`, `uid` (and `rrule`, `tzid`,
//! `status` when present) in the metadata. The section reads "Event: ...\nWhen: start – end\nWhere: ...\nAttendees:
//! ...\n\nDESCRIPTION". Times with a `TZID` are kept as local times (no offset: there is no time-zone database here)
//! and dated as if they were UTC. A date that does not exist (`20241345T990000`) leaves the event undated with the raw
//! value in `start`; an event the parser cannot read is skipped; neither fails the file.

use icalendar::parser::{Component, Property, read_calendar, unfold};

use crate::doc::{Location, Section, SourceKind};
use crate::time::{days_from_civil, days_in_month};
use crate::{Document, Error, Result};

/// Parses an iCalendar file into one document per event.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let text = super::text::decode(name, bytes)?;
    let unfolded = unfold(text);
    let mut docs = Vec::new();
    match parse_calendar(&unfolded, name, &mut docs) {
        Ok(()) => {}
        Err(e) => {
            // One bad line fails the whole parse: read the events one by one instead, keeping those that parse.
            for block in event_blocks(&unfolded) {
                let _ = parse_calendar(&block, name, &mut docs);
            }
            if docs.is_empty() {
                let first = e
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim();
                let what = if unfolded.contains("BEGIN:VEVENT") {
                    "no event could be parsed"
                } else {
                    "not an iCalendar file"
                };
                return Err(Error::unreadable(name, format!("{what} ({first})")));
            }
        }
    }
    Ok(docs)
}

/// Parses `text` and appends its events; a panic inside the parser is an error like any other.
fn parse_calendar(
    text: &str,
    name: &str,
    docs: &mut Vec<Document>,
) -> std::result::Result<(), String> {
    let found = std::panic::catch_unwind(|| {
        let cal = read_calendar(text)?;
        let mut found = Vec::new();
        for c in &cal.components {
            collect_events(c, name, &mut found, 0);
        }
        Ok::<_, String>(found)
    })
    .map_err(|_| "the calendar parser failed".to_string())??;
    docs.extend(found);
    Ok(())
}

fn collect_events(c: &Component<'_>, name: &str, out: &mut Vec<Document>, depth: usize) {
    if c.name.as_str().eq_ignore_ascii_case("VEVENT") {
        out.push(event_document(c, name));
    } else if depth < 8 {
        for child in &c.components {
            collect_events(child, name, out, depth + 1);
        }
    }
}

/// Each `BEGIN:VEVENT` .. `END:VEVENT` block of an unfolded calendar.
fn event_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let l = line.trim_end_matches('\r');
        if l.eq_ignore_ascii_case("BEGIN:VEVENT") {
            current = Some(String::new());
        }
        if let Some(b) = current.as_mut() {
            b.push_str(l);
            b.push_str("\r\n");
        }
        if l.eq_ignore_ascii_case("END:VEVENT")
            && let Some(b) = current.take()
        {
            blocks.push(b);
        }
    }
    blocks
}

fn prop<'a>(c: &'a Component<'a>, key: &str) -> Option<&'a Property<'a>> {
    c.properties
        .iter()
        .find(|p| p.name.as_str().eq_ignore_ascii_case(key))
}

fn param(p: &Property<'_>, key: &str) -> Option<String> {
    p.params
        .iter()
        .find(|x| x.key.as_str().eq_ignore_ascii_case(key))
        .and_then(|x| x.val.as_ref())
        .map(|v| v.as_str().trim_matches('"').to_string())
}

/// A TEXT value, unescaped (`\,` `\;` `\n` `\\`).
fn text_value(p: &Property<'_>) -> String {
    p.val.clone().unescape_text().as_str().trim().to_string()
}

/// "Name <address>" of an ATTENDEE or ORGANIZER, `mailto:` dropped.
fn person(p: &Property<'_>) -> String {
    let v = p.val.as_str().trim();
    // `get`: byte 7 of a non-ASCII value may fall inside a character.
    let email = match v.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("mailto:") => &v[7..],
        _ => v,
    };
    match param(p, "CN").filter(|n| !n.is_empty()) {
        Some(cn) if !email.is_empty() => format!("{cn} <{email}>"),
        Some(cn) => cn,
        None => email.to_string(),
    }
}

fn event_document(c: &Component<'_>, name: &str) -> Document {
    let mut doc = Document::new(name, SourceKind::Calendar);
    let summary = prop(c, "SUMMARY").map(text_value).filter(|s| !s.is_empty());
    let start = prop(c, "DTSTART").map(when);
    let end = prop(c, "DTEND").map(when);
    let location = prop(c, "LOCATION")
        .map(text_value)
        .filter(|s| !s.is_empty());
    let description = prop(c, "DESCRIPTION").map(text_value).unwrap_or_default();
    let attendees: Vec<String> = c
        .properties
        .iter()
        .filter(|p| p.name.as_str().eq_ignore_ascii_case("ATTENDEE"))
        .map(person)
        .filter(|s| !s.is_empty())
        .collect();
    let organizer = prop(c, "ORGANIZER").map(person).filter(|s| !s.is_empty());

    doc.title = summary.clone();
    doc.date = start.as_ref().and_then(|s| s.unix);
    let meta = &mut doc.meta;
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            meta.insert(k.to_string(), v);
        }
    };
    put("summary", summary.clone());
    put("start", start.as_ref().map(|s| s.text.clone()));
    put("end", end.as_ref().map(|s| s.text.clone()));
    put("tzid", start.as_ref().and_then(|s| s.tzid.clone()));
    put("location", location.clone());
    put("attendees", Some(attendees.join(", ")));
    put("organizer", organizer);
    for (key, prop_name) in [("uid", "UID"), ("rrule", "RRULE"), ("status", "STATUS")] {
        put(
            key,
            prop(c, prop_name).map(|p| p.val.as_str().trim().to_string()),
        );
    }

    let mut text = format!("Event: {}\n", summary.as_deref().unwrap_or("(no title)"));
    match (&start, &end) {
        (Some(s), Some(e)) => text.push_str(&format!("When: {} – {}\n", s.text, e.text)),
        (Some(s), None) => text.push_str(&format!("When: {}\n", s.text)),
        _ => {}
    }
    if let Some(l) = &location {
        text.push_str(&format!("Where: {l}\n"));
    }
    if !attendees.is_empty() {
        text.push_str(&format!("Attendees: {}\n", attendees.join(", ")));
    }
    if !description.is_empty() {
        text.push('\n');
        text.push_str(&description);
    }
    doc.sections.push(Section {
        text: text.trim_end().to_string(),
        loc: Location::default(),
    });
    doc
}

/// A DTSTART/DTEND value as written for people, and as unix seconds when it is a real date.
struct When {
    text: String,
    unix: Option<i64>,
    tzid: Option<String>,
}

fn when(p: &Property<'_>) -> When {
    let raw = p.val.as_str().trim();
    let tzid = param(p, "TZID");
    match parse_datetime(raw) {
        Some(dt) => When {
            text: dt.text,
            unix: Some(dt.unix),
            tzid,
        },
        None => When {
            text: raw.to_string(),
            unix: None,
            tzid,
        },
    }
}

struct DateTime {
    text: String,
    unix: i64,
}

/// `YYYYMMDD` (all-day), `YYYYMMDDTHHMMSS` (local) or `YYYYMMDDTHHMMSSZ` (UTC); None for anything else or for a date
/// that does not exist.
fn parse_datetime(v: &str) -> Option<DateTime> {
    if !v.is_ascii() {
        return None; // and so every slice below is on a character boundary
    }
    let digits = |s: &str| -> Option<i64> {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (date, time) = match v.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    if date.len() != 8 {
        return None;
    }
    let (y, m, d) = (
        digits(&date[..4])?,
        digits(&date[4..6])?,
        digits(&date[6..])?,
    );
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let Some(time) = time else {
        return Some(DateTime {
            text: format!("{y:04}-{m:02}-{d:02}"),
            unix: days * 86_400,
        });
    };
    let (time, utc) = match time.strip_suffix(['Z', 'z']) {
        Some(t) => (t, true),
        None => (time, false),
    };
    if time.len() != 6 {
        return None;
    }
    let (hh, mm, ss) = (
        digits(&time[..2])?,
        digits(&time[2..4])?,
        digits(&time[4..])?,
    );
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let zone = if utc { "Z" } else { "" };
    Some(DateTime {
        text: format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{zone}"),
        unix: days * 86_400 + hh * 3600 + mm * 60 + ss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_testdata::fixtures;

    #[test]
    fn events_with_metadata_and_an_invalid_date() {
        let docs = parse("cal.ics", fixtures::ics_with_invalid_date().as_bytes()).unwrap();
        assert_eq!(docs.len(), 3);
        let a = &docs[0];
        assert_eq!(a.kind, SourceKind::Calendar);
        assert_eq!(a.title.as_deref(), Some("Budget review, Q1"));
        assert_eq!(a.date, Some(1_710_493_200)); // 2024-03-15T09:00:00Z
        let m = |d: &Document, k: &str| d.meta.get(k).cloned().unwrap_or_default();
        assert_eq!(m(a, "start"), "2024-03-15T09:00:00Z");
        assert_eq!(m(a, "end"), "2024-03-15T10:00:00Z");
        assert_eq!(m(a, "location"), "Room 4");
        assert_eq!(
            m(a, "attendees"),
            "Bob <bob@example.com>, carol@example.com"
        );
        assert_eq!(m(a, "organizer"), "Alice Example <alice@example.com>");
        assert_eq!(m(a, "uid"), "ev1@example.com");
        assert_eq!(
            a.sections[0].text,
            "Event: Budget review, Q1\nWhen: 2024-03-15T09:00:00Z – 2024-03-15T10:00:00Z\nWhere: Room 4\n\
             Attendees: Bob <bob@example.com>, carol@example.com\n\nBring the numbers.\nAnd the coffee for everyone."
        );

        let b = &docs[1];
        assert_eq!(b.title.as_deref(), Some("Broken date"));
        assert_eq!(b.date, None);
        assert_eq!(m(b, "start"), "20241345T990000");

        let c = &docs[2];
        assert_eq!(m(c, "start"), "2024-04-01");
        assert_eq!(c.date, Some(1_711_929_600)); // 2024-04-01T00:00:00Z
    }

    #[test]
    fn one_unparsable_event_does_not_lose_the_others() {
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Kept\r\nDTSTART:20240102\r\nEND:VEVENT\r\n\
                   BEGIN:VEVENT\r\nthis line is not a property\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let docs = parse("c.ics", ics.as_bytes()).unwrap();
        assert!(
            docs.iter().any(|d| d.title.as_deref() == Some("Kept")),
            "{docs:#?}"
        );
    }

    #[test]
    fn non_ascii_attendee_without_mailto_is_kept() {
        // Byte 7 of "ññññ@x.es" is inside a character: slicing there used to panic and lose the event.
        let ics = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Cena\r\nDTSTART:20240102\r\n\
                   ATTENDEE:ññññ@x.es\r\nATTENDEE;CN=Zoë:MAILTO:zoe@x.es\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let docs = parse("c.ics", ics.as_bytes()).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(
            docs[0].meta.get("attendees").map(String::as_str),
            Some("ññññ@x.es, Zoë <zoe@x.es>")
        );
    }

    #[test]
    fn not_a_calendar() {
        assert!(matches!(
            parse("c.ics", b"hello world"),
            Err(Error::Unreadable { .. })
        ));
    }

    #[test]
    fn dates() {
        assert!(parse_datetime("20240229").is_some());
        assert!(parse_datetime("20230229").is_none());
        assert!(parse_datetime("20241345T990000").is_none());
        assert!(parse_datetime("2024-01-01").is_none());
        assert_eq!(parse_datetime("19700101T000001Z").unwrap().unix, 1);
        assert_eq!(
            parse_datetime("20240315T090000").unwrap().text,
            "2024-03-15T09:00:00"
        );
    }
}
