//! E-mail: single messages (.eml, Maildir files) and mailboxes (.mbox, one document per message), parsed by
//! mail-parser. Each message becomes a [`SourceKind::Mail`] document titled by its subject, dated by its `Date`
//! (unix seconds; an unreadable date is left out, not an error), with the lower-case `From` address as sender and
//! `from`, `to`, `cc`, `date` (RFC 3339), `subject`, `message_id`, `in_reply_to`, `thread` (the root message id: the
//! first of `References`, else `In-Reply-To`, else its own id) and `attachments` (file names) in the metadata. The
//! body is the text/plain part, else the HTML part made text; attachments are not read. The one section starts with
//! "Subject: ...\nFrom: ...\nDate: ...\n\n" so headers are searchable too. In an mbox, a message that does not parse
//! (no headers, junk) is skipped and the others kept; only a file where nothing parses is [`Error::Unreadable`].

use mail_parser::mailbox::mbox::MessageIterator;
use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};

use super::html::html_to_text;
use super::tidy;
use crate::doc::{Location, Section, SourceKind};
use crate::{Document, Error, Result};

/// Parses one message (.eml or a Maildir file).
pub fn parse_eml(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    message_document(name, bytes)
        .map(|d| vec![d])
        .ok_or_else(|| Error::unreadable(name, "not an e-mail message (no headers found)"))
}

/// Parses an mbox: one document per message that parses; the others are skipped (and logged).
pub fn parse_mbox(name: &str, bytes: &[u8]) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    let mut skipped = 0usize;
    for (i, message) in MessageIterator::new(std::io::Cursor::new(bytes)).enumerate() {
        match message
            .ok()
            .and_then(|m| message_document(name, m.contents()))
        {
            Some(doc) => docs.push(doc),
            None => {
                skipped += 1;
                tracing::warn!(
                    file = name,
                    message = i + 1,
                    "skipping a message that does not parse"
                );
            }
        }
    }
    if docs.is_empty() {
        let reason = if skipped == 0 {
            "not an mbox (no \"From \" separator lines)".to_string()
        } else {
            format!("none of the {skipped} messages could be parsed")
        };
        return Err(Error::unreadable(name, reason));
    }
    Ok(docs)
}

/// The document of one raw message, or None when it does not parse as one (a panic in the parser counts too).
fn message_document(name: &str, raw: &[u8]) -> Option<Document> {
    std::panic::catch_unwind(|| {
        let message = MessageParser::default().parse(raw)?;
        build(name, &message)
    })
    .ok()
    .flatten()
}

fn build(name: &str, m: &Message<'_>) -> Option<Document> {
    let subject = m
        .subject()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let from = m.from().map(addresses).filter(|s| !s.is_empty());
    let message_id = m.message_id().map(str::to_string);
    let date = m.date().filter(|d| d.is_valid());
    let body = body_text(m);
    // Junk that happens to parse has none of what makes a message.
    if subject.is_none() && from.is_none() && message_id.is_none() && date.is_none() {
        return None;
    }

    let mut doc = Document::new(name, SourceKind::Mail);
    doc.title = subject.clone();
    doc.sender = m
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase());
    doc.date = date.map(|d| d.to_timestamp());
    let meta = &mut doc.meta;
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            meta.insert(k.to_string(), v);
        }
    };
    put("from", from.clone());
    put("to", m.to().map(addresses));
    put("cc", m.cc().map(addresses));
    put("date", date.map(|d| d.to_rfc3339()));
    put("subject", subject.clone());
    put("message_id", message_id.clone());
    let in_reply_to = first_id(m.in_reply_to());
    let thread = first_id(m.references())
        .or_else(|| in_reply_to.clone())
        .or(message_id);
    put("in_reply_to", in_reply_to);
    put("thread", thread);
    let attachments: Vec<&str> = m
        .attachments()
        .filter_map(|a| a.attachment_name())
        .collect();
    put("attachments", Some(attachments.join(", ")));

    let mut text = String::new();
    if let Some(s) = &subject {
        text.push_str(&format!("Subject: {s}\n"));
    }
    if let Some(f) = &from {
        text.push_str(&format!("From: {f}\n"));
    }
    match (date, m.header_raw("Date")) {
        (Some(d), _) => text.push_str(&format!("Date: {}\n", d.to_rfc3339())),
        (None, Some(raw)) if !raw.trim().is_empty() => {
            text.push_str(&format!("Date: {}\n", raw.trim()))
        }
        _ => {}
    }
    text.push('\n');
    text.push_str(&body);
    doc.sections.push(Section {
        text: text.trim().to_string(),
        loc: Location::default(),
    });
    Some(doc)
}

