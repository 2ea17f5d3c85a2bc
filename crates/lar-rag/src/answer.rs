//! Grounded answers. [`sources_for`] keeps the hits that are relevant enough to answer from; [`build_prompt`] numbers
//! them `[1]`, `[2]`... in a prompt that tells the model to answer only from them and cite them; [`ask`] runs the
//! whole thing through a [`Generator`] and returns the answer with its numbered sources, or says it does not know
//! (without calling the model) when retrieval found nothing relevant. This is the API the CLI's `lar ask` and the
//! server's routes share.

use lar_types::{ChatMessage, Embedder, Generator, Role, SamplingParams};
use serde::Serialize;

use crate::search::{Hit, SearchOptions, search};
use crate::store::Store;
use crate::{Location, SourceKind};

/// What an answer says when retrieval found nothing relevant.
pub const DONT_KNOW: &str = "I don't know: nothing in the knowledge base answers that.";

/// A numbered source of an answer: where it is, and the text the model saw.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Source {
    pub n: usize,
    pub path: String,
    pub kind: SourceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub loc: Location,
    /// Mail: the message id and subject; calendar: the event's summary and start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub score: f32,
    pub text: String,
}

impl Source {
    /// Source number `n` made of a search hit: its place, and for mail and events the message or event it is.
    pub fn from_hit(n: usize, h: &Hit) -> Source {
        let c = &h.chunk;
        let (message_id, event, date) = match c.kind {
            SourceKind::Mail => (
                c.meta.get("message_id").cloned(),
                None,
                c.meta.get("date").cloned(),
            ),
            SourceKind::Calendar => (
                None,
                c.meta.get("summary").cloned().or(c.title.clone()),
                c.meta.get("start").cloned(),
            ),
            _ => (None, None, None),
        };
        Source {
            n,
            path: c.path.clone(),
            kind: c.kind,
            title: c.title.clone(),
            loc: c.loc.clone(),
            message_id,
            event,
            date,
            score: h.score,
            text: c.text.clone(),
        }
    }

    /// `path` plus the most precise location there is: page, heading, message, event or cue.
    pub fn cite(&self) -> String {
        let mut s = self.path.clone();
        let mut add = |k: &str, v: &str| {
            s.push_str(&format!(", {k} {v}"));
        };
        if let Some(p) = self.loc.page {
            add("page", &p.to_string());
        }
        if let Some(h) = &self.loc.heading {
            add("section", &format!("\"{h}\""));
        }
        if let Some(m) = &self.message_id {
            let subj = self.title.as_deref().unwrap_or("");
            add("message", &format!("\"{subj}\" <{m}>"));
        }
        if let Some(e) = &self.event {
            add("event", &format!("\"{e}\""));
        }
        if let Some(d) = &self.date {
            add("on", d);
        }
        if let (Some(a), Some(b)) = (&self.loc.start, &self.loc.end) {
            add("at", &format!("{a}-{b}"));
        }
        if let Some(sp) = &self.loc.speaker {
            add("speaker", sp);
        }
        s
    }
}

/// How relevant a hit must be to answer from, and how much source text to put in a prompt.
#[derive(Clone, Debug)]
pub struct AskOptions {
    pub search: SearchOptions,
    /// A hit is relevant when its cosine similarity to the question is at least this, or when it is also among the
    /// top 3 of the full-text side and its similarity is at least `min_similarity_both`. (all-MiniLM-L6-v2 on the
    /// test corpus: answering chunks 0.36-0.77, the best chunk for unrelated questions 0.12-0.24.)
    pub min_similarity: f32,
    pub min_similarity_both: f32,
    /// Tokens of the context kept for the answer itself.
    pub answer_tokens: usize,
    pub params: SamplingParams,
}

impl Default for AskOptions {
    fn default() -> Self {
        AskOptions {
            search: SearchOptions::default(),
            min_similarity: 0.3,
            min_similarity_both: 0.25,
            answer_tokens: 384,
            params: SamplingParams {
                temperature: 0.0,
                max_tokens: 384,
                ..SamplingParams::default()
            },
        }
    }
}

/// An answer with its sources; `cited` lists the source numbers the answer refers to.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub answer: String,
    pub sources: Vec<Source>,
    pub cited: Vec<usize>,
    /// True when the model wrote no citation and Lar added them, each sentence to the source sharing most words.
    pub attributed: bool,
    /// False when nothing relevant was found and the answer is [`DONT_KNOW`].
    pub grounded: bool,
}

