//! Retrieval evaluation: for questions with the file names that answer them (`{"q": ..., "pages": [...]}` per line),
//! recall@k (the share of expected files found among the top k hits, averaged over questions) and MRR (the mean of
//! 1/rank of the first hit from an expected file, 0 when none is in the top k).

use lar_types::Embedder;
use serde::{Deserialize, Serialize};

use crate::rerank::{Judge, search_reranked};
use crate::search::{SearchOptions, search};
use crate::store::Store;
use crate::{Error, Result};

/// One question and the files (by file name, or a path suffix) that answer it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Case {
    pub q: String,
    pub pages: Vec<String>,
}

/// Reads a JSON Lines file of cases; blank lines are skipped, a malformed line is an error naming its number.
pub fn read_cases(text: &str) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let c: Case = serde_json::from_str(line)
            .map_err(|e| Error::Invalid(format!("line {}: {e}", i + 1)))?;
        if c.q.trim().is_empty() {
            return Err(Error::Invalid(format!("line {}: \"q\" is empty", i + 1)));
        }
        if c.pages.is_empty() {
            return Err(Error::Invalid(format!(
                "line {}: \"pages\" is empty",
                i + 1
            )));
        }
        out.push(c);
    }
    if out.is_empty() {
        return Err(Error::Invalid("no questions".into()));
    }
    Ok(out)
}

/// How one question went.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub q: String,
    pub expected: Vec<String>,
    /// Files of the top k hits, best first.
    pub got: Vec<String>,
    pub recall: f64,
    /// 1-based rank of the first relevant hit.
    pub first_relevant: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub k: usize,
    pub questions: usize,
    pub recall_at_k: f64,
    pub mrr: f64,
    pub cases: Vec<CaseResult>,
}

/// Whether a hit's path is the expected file: the same file name, or the path ends with the expected `a/b.md`.
fn matches(path: &str, expected: &str) -> bool {
    let p = std::path::Path::new(path);
    p.file_name()
        .is_some_and(|n| n.to_string_lossy() == expected)
        || path.ends_with(&format!("/{expected}"))
        || path == expected
}

pub fn evaluate(
    store: &dyn Store,
    embedder: &dyn Embedder,
    cases: &[Case],
    opts: &SearchOptions,
) -> Result<Report> {
    evaluate_with(store, embedder, cases, opts, None)
}

/// [`evaluate`], with the hits reranked by `judge` over the best `depth` candidates when one is given.
pub fn evaluate_with(
    store: &dyn Store,
    embedder: &dyn Embedder,
    cases: &[Case],
    opts: &SearchOptions,
    mut judge: Option<(&mut dyn Judge, usize)>,
) -> Result<Report> {
    opts.validate()?;
    let mut results = Vec::new();
    for c in cases {
        let hits = match judge.as_mut() {
            Some((j, depth)) => search_reranked(store, embedder, &c.q, opts, *j, *depth)?,
            None => search(store, embedder, &c.q, opts)?,
        };
        let got: Vec<String> = hits.iter().map(|h| h.chunk.path.clone()).collect();
        let found = c
            .pages
            .iter()
            .filter(|e| got.iter().any(|g| matches(g, e)))
            .count();
        let first = got
            .iter()
            .position(|g| c.pages.iter().any(|e| matches(g, e)))
            .map(|i| i + 1);
        results.push(CaseResult {
            q: c.q.clone(),
            expected: c.pages.clone(),
            got,
            recall: found as f64 / c.pages.len() as f64,
            first_relevant: first,
        });
    }
    let n = results.len().max(1) as f64;
    Ok(Report {
        k: opts.k,
        questions: results.len(),
        recall_at_k: results.iter().map(|r| r.recall).sum::<f64>() / n,
        mrr: results
            .iter()
            .map(|r| r.first_relevant.map_or(0.0, |k| 1.0 / k as f64))
            .sum::<f64>()
            / n,
        cases: results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_and_bad_lines_are_named() {
        let c = read_cases("{\"q\": \"a?\", \"pages\": [\"x.md\"]}\n\n").unwrap();
        assert_eq!(c[0].pages, ["x.md"]);
        let e = read_cases("{\"q\": \"a?\", \"pages\": [\"x.md\"]}\n{oops").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(read_cases("{\"q\": \"a\", \"pages\": []}").is_err());
        let e = read_cases("{\"q\": \" \", \"pages\": [\"x.md\"]}").unwrap_err();
        assert!(e.to_string().contains("line 1: \"q\" is empty"), "{e}");
    }

    #[test]
    fn file_names_match_by_name_or_suffix() {
        assert!(matches("/home/u/kb/notes/a.md", "a.md"));
        assert!(matches("/home/u/kb/notes/a.md", "notes/a.md"));
        assert!(!matches("/home/u/kb/notes/ba.md", "a.md"));
    }
}
