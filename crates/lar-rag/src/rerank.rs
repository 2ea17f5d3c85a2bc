//! An optional second stage of retrieval: the best hits of the hybrid search are each judged for relevance to the
//! question by a [`Judge`] (the chat model, asked whether the passage helps answer it: the probability of "yes"),
//! then ordered by that judgement, the fused order breaking ties. It costs one short prompt per candidate, so it is
//! off by default (`lar kb search|eval --rerank MODEL`); it helps most where the embedder does not know the
//! language and the words of the question are not the passage's.

use lar_types::Embedder;

use crate::search::{Hit, SearchOptions, search};
use crate::store::Store;
use crate::{Error, Result};

/// Judges how well a passage answers a question.
pub trait Judge {
    /// In [0, 1]: how likely `passage` helps answer `question`.
    fn relevance(
        &mut self,
        question: &str,
        passage: &str,
    ) -> std::result::Result<f32, Box<dyn std::error::Error + Send + Sync>>;
}

/// Candidates judged when none is said: the fused list's best 10.
pub const DEFAULT_DEPTH: usize = 10;

/// Longest passage shown to the judge, in characters (a chunk is a few hundred tokens; this bounds the cost).
const MAX_PASSAGE: usize = 2000;

/// Judges `hits` (best first) and orders them by relevance, the earlier hit first among equals.
pub fn rerank(hits: Vec<Hit>, question: &str, judge: &mut dyn Judge) -> Result<Vec<Hit>> {
    let mut judged = Vec::with_capacity(hits.len());
    for (i, mut h) in hits.into_iter().enumerate() {
        let passage: String = h.chunk.text.chars().take(MAX_PASSAGE).collect();
        let r = judge
            .relevance(question, &passage)
            .map_err(|e| Error::Invalid(format!("reranking failed: {e}")))?;
        if !(0.0..=1.0).contains(&r) {
            return Err(Error::Invalid(format!(
                "reranking failed: relevance {r} is outside [0, 1]"
            )));
        }
        h.relevance = Some(r);
        judged.push((i, h));
    }
    judged.sort_by(|(ia, a), (ib, b)| {
        b.relevance
            .unwrap_or(0.0)
            .total_cmp(&a.relevance.unwrap_or(0.0))
            .then(ia.cmp(ib))
    });
    Ok(judged.into_iter().map(|(_, h)| h).collect())
}

/// The hybrid search for the best `depth` candidates (at least `opts.k`), judged and reordered; at most `opts.k`.
pub fn search_reranked(
    store: &dyn Store,
    embedder: &dyn Embedder,
    query: &str,
    opts: &SearchOptions,
    judge: &mut dyn Judge,
    depth: usize,
) -> Result<Vec<Hit>> {
    let wide = SearchOptions {
        k: depth.max(opts.k),
        ..opts.clone()
    };
    let mut hits = rerank(search(store, embedder, query, &wide)?, query, judge)?;
    hits.truncate(opts.k);
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chunk, Location, Meta, SourceKind};

    fn hit(id: i64, text: &str) -> Hit {
        Hit {
            id,
            score: 1.0 / id as f32,
            text_rank: None,
            vector_rank: None,
            similarity: None,
            relevance: None,
            chunk: Chunk {
                path: format!("/{id}.md"),
                kind: SourceKind::Markdown,
                title: None,
                date: None,
                sender: None,
                meta: Meta::new(),
                loc: Location::default(),
                ord: 0,
                text: text.into(),
            },
        }
    }

    /// Relevance: the share of the question's words in the passage.
    struct Overlap;

    impl Judge for Overlap {
        fn relevance(
            &mut self,
            q: &str,
            p: &str,
        ) -> std::result::Result<f32, Box<dyn std::error::Error + Send + Sync>> {
            let words: Vec<&str> = q.split_whitespace().collect();
            let n = words.iter().filter(|w| p.contains(*w)).count();
            Ok(n as f32 / words.len().max(1) as f32)
        }
    }

    struct Broken;

    impl Judge for Broken {
        fn relevance(
            &mut self,
            _: &str,
            _: &str,
        ) -> std::result::Result<f32, Box<dyn std::error::Error + Send + Sync>> {
            Ok(f32::NAN)
        }
    }

    #[test]
    fn judged_hits_are_ordered_by_relevance_then_fused_order() {
        let hits = vec![
            hit(1, "rent"),
            hit(2, "deposit rent lease"),
            hit(3, "lease rent"),
            hit(4, ""),
        ];
        let out = rerank(hits, "lease rent", &mut Overlap).unwrap();
        let ids: Vec<i64> = out.iter().map(|h| h.id).collect();
        assert_eq!(ids, [2, 3, 1, 4]);
        assert_eq!(out[0].relevance, Some(1.0));
        let e = rerank(vec![hit(1, "x")], "q", &mut Broken).unwrap_err();
        assert!(e.to_string().contains("outside [0, 1]"), "{e}");
    }
}