/// The relevant hits of a search, numbered from 1.
pub fn sources_for(hits: &[Hit], opts: &AskOptions) -> Vec<Source> {
    hits.iter()
        .filter(|h| {
            let sim = h.similarity.unwrap_or(0.0);
            sim >= opts.min_similarity
                || (h.text_rank.is_some_and(|r| r <= 3) && sim >= opts.min_similarity_both)
        })
        .enumerate()
        .map(|(i, h)| Source::from_hit(i + 1, h))
        .collect()
}

/// The chat messages of a grounded question: a system message with the rules and the numbered sources, then the
/// question. Sources are added best first while they fit in `budget` tokens (by `count`); the ones kept are returned.
pub fn build_prompt(
    question: &str,
    sources: &[Source],
    budget: usize,
    count: &dyn Fn(&str) -> usize,
) -> (Vec<ChatMessage>, Vec<Source>) {
    let rules = "Answer the question using only the numbered sources below, in one or two sentences. After each \
                 sentence, put the number of its source in brackets, as [1]. If the sources do not contain the \
                 answer, say you don't know.";
    let mut system = format!("{rules}\n\nSources:\n");
    let mut used = Vec::new();
    let fixed = count(&system) + count(question) + 32;
    let mut total = fixed;
    for s in sources {
        // The file name, not the whole path: less for a small model to copy instead of answering.
        let name = std::path::Path::new(&s.path)
            .file_name()
            .map_or(s.path.clone(), |n| n.to_string_lossy().to_string());
        let block = format!("[{}] ({name})\n{}\n\n", used.len() + 1, s.text.trim());
        let t = count(&block);
        if total + t > budget && !used.is_empty() {
            break;
        }
        total += t;
        system.push_str(&block);
        let mut s = s.clone();
        s.n = used.len() + 1;
        used.push(s);
    }
    let msgs = vec![
        ChatMessage::new(Role::System, system.trim_end().to_string()),
        ChatMessage::new(Role::User, question.to_string()),
    ];
    (msgs, used)
}

/// The distinct source numbers `[n]` (also `[1, 2]` and `[1][2]`) an answer cites, in order of first mention; numbers
/// outside `1..=n_sources` are left out.
pub fn citations(answer: &str, n_sources: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else { break };
        for part in after[..close].split(',') {
            if let Ok(n) = part.trim().parse::<usize>()
                && (1..=n_sources).contains(&n)
                && !out.contains(&n)
            {
                out.push(n);
            }
        }
        rest = &after[close..];
    }
    out
}

/// Appends `[n]` to each sentence of `answer` that shares at least two words of four letters or more (folded) with a
/// source, choosing the source that shares the most; returns the new text and the sources cited, in order.
pub fn attribute(answer: &str, sources: &[Source]) -> (String, Vec<usize>) {
    let words = |t: &str| -> std::collections::HashSet<String> {
        crate::fold::terms(t)
            .into_iter()
            .filter(|w| w.chars().count() >= 4 || w.chars().any(|c| c.is_ascii_digit()))
            .collect()
    };
    let src: Vec<_> = sources.iter().map(|s| words(&s.text)).collect();
    let mut out = String::new();
    let mut cited = Vec::new();
    for sentence in answer.split_inclusive(['.', '!', '?', '\n']) {
        let w = words(sentence);
        let best = src
            .iter()
            .enumerate()
            .map(|(i, s)| (w.intersection(s).count(), i))
            .filter(|(n, _)| *n >= 2)
            .max_by_key(|(n, i)| (*n, std::cmp::Reverse(*i)));
        match best {
            Some((_, i)) => {
                let n = sources[i].n;
                let body = sentence.trim_end();
                let (text, end) = match body.char_indices().last() {
                    Some((at, '.' | '!' | '?')) => (&body[..at], &body[at..]),
                    _ => (body, ""),
                };
                out.push_str(&format!("{text} [{n}]{end}{}", &sentence[body.len()..]));
                if !cited.contains(&n) {
                    cited.push(n);
                }
            }
            None => out.push_str(sentence),
        }
    }
    (out, cited)
}

/// The relevant sources for `question`, numbered from 1 (empty: nothing in the knowledge base answers it).
pub fn retrieve(
    store: &dyn Store,
    embedder: &dyn Embedder,
    question: &str,
    opts: &AskOptions,
) -> crate::Result<Vec<Source>> {
    let hits = search(store, embedder, question, &opts.search)?;
    Ok(sources_for(&hits, opts))
}

