//! Perplexity as llama-perplexity measures it, so the two numbers can be compared on the same file and text: the
//! text is tokenized whole (BOS first when the model adds one), cut into chunks of `ctx` tokens (as many whole
//! chunks as fit, or `chunks`), the first token of each chunk replaced by BOS when the model adds one, and only the
//! second half of each chunk scored (every scored token has at least `ctx / 2` tokens of context): the negative
//! log-likelihood of each token at positions `ctx/2 + 1 .. ctx` given those before it. Perplexity is
//! `exp(mean NLL)`; its standard error is llama-perplexity's (`sqrt(var(NLL) / (n - 1)) * ppl`).
//!
//! Each chunk is one request through the engine's handle, scored by its prompt log-probabilities, so chunks run
//! batched together as any clients' requests would.

use std::time::Instant;

use lar_engine::scoring::RowScorer;
use lar_engine::{EngineHandle, Request};
use lar_types::SamplingParams;
use serde::Serialize;

use crate::{Error, Result};

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Tokens per chunk (llama-perplexity's `-c`).
    pub ctx: usize,
    /// At most this many chunks (llama-perplexity's `--chunks`); `None`: every whole chunk.
    pub chunks: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ctx: 512,
            chunks: None,
        }
    }
}

/// The measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Perplexity {
    pub perplexity: f64,
    /// Standard error of the perplexity.
    pub stderr: f64,
    /// Tokens scored.
    pub tokens: usize,
    pub chunks: usize,
    pub ctx: usize,
    /// Tokens in the whole text.
    pub text_tokens: usize,
    pub seconds: f64,
    /// The estimate after each chunk, in order (llama-perplexity's `[1]96.31,[2]61.33,...`).
    pub running: Vec<f64>,
}

/// The chunks of `tokens` to evaluate: `ctx` tokens each, the first replaced by `bos` when given.
pub fn chunks(tokens: &[u32], opts: Options, bos: Option<u32>) -> Result<Vec<Vec<u32>>> {
    if opts.ctx < 4 {
        return Err(Error::Invalid(format!(
            "a context of {} tokens is too small to score (at least 4)",
            opts.ctx
        )));
    }
    if opts.chunks == Some(0) {
        return Err(Error::Invalid("--chunks must be at least 1".into()));
    }
    if tokens.len() < 2 * opts.ctx {
        return Err(Error::Invalid(format!(
            "the text is {} tokens long; a context of {} needs at least {} (two contexts)",
            tokens.len(),
            opts.ctx,
            2 * opts.ctx
        )));
    }
    let whole = tokens.len() / opts.ctx;
    let n = opts.chunks.map_or(whole, |c| c.min(whole));
    Ok(tokens
        .chunks_exact(opts.ctx)
        .take(n)
        .map(|c| {
            let mut c = c.to_vec();
            if let Some(b) = bos {
                c[0] = b;
            }
            c
        })
        .collect())
}

/// Sums of the scored tokens' NLL, for the estimate and its error.
#[derive(Default)]
struct Sums {
    nll: f64,
    nll2: f64,
    count: usize,
}

impl Sums {
    fn add(&mut self, nll: f64) {
        self.nll += nll;
        self.nll2 += nll * nll;
        self.count += 1;
    }

    fn ppl(&self) -> f64 {
        (self.nll / self.count.max(1) as f64).exp()
    }

    fn stderr(&self) -> f64 {
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var > 0.0 && self.count > 1 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            0.0
        }
    }
}

/// Gives each chunk (its index and tokens) something that sees its rows of logits, or nothing.
pub type Rows<'a> = dyn FnMut(usize, &[u32]) -> Result<Option<Box<dyn RowScorer>>> + 'a;

/// Measures `text` on `engine`, whose context must hold `opts.ctx + 1` tokens. `progress(done, total, estimate)`
/// is called after each chunk.
pub fn measure(
    engine: &EngineHandle,
    text: &str,
    opts: Options,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    measure_with(engine, text, opts, progress, &mut |_, _| Ok(None))
}

/// [`measure`], with the rows of logits of each chunk's scored positions handed to what `rows` gives it (the KL
/// divergence's reference and comparison, [`crate::kld`]).
pub fn measure_with(
    engine: &EngineHandle,
    text: &str,
    opts: Options,
    progress: &mut dyn FnMut(usize, usize, f64),
    rows: &mut Rows,
) -> Result<Perplexity> {
    let started = Instant::now();
    let m = engine.model();
    if m.ctx <= opts.ctx {
        return Err(Error::Invalid(format!(
            "the engine's context ({}) must be larger than the chunks ({})",
            m.ctx, opts.ctx
        )));
    }
    let v = &m.tokenizer.vocab;
    let tokens = m.tokenizer.encode(text, true, false);
    let bos = if v.add_bos { v.bos } else { None };
    let chunks = chunks(&tokens, opts, bos)?;
    let total = chunks.len();
    // Every chunk is submitted at once: the engine batches them as its KV cache allows.
    let streams = chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let scorer = rows(i, &c)?;
            let mut req = Request::new(c, SamplingParams::greedy(1));
            req.rows = scorer;
            req.prompt_logprobs = Some(0);
            // Only the second half is scored: the first half's logits are never computed.
            req.score_from = opts.ctx / 2 + 1;
            Ok(engine.submit(req)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let first = opts.ctx / 2;
    let mut sums = Sums::default();
    let mut running = Vec::with_capacity(total);
    for (i, stream) in streams.into_iter().enumerate() {
        let scored = crate::scored::prompt_scores(stream, &format!("chunk {}", i + 1))?;
        for (pos, s) in scored.iter().enumerate().skip(first + 1) {
            let s = s.as_ref().ok_or_else(|| {
                Error::Engine(lar_engine::Error::Failed(format!(
                    "chunk {}: position {pos} was not scored",
                    i + 1
                )))
            })?;
            sums.add(-(s.logprob as f64));
        }
        running.push(sums.ppl());
        progress(i + 1, total, sums.ppl());
    }
    Ok(Perplexity {
        perplexity: sums.ppl(),
        stderr: sums.stderr(),
        tokens: sums.count,
        chunks: total,
        ctx: opts.ctx,
        text_tokens: tokens.len(),
        seconds: started.elapsed().as_secs_f64(),
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_contexts_with_bos_first() {
        let t: Vec<u32> = (10..40).collect();
        let c = chunks(
            &t,
            Options {
                ctx: 8,
                chunks: None,
            },
            Some(1),
        )
        .unwrap();
        assert_eq!(c.len(), 3, "30 tokens hold three whole chunks of 8");
        assert_eq!(c[1], [1, 19, 20, 21, 22, 23, 24, 25]);
        let c = chunks(
            &t,
            Options {
                ctx: 8,
                chunks: Some(2),
            },
            None,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0][0], 10);
        let short = chunks(
            &t,
            Options {
                ctx: 16,
                chunks: None,
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            short.contains("30 tokens") && short.contains("32"),
            "{short}"
        );
    }

    #[test]
    fn the_error_is_llama_perplexitys() {
        let mut s = Sums::default();
        for x in [1.0, 2.0, 3.0, 4.0] {
            s.add(x);
        }
        let ppl = 2.5f64.exp();
        assert!((s.ppl() - ppl).abs() < 1e-12);
        // var = 7.5 - 6.25 = 1.25; sqrt(1.25 / 3) * ppl
        assert!((s.stderr() - (1.25f64 / 3.0).sqrt() * ppl).abs() < 1e-9);
    }
}