/// "Name <address>, address" for an address header.
fn addresses(a: &Address<'_>) -> String {
    a.iter()
        .filter_map(|addr| {
            let email = addr.address().map(str::trim).filter(|s| !s.is_empty());
            let name = addr.name().map(str::trim).filter(|s| !s.is_empty());
            match (name, email) {
                (Some(n), Some(e)) => Some(format!("{n} <{e}>")),
                (None, Some(e)) => Some(e.to_string()),
                (Some(n), None) => Some(n.to_string()),
                (None, None) => None,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first message id of an `In-Reply-To` or `References` header.
fn first_id(h: &HeaderValue<'_>) -> Option<String> {
    match h {
        HeaderValue::Text(t) => Some(t.to_string()),
        HeaderValue::TextList(l) => l.first().map(|t| t.to_string()),
        _ => None,
    }
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// The text/plain parts of the body, else its HTML parts as text.
fn body_text(m: &Message<'_>) -> String {
    let plain: Vec<&str> = m
        .text_bodies()
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .collect();
    if !plain.is_empty() {
        return tidy(&plain.join("\n\n"));
    }
    let html: Vec<String> = m
        .html_bodies()
        .filter_map(|p| match &p.body {
            PartType::Html(h) => Some(html_to_text(h)),
            _ => None,
        })
        .collect();
    tidy(&html.join("\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lar_testdata::fixtures;

    #[test]
    fn mbox_keeps_good_messages_around_a_broken_one() {
        let docs = parse_mbox("box.mbox", &fixtures::mbox_with_broken_message()).unwrap();
        assert_eq!(docs.len(), 3, "{docs:#?}");

        let a = &docs[0];
        assert_eq!(a.kind, SourceKind::Mail);
        assert_eq!(a.title.as_deref(), Some("Quarterly budget"));
        assert_eq!(a.sender.as_deref(), Some("alice@example.com"));
        assert_eq!(a.date, Some(1_704_099_600)); // 2024-01-01T09:00:00Z
        let meta = |d: &Document, k: &str| d.meta.get(k).cloned();
        assert_eq!(
            meta(a, "from").as_deref(),
            Some("Alice Example <Alice@Example.com>")
        );
        assert_eq!(
            meta(a, "to").as_deref(),
            Some("Bob <bob@example.com>, carol@example.com")
        );
        assert_eq!(meta(a, "cc").as_deref(), Some("Dan <dan@example.com>"));
        assert_eq!(
            meta(a, "date").as_deref(),
            Some("2024-01-01T10:00:00+01:00")
        );
        assert_eq!(meta(a, "message_id").as_deref(), Some("root@example.com"));
        assert_eq!(meta(a, "thread").as_deref(), Some("root@example.com"));
        assert_eq!(
            a.sections[0].text,
            "Subject: Quarterly budget\nFrom: Alice Example <Alice@Example.com>\nDate: 2024-01-01T10:00:00+01:00\n\n\
             The budget for Q1 is 42k.\nFrom the archive: unchanged."
        );

        let b = &docs[1];
        assert_eq!(b.sender.as_deref(), Some("bob@example.com"));
        assert_eq!(meta(b, "in_reply_to").as_deref(), Some("root@example.com"));
        assert_eq!(meta(b, "thread").as_deref(), Some("root@example.com"));
        assert_eq!(meta(b, "attachments").as_deref(), Some("budget.pdf"));
        assert!(
            b.sections[0].text.ends_with("\n\nLooks fine to me."),
            "{}",
            b.sections[0].text
        );

        let c = &docs[2];
        assert_eq!(c.date, None);
        assert_eq!(meta(c, "date"), None);
        assert_eq!(meta(c, "thread").as_deref(), Some("root@example.com"));
        assert!(
            c.sections[0].text.contains("Date: yesterday-ish\n"),
            "{}",
            c.sections[0].text
        );
    }

    #[test]
    fn eml_without_references_threads_on_itself() {
        let eml = b"From: Zoe <ZOE@Example.org>\r\nSubject: Hello\r\nMessage-ID: <z1@example.org>\r\n\r\nHi.\r\n";
        let d = &parse_eml("m.eml", eml).unwrap()[0];
        assert_eq!(d.sender.as_deref(), Some("zoe@example.org"));
        assert_eq!(
            d.meta.get("thread").map(String::as_str),
            Some("z1@example.org")
        );
        assert_eq!(
            d.sections[0].text,
            "Subject: Hello\nFrom: Zoe <ZOE@Example.org>\n\nHi."
        );
    }

    #[test]
    fn junk_is_no_mail() {
        assert!(matches!(
            parse_eml("x.eml", b"\x00\x01\x02"),
            Err(Error::Unreadable { .. })
        ));
        assert!(matches!(
            parse_mbox("x.mbox", b"just text\n"),
            Err(Error::Unreadable { .. })
        ));
        let only_junk = b"From x Mon Jan  1 00:00:00 2024\n\x00\x01\n";
        let err = parse_mbox("x.mbox", only_junk).unwrap_err();
        assert!(err.to_string().contains("none of the 1 messages"), "{err}");
    }
}