/// The answer from already retrieved `sources`: "I don't know" without generating when there are none, else the
/// grounded prompt through `generator`; `on_text` sees the answer as it streams.
pub fn answer_from(
    generator: Option<&mut dyn Generator>,
    question: &str,
    sources: Vec<Source>,
    opts: &AskOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> crate::Result<Answer> {
    let Some(generator) = generator.filter(|_| !sources.is_empty()) else {
        return Ok(Answer {
            answer: DONT_KNOW.to_string(),
            sources: Vec::new(),
            cited: Vec::new(),
            attributed: false,
            grounded: false,
        });
    };
    let budget = generator
        .context_tokens()
        .saturating_sub(opts.answer_tokens.min(opts.params.max_tokens));
    let (msgs, sources) = {
        let g = &*generator;
        build_prompt(question, &sources, budget, &|s| g.count_tokens(s))
    };
    let answer = generator
        .chat(&msgs, &opts.params, on_text)
        .map_err(|e| crate::Error::Invalid(format!("generation failed: {e}")))?;
    let mut answer = answer.trim().to_string();
    let mut cited = citations(&answer, sources.len());
    let attributed = cited.is_empty();
    if attributed {
        // The model cited nothing (small models often do not): attribute each sentence to the source it shares
        // the most words with, and say so in `attributed`.
        (answer, cited) = attribute(&answer, &sources);
    }
    Ok(Answer {
        answer,
        sources,
        cited,
        attributed,
        grounded: true,
    })
}

/// [`retrieve`] then [`answer_from`]: the whole question-to-answer path the CLI and the server share.
pub fn ask(
    store: &dyn Store,
    embedder: &dyn Embedder,
    generator: &mut dyn Generator,
    question: &str,
    opts: &AskOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> crate::Result<Answer> {
    let sources = retrieve(store, embedder, question, opts)?;
    answer_from(Some(generator), question, sources, opts, on_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_are_parsed_and_bounded() {
        assert_eq!(citations("A [2]. B [1, 3][2] c [9] [x]", 3), [2, 1, 3]);
        assert_eq!(citations("no refs", 3), Vec::<usize>::new());
        assert_eq!(citations("[1", 3), Vec::<usize>::new());
    }

    fn source(n: usize, text: &str) -> Source {
        Source {
            n,
            path: format!("/kb/{n}.md"),
            kind: SourceKind::Markdown,
            title: None,
            loc: Location {
                heading: Some("H".into()),
                ..Default::default()
            },
            message_id: None,
            event: None,
            date: None,
            score: 0.1,
            text: text.into(),
        }
    }

    #[test]
    fn prompt_numbers_sources_and_respects_the_budget() {
        let words = |s: &str| s.split_whitespace().count();
        let srcs: Vec<Source> = (1..=5).map(|i| source(i, &"word ".repeat(40))).collect();
        let (msgs, used) = build_prompt("What?", &srcs, 150, &words);
        assert!(!used.is_empty() && used.len() < 5, "{}", used.len());
        assert!(msgs[0].content.contains("[1] (1.md)\nword word"));
        assert!(!msgs[0].content.contains(&format!("[{}]", used.len() + 1)));
        assert_eq!(msgs[1].content, "What?");
    }

    #[test]
    fn unattributed_sentences_get_the_source_sharing_most_words() {
        let srcs = vec![
            source(1, "The guest wifi network is called casa-guest."),
            source(2, "The monthly rent is 1,250 euros, due on the fifth."),
        ];
        let (text, cited) = attribute("The rent is 1,250 euros a month. Hello there!", &srcs);
        assert_eq!(text, "The rent is 1,250 euros a month [2]. Hello there!");
        assert_eq!(cited, [2]);
        let (text, cited) = attribute("Guest network: casa-guest\nok", &srcs);
        assert_eq!(text, "Guest network: casa-guest [1]\nok");
        assert_eq!(cited, [1]);
    }

    #[test]
    fn cite_names_page_message_and_event() {
        let mut s = source(1, "t");
        s.loc = Location {
            page: Some(3),
            ..Default::default()
        };
        assert_eq!(s.cite(), "/kb/1.md, page 3");
        s.loc = Location::default();
        s.message_id = Some("a@b".into());
        s.title = Some("Budget".into());
        assert_eq!(s.cite(), "/kb/1.md, message \"Budget\" <a@b>");
    }
}
