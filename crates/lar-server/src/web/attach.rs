//! Files dropped into one chat, for that chat alone (as LM Studio does): the file is read by the knowledge base's
//! connectors (PDF, DOCX, HTML, Markdown, mail, calendar, transcripts, text) into text kept with the conversation,
//! and before each answer [`context`] gives the model either every file whole, when they fit half of its context,
//! or the pieces most like the question (chunked as the knowledge base chunks, ranked by shared rare words), saying
//! which it did.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use bytes::Bytes;
use lar_rag::chunk::{ChunkConfig, chunk_documents};
use lar_rag::connectors::{self, Format, ReadOptions};
use lar_rag::doc::{Document, Location, Section, SourceKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chats::Attachment;
use crate::AppState;
use crate::catalog::DEFAULT_CTX;
use crate::error::{ApiError, ApiResult};
use crate::http::JsonBody;

/// The header an upload names its file in (percent-encoded UTF-8).
pub const NAME_HEADER: &str = "x-file-name";

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where a section is, as a line before its text (`[page 2]`).
fn label(loc: &Location) -> Option<String> {
    let p = super::documents::place(loc);
    (!p.is_empty()).then(|| format!("[{p}]"))
}

/// A file's documents as one text, each section under its place.
fn text_of(docs: &[Document]) -> String {
    let mut out = String::new();
    for d in docs {
        if let Some(t) = &d.title {
            out.push_str(&format!("# {t}\n"));
        }
        for s in &d.sections {
            if let Some(l) = label(&s.loc) {
                out.push_str(&l);
                out.push('\n');
            }
            out.push_str(s.text.trim());
            out.push_str("\n\n");
        }
    }
    out.trim_end().to_string()
}

/// `POST /ui/api/extract` (the file's bytes, its name in `x-file-name`): `{"name", "text", "chars"}`.
pub async fn extract(headers: HeaderMap, body: Bytes) -> ApiResult<Json<Value>> {
    let name = headers
        .get(NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(percent_decode)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "name the file in the {NAME_HEADER} header (percent-encoded)"
            ))
        })?;
    let format = std::path::Path::new(&name)
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name}: Lar does not read this kind of file (it reads PDF, DOCX, HTML, Markdown, text, mail, calendars, subtitles)"
            ))
        })?;
    let n = name.clone();
    let docs = tokio::task::spawn_blocking(move || {
        connectors::parse(&n, format, body.to_vec(), &ReadOptions::default())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let text = text_of(&docs);
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{name}: no text in it")));
    }
    Ok(Json(
        json!({"name": name, "chars": text.chars().count(), "text": text}),
    ))
}

/// Lower-case words of three letters or more.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect()
}

