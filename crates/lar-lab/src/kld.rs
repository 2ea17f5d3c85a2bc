//! How far a model's predictions are from a reference's on the same text, as llama-perplexity's
//! `--kl-divergence` reports it: the mean KL divergence per token with its percentiles, how often the two agree
//! on the most likely token, the change in the probability of the right token (Δp), and the perplexity ratio.
//!
//! The reference is measured once ([`Reference`], saved by `lar eval perplexity --save-logits`): for every scored
//! position, the log-probability of the right token and the [`TOP`] most likely tokens with theirs. A candidate is
//! then compared position by position (`--kl-base`). Where llama-perplexity keeps the whole distribution, Lar keeps
//! the top tokens and the rest as one bucket, so its KL divergence is that of the two distributions over the top
//! tokens and "everything else": never more than the full one (the log-sum inequality). For two close
//! quantizations the tail matters: with the top 512 of SmolLM2's 49,152 tokens it is 86% of llama-perplexity's
//! figure (`bench/kld.sh`); the same top token, delta-p and the perplexity ratio are exact. A reference
//! takes about 4 KiB per scored token, where llama-perplexity's takes two bytes per vocabulary entry.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use lar_engine::scoring::RowScorer;
use serde::Serialize;

use crate::{Error, Result};

/// Tokens kept per position of a reference.
pub const TOP: usize = 512;
const MAGIC: &[u8; 8] = b"LARKLD01";

/// One scored position of the reference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    /// Log-probability of the text's token.
    pub actual: f32,
    /// The most likely tokens, most likely first, with their log-probabilities.
    pub top: Vec<(u32, f32)>,
}

/// A reference model's predictions on a text.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reference {
    pub ctx: usize,
    pub chunks: usize,
    /// The chunks' tokens, laid end to end (a candidate must tokenize the text the same way).
    pub tokens: Vec<u32>,
    /// Per chunk, its scored positions in order.
    pub positions: Vec<Vec<Position>>,
}

fn log_softmax_base(row: &[f32]) -> f32 {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln()
}

/// Records the reference's positions of one chunk.
pub struct Recorder {
    tokens: Vec<u32>,
    from: usize,
    out: Arc<Mutex<Vec<Position>>>,
}

impl Recorder {
    /// For a chunk of `tokens` whose positions from `from` on are scored; they land in `out`.
    pub fn new(tokens: Vec<u32>, from: usize, out: Arc<Mutex<Vec<Position>>>) -> Self {
        Self { tokens, from, out }
    }
}

impl RowScorer for Recorder {
    fn row(&mut self, pos: usize, logits: &[f32]) {
        let lse = log_softmax_base(logits);
        let k = TOP.min(logits.len());
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let by = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, by);
        }
        idx.truncate(k);
        idx.sort_by(by);
        let actual = self
            .tokens
            .get(pos)
            .and_then(|&t| logits.get(t as usize))
            .map_or(f32::NEG_INFINITY, |&l| l - lse);
        let p = Position {
            actual,
            top: idx
                .into_iter()
                .map(|t| (t, logits[t as usize] - lse))
                .collect(),
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let at = pos - self.from;
        if out.len() <= at {
            out.resize(at + 1, Position::default());
        }
        out[at] = p;
    }
}

/// One candidate position against the reference's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Diff {
    pub kld: f64,
    pub same_top: bool,
    /// p(right token) of the candidate minus the reference's.
    pub delta_p: f64,
    /// The candidate's log-probability of the right token.
    pub actual: f64,
}

/// Compares one chunk of a candidate with the reference's positions.
pub struct Comparer {
    tokens: Vec<u32>,
    from: usize,
    reference: Arc<Vec<Position>>,
    out: Arc<Mutex<Vec<Diff>>>,
}

impl Comparer {
    pub fn new(
        tokens: Vec<u32>,
        from: usize,
        reference: Arc<Vec<Position>>,
        out: Arc<Mutex<Vec<Diff>>>,
    ) -> Self {
        Self {
            tokens,
            from,
            reference,
            out,
        }
    }
}

