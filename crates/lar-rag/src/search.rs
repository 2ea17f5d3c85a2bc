//! Hybrid retrieval: the full-text side (BM25 over accent- and case-folded words) and the vector side (cosine
//! similarity of the embedder's vectors) each rank candidates, and reciprocal rank fusion (Cormack et al. 2009:
//! `sum 1 / (60 + rank)`) merges the two lists, so a chunk that both find comes first and either side alone can still
//! surface what the other misses (an exact product code; a paraphrase). Filters apply on both sides, inside the store.
//! Then each further chunk of a file already ranked counts for a little less (`same_file_decay`), so the many
//! chunks of one long document do not take every place from the short one that answers.

use lar_types::Embedder;
use serde::Serialize;

use crate::store::{Filter, Store};
use crate::{Chunk, Error, Result, fold};

/// How to search.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Hits to return.
    pub k: usize,
    pub filter: Filter,
    /// Candidates taken from each side before fusion (at least `k`).
    pub candidates: usize,
    /// RRF's rank constant.
    pub rrf_k: f32,
    /// The fused score of a file's n-th chunk in the ranking is multiplied by this to the power n-1 (1: no change).
    pub same_file_decay: f32,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 5,
            filter: Filter::default(),
            candidates: 50,
            rrf_k: 60.0,
            same_file_decay: 0.5,
        }
    }
}

impl SearchOptions {
    /// Refuses what can only return nothing: `k` of 0, or a date range whose start is after its end.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::Invalid(
                "k (results to return) must be at least 1".into(),
            ));
        }
        if let (Some(a), Some(b)) = (self.filter.since, self.filter.until)
            && a > b
        {
            return Err(Error::Invalid(
                "the date range starts after it ends: nothing can match".into(),
            ));
        }
        Ok(())
    }
}

/// One result of a hybrid search.
#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub id: i64,
    /// Fused score (higher is better).
    pub score: f32,
    /// 1-based rank on the full-text side, if it found this chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_rank: Option<usize>,
    /// 1-based rank on the vector side, and the cosine similarity there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// The judge's relevance in [0, 1], when the hits were reranked ([`crate::rerank`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relevance: Option<f32>,
    #[serde(flatten)]
    pub chunk: Chunk,
}

/// Embeds `query`, runs both retrievers and fuses them; best first, at most `opts.k`.
pub fn search(
    store: &dyn Store,
    embedder: &dyn Embedder,
    query: &str,
    opts: &SearchOptions,
) -> Result<Vec<Hit>> {
    opts.validate()?;
    if query.trim().is_empty() {
        return Err(Error::Invalid("the query is empty".into()));
    }
    let n = opts.candidates.max(opts.k);
    let terms = fold::terms(query);
    let text = if terms.is_empty() {
        Vec::new()
    } else {
        store.text_search(&terms, n, &opts.filter)?
    };
    let v = embed_query(embedder, query)?;
    let vec = store.vector_search(&v, n, &opts.filter)?;

    // Reciprocal rank fusion, in first-seen order.
    struct Fused {
        id: i64,
        score: f32,
        text_rank: Option<usize>,
        vector_rank: Option<usize>,
        similarity: Option<f32>,
    }
    let mut fused: Vec<Fused> = Vec::new();
    let mut index = std::collections::HashMap::<i64, usize>::new();
    for (side, list) in [(0, &text), (1, &vec)] {
        for (rank, r) in list.iter().enumerate() {
            let i = *index.entry(r.id).or_insert_with(|| {
                fused.push(Fused {
                    id: r.id,
                    score: 0.0,
                    text_rank: None,
                    vector_rank: None,
                    similarity: None,
                });
                fused.len() - 1
            });
            let f = &mut fused[i];
            f.score += 1.0 / (opts.rrf_k + rank as f32 + 1.0);
            if side == 0 {
                f.text_rank = Some(rank + 1);
            } else {
                (f.vector_rank, f.similarity) = (Some(rank + 1), Some(r.score));
            }
        }
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    // Diversity: the chunks of the fused list are read (for their files), then picked greedily by their score
    // damped for every chunk of the same file picked before.
    let pool: Vec<i64> = fused.iter().map(|f| f.id).collect();
    let mut chunks: std::collections::HashMap<i64, Chunk> = store
        .chunks(&pool)?
        .into_iter()
        .map(|c| (c.id, c.chunk))
        .collect();
    let mut picked: Vec<Fused> = Vec::with_capacity(opts.k);
    let mut per_file: std::collections::HashMap<String, i32> = std::collections::HashMap::new();
    while picked.len() < opts.k && !fused.is_empty() {
        let damped = |f: &Fused| {
            let n = chunks
                .get(&f.id)
                .and_then(|c| per_file.get(&c.path))
                .copied()
                .unwrap_or(0);
            f.score * opts.same_file_decay.powi(n)
        };
        let best = (0..fused.len())
            .max_by(|&a, &b| {
                damped(&fused[a])
                    .total_cmp(&damped(&fused[b]))
                    .then(b.cmp(&a))
            })
            .unwrap_or(0);
        let mut f = fused.remove(best);
        f.score = damped(&f);
        if let Some(c) = chunks.get(&f.id) {
            *per_file.entry(c.path.clone()).or_default() += 1;
        }
        picked.push(f);
    }
    let fused = picked;
    Ok(fused
        .into_iter()
        .filter_map(|f| {
            Some(Hit {
                id: f.id,
                score: f.score,
                text_rank: f.text_rank,
                vector_rank: f.vector_rank,
                similarity: f.similarity,
                relevance: None,
                chunk: chunks.remove(&f.id)?,
            })
        })
        .collect())
}

/// The query's vector (a query longer than the embedder takes is cut, as sentence-transformers does).
pub fn embed_query(embedder: &dyn Embedder, query: &str) -> Result<Vec<f32>> {
    let mut v = embedder
        .embed(&[query])
        .map_err(|e| Error::Embed(e.to_string()))?;
    v.pop()
        .filter(|v| v.len() == embedder.dim())
        .ok_or_else(|| Error::Embed("the embedder returned no vector of its dimension".into()))
}