/// What the model is given for `files`: every file whole when they fit `budget` characters, else the pieces most
/// like `question` up to the budget, in their files' order. Returns (text, whole?, pieces used, pieces in all).
pub fn context(
    files: &[Attachment],
    question: &str,
    budget: usize,
) -> (String, bool, usize, usize) {
    let whole: usize = files
        .iter()
        .map(|f| f.text.chars().count() + f.name.len() + 16)
        .sum();
    if whole <= budget {
        let text = files
            .iter()
            .map(|f| format!("=== {} ===\n{}", f.name, f.text))
            .collect::<Vec<_>>()
            .join("\n\n");
        return (text, true, files.len(), files.len());
    }
    // Chunk each file as a knowledge base would (pieces of up to 200 words, smaller when the budget is, so that
    // at least five fit), then rank by shared rare words.
    let piece = (budget / 30).clamp(20, 200);
    let cfg = ChunkConfig {
        max_tokens: piece,
        overlap: piece / 10,
    };
    let count = |s: &str| s.split_whitespace().count();
    let mut pieces: Vec<(usize, String)> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let mut d = Document::new(f.name.clone(), SourceKind::Text);
        d.sections.push(Section {
            text: f.text.clone(),
            loc: Location::default(),
        });
        for c in chunk_documents(&[d], &cfg, &count) {
            pieces.push((i, c.text));
        }
    }
    let sets: Vec<HashSet<String>> = pieces
        .iter()
        .map(|(_, t)| words(t).into_iter().collect())
        .collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for s in &sets {
        for w in s {
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    let q: HashSet<String> = words(question).into_iter().collect();
    let n = pieces.len().max(1) as f64;
    let mut ranked: Vec<(f64, usize)> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let score: f64 = q
                .iter()
                .filter(|w| s.contains(*w))
                .map(|w| (n / df.get(w.as_str()).copied().unwrap_or(1) as f64).ln() + 1.0)
                .sum();
            (score, i)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut used, mut chosen) = (0usize, Vec::new());
    for (_, i) in ranked {
        let len = pieces[i].1.chars().count() + files[pieces[i].0].name.len() + 16;
        if used + len > budget {
            continue;
        }
        used += len;
        chosen.push(i);
    }
    chosen.sort_unstable();
    let text = chosen
        .iter()
        .map(|&i| {
            format!(
                "=== {} (excerpt) ===\n{}",
                files[pieces[i].0].name, pieces[i].1
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    (text, false, chosen.len(), pieces.len())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextReq {
    model: String,
    question: String,
    files: Vec<Attachment>,
}

/// `POST /ui/api/context` with `{"model", "question", "files"}`: the system text the page sends before the
/// conversation, within half of the model's context (about three characters a token).
pub async fn context_route(
    State(st): State<AppState>,
    JsonBody(obj): JsonBody,
) -> ApiResult<Json<Value>> {
    let r: ContextReq = crate::body::typed(&obj)?;
    let loaded = st
        .manager
        .loaded()
        .iter()
        .find(|m| m.entry.name == r.model || m.entry.name == format!("{}:latest", r.model))
        .map(|m| m.ctx);
    let ctx = match loaded {
        Some(c) => c,
        None => {
            let cat = st.manager.catalog().clone();
            let m = r.model.clone();
            tokio::task::spawn_blocking(move || cat.entry(&m))
                .await
                .map_err(ApiError::internal)?
                .map(|e| e.context_length.clamp(1, DEFAULT_CTX))
                .unwrap_or(DEFAULT_CTX)
        }
    };
    let budget = ctx * 3 / 2;
    let (text, whole, used, total) = context(&r.files, &r.question, budget);
    let intro = if whole {
        "The user attached these files to this conversation; answer from them when they are relevant."
    } else {
        "The user attached files to this conversation; these excerpts are the parts most related to the question."
    };
    Ok(Json(json!({
        "system": format!("{intro}\n\n{text}"),
        "whole": whole,
        "pieces": used,
        "of": total,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> Attachment {
        Attachment {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn small_files_go_whole() {
        let (t, whole, ..) = context(&[file("a.md", "alpha"), file("b.txt", "beta")], "q", 1000);
        assert!(whole);
        assert!(t.contains("=== a.md ===\nalpha") && t.contains("=== b.txt ===\nbeta"));
    }

    #[test]
    fn large_files_give_the_pieces_about_the_question() {
        let mut text = String::new();
        for i in 0..60 {
            text.push_str(&format!(
                "Paragraph {i} talks about gardening and tomatoes and the weather today.\n\n"
            ));
        }
        text.push_str("The boiler pressure must stay between one and two bar; bleed the radiators in October.\n\n");
        for i in 60..120 {
            text.push_str(&format!(
                "Paragraph {i} talks about gardening and tomatoes and the weather today.\n\n"
            ));
        }
        let (t, whole, used, total) = context(
            &[file("house.md", &text)],
            "What pressure should the boiler have?",
            900,
        );
        assert!(!whole && used >= 1 && total > used, "{used}/{total}");
        assert!(t.contains("boiler pressure"), "{t}");
        assert!(t.chars().count() <= 900, "{}", t.len());
    }

    #[test]
    fn names_are_percent_decoded() {
        assert_eq!(
            percent_decode("r%C3%A9sum%C3%A9.pdf").as_deref(),
            Some("résumé.pdf")
        );
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }
}