impl RowScorer for Comparer {
    fn row(&mut self, pos: usize, logits: &[f32]) {
        let Some(r) = self.reference.get(pos - self.from) else {
            return;
        };
        let lse = log_softmax_base(logits) as f64;
        let lq = |t: u32| {
            logits
                .get(t as usize)
                .map_or(f64::NEG_INFINITY, |&l| l as f64 - lse)
        };
        let (mut kld, mut p_top, mut q_top) = (0f64, 0f64, 0f64);
        for &(t, lp) in &r.top {
            let (lp, lq) = (lp as f64, lq(t));
            let p = lp.exp();
            kld += p * (lp - lq);
            p_top += p;
            q_top += lq.exp();
        }
        // Everything outside the top tokens, as one bucket.
        let (p_rest, q_rest) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-12));
        if p_rest > 1e-12 {
            kld += p_rest * (p_rest.ln() - q_rest.ln());
        }
        let argmax = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &l)| if l > b.1 { (i, l) } else { b },
            )
            .0 as u32;
        let actual = self.tokens.get(pos).map_or(f64::NEG_INFINITY, |&t| lq(t));
        let d = Diff {
            kld: kld.max(0.0),
            same_top: r.top.first().is_some_and(|&(t, _)| t == argmax),
            delta_p: actual.exp() - (r.actual as f64).exp(),
            actual,
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let at = pos - self.from;
        if out.len() <= at {
            out.resize(at + 1, Diff::default());
        }
        out[at] = d;
    }
}

/// The comparison, as llama-perplexity prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tokens: usize,
    pub kld_mean: f64,
    pub kld_stderr: f64,
    pub kld_median: f64,
    pub kld_p90: f64,
    pub kld_p99: f64,
    pub kld_max: f64,
    /// Fraction of positions where both models' most likely token is the same.
    pub same_top: f64,
    pub same_top_stderr: f64,
    pub delta_p_mean: f64,
    pub delta_p_rms: f64,
    pub ppl_base: f64,
    pub ppl: f64,
    pub ppl_ratio: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The report over every position of `diffs` against `reference`.
pub fn report(reference: &Reference, diffs: &[Diff]) -> Report {
    let n = diffs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&Diff) -> f64| diffs.iter().map(f).sum::<f64>() / n;
    let kld_mean = mean(&|d| d.kld);
    let kld_var = mean(&|d| d.kld * d.kld) - kld_mean * kld_mean;
    let mut sorted: Vec<f64> = diffs.iter().map(|d| d.kld).collect();
    sorted.sort_by(f64::total_cmp);
    let same = mean(&|d| f64::from(u8::from(d.same_top)));
    let base_nll = -reference
        .positions
        .iter()
        .flatten()
        .map(|p| p.actual as f64)
        .sum::<f64>()
        / n;
    let nll = -mean(&|d| d.actual);
    Report {
        tokens: diffs.len(),
        kld_mean,
        kld_stderr: (kld_var.max(0.0) / (n - 1.0).max(1.0)).sqrt(),
        kld_median: percentile(&sorted, 0.5),
        kld_p90: percentile(&sorted, 0.9),
        kld_p99: percentile(&sorted, 0.99),
        kld_max: sorted.last().copied().unwrap_or(0.0),
        same_top: same,
        same_top_stderr: (same * (1.0 - same) / (n - 1.0).max(1.0)).sqrt(),
        delta_p_mean: mean(&|d| d.delta_p),
        delta_p_rms: mean(&|d| d.delta_p * d.delta_p).sqrt(),
        ppl_base: base_nll.exp(),
        ppl: nll.exp(),
        ppl_ratio: (nll - base_nll).exp(),
    }
}

/// Measures the reference: the perplexity of `text` on `engine` and every scored position's top tokens.
pub fn measure_reference(
    engine: &lar_engine::EngineHandle,
    text: &str,
    opts: crate::perplexity::Options,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<(crate::perplexity::Perplexity, Reference)> {
    let from = opts.ctx / 2 + 1;
    let mut parts: Vec<Arc<Mutex<Vec<Position>>>> = Vec::new();
    let mut tokens = Vec::new();
    let ppl = crate::perplexity::measure_with(engine, text, opts, progress, &mut |_, chunk| {
        let out = Arc::new(Mutex::new(Vec::new()));
        parts.push(out.clone());
        tokens.extend_from_slice(chunk);
        Ok(Some(Box::new(Recorder::new(chunk.to_vec(), from, out))))
    })?;
    let positions: Vec<Vec<Position>> = parts
        .iter()
        .map(|p| std::mem::take(&mut *p.lock().unwrap_or_else(|e| e.into_inner())))
        .collect();
    Ok((
        ppl,
        Reference {
            ctx: opts.ctx,
            chunks: positions.len(),
            tokens,
            positions,
        },
    ))
}

/// Measures a candidate on `text` against `reference` (same context and chunks).
/// Whether `engine`'s model cuts `text` into the reference's chunks (same vocabulary, same text), so
/// [`measure_against`] can compare them.
pub fn comparable(engine: &lar_engine::EngineHandle, text: &str, reference: &Reference) -> bool {
    let m = engine.model();
    let v = &m.tokenizer.vocab;
    let tokens = m.tokenizer.encode(text, true, false);
    let opts = crate::perplexity::Options {
        ctx: reference.ctx,
        chunks: Some(reference.chunks),
    };
    let bos = if v.add_bos { v.bos } else { None };
    crate::perplexity::chunks(&tokens, opts, bos).is_ok_and(|c| c.concat() == reference.tokens)
}

pub fn measure_against(
    engine: &lar_engine::EngineHandle,
    text: &str,
    reference: &Reference,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<(crate::perplexity::Perplexity, Report)> {
    let opts = crate::perplexity::Options {
        ctx: reference.ctx,
        chunks: Some(reference.chunks),
    };
    let from = opts.ctx / 2 + 1;
    let mut parts: Vec<Arc<Mutex<Vec<Diff>>>> = Vec::new();
    let ppl = crate::perplexity::measure_with(engine, text, opts, progress, &mut |i, chunk| {
        let want = reference
            .tokens
            .get(i * reference.ctx..(i + 1) * reference.ctx);
        if want != Some(chunk) {
            return Err(Error::Invalid(format!(
                "chunk {} is tokenized differently from the reference's: the models' vocabularies differ, or \
                 the text is not the reference's",
                i + 1
            )));
        }
        let out = Arc::new(Mutex::new(Vec::new()));
        parts.push(out.clone());
        let base = Arc::new(reference.positions.get(i).cloned().unwrap_or_default());
        Ok(Some(Box::new(Comparer::new(
            chunk.to_vec(),
            from,
            base,
            out,
        ))))
    })?;
    if parts.len() != reference.chunks {
        return Err(Error::Invalid(format!(
            "the text gives {} chunks, the reference has {}",
            parts.len(),
            reference.chunks
        )));
    }
    let diffs: Vec<Diff> = parts
        .iter()
        .flat_map(|p| std::mem::take(&mut *p.lock().unwrap_or_else(|e| e.into_inner())))
        .collect();
    let r = report(reference, &diffs);
    Ok((ppl, r))
}

impl Reference {
    /// Writes the reference (a small binary file: the header, the tokens, then each position).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |e| Error::Io(path.display().to_string(), e);
        let mut b = Vec::new();
        b.extend(MAGIC);
        for v in [self.ctx, self.chunks, TOP, self.tokens.len()] {
            b.extend((v as u32).to_le_bytes());
        }
        for t in &self.tokens {
            b.extend(t.to_le_bytes());
        }
        for p in self.positions.iter().flatten() {
            b.extend(p.actual.to_le_bytes());
            for i in 0..TOP {
                let (t, lp) = p
                    .top
                    .get(i)
                    .copied()
                    .unwrap_or((u32::MAX, f32::NEG_INFINITY));
                b.extend(t.to_le_bytes());
                b.extend(lp.to_le_bytes());
            }
        }
        let mut f = std::fs::File::create(path).map_err(io)?;
        f.write_all(&b).map_err(io)
    }

    /// Reads a reference written by [`Reference::save`]; anything else is a clear error.
    pub fn load(path: &Path) -> Result<Self> {
        let mut b = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut b))
            .map_err(|e| Error::Io(path.display().to_string(), e))?;
        let bad = |why: &str| {
            Error::Invalid(format!(
                "{} is not a Lar logits reference: {why}",
                path.display()
            ))
        };
        if b.len() < 24 || &b[..8] != MAGIC {
            return Err(bad("wrong header"));
        }
        let u32_at = |o: usize| -> Result<u32> {
            b.get(o..o + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
                .ok_or_else(|| bad("truncated"))
        };
        let (ctx, chunks, k, n) = (
            u32_at(8)? as usize,
            u32_at(12)? as usize,
            u32_at(16)? as usize,
            u32_at(20)? as usize,
        );
        let per_chunk = ctx.saturating_sub(ctx / 2 + 1);
        let want = 24 + 4 * n + chunks * per_chunk * (4 + 8 * k);
        if k != TOP || n != ctx * chunks || ctx < 4 || b.len() != want {
            return Err(bad("its sizes do not add up"));
        }
        let f32_at = |o: usize| -> Result<f32> { Ok(f32::from_bits(u32_at(o)?)) };
        let tokens = (0..n)
            .map(|i| u32_at(24 + 4 * i))
            .collect::<Result<Vec<_>>>()?;
        let mut o = 24 + 4 * n;
        let mut positions = Vec::with_capacity(chunks);
        for _ in 0..chunks {
            let mut c = Vec::with_capacity(per_chunk);
            for _ in 0..per_chunk {
                let actual = f32_at(o)?;
                o += 4;
                let mut top = Vec::with_capacity(k);
                for _ in 0..k {
                    let (t, lp) = (u32_at(o)?, f32_at(o + 4)?);
                    o += 8;
                    if t != u32::MAX {
                        top.push((t, lp));
                    }
                }
                c.push(Position { actual, top });
            }
            positions.push(c);
        }
        Ok(Self {
            ctx,
            chunks,
            tokens,
            positions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_against_itself_is_zero_and_the_file_round_trips() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 7919) % 101) as f32 / 10.0).collect();
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut rec = Recorder::new(vec![5; 8], 5, out.clone());
        for pos in 5..8 {
            rec.row(pos, &logits);
        }
        let positions = out.lock().unwrap().clone();
        assert_eq!(positions.len(), 3);
        assert_eq!(positions[0].top.len(), TOP.min(logits.len()));
        let r = Reference {
            ctx: 8,
            chunks: 1,
            tokens: vec![5; 8],
            positions: vec![positions],
        };
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.kld");
        r.save(&f).unwrap();
        assert_eq!(Reference::load(&f).unwrap(), r);
        std::fs::write(&f, b"LARKLD01 short").unwrap();
        assert!(
            Reference::load(&f)
                .unwrap_err()
                .to_string()
                .contains("not a Lar logits reference")
        );

        let diffs = Arc::new(Mutex::new(Vec::new()));
        let mut c = Comparer::new(
            vec![5; 8],
            5,
            Arc::new(r.positions[0].clone()),
            diffs.clone(),
        );
        c.row(5, &logits);
        let d = diffs.lock().unwrap()[0];
        assert!(
            d.kld.abs() < 1e-6 && d.same_top && d.delta_p.abs() < 1e-6,
            "{d:?}"
        );
        // A flatter candidate diverges, and keeps the top token.
        let flat: Vec<f32> = logits.iter().map(|l| l / 2.0).collect();
        c.row(5, &flat);
        let d = diffs.lock().unwrap()[0];
        assert!(d.kld > 0.01 && d.same_top, "{d:?}");
    }
}
