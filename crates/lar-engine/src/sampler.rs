//! Choosing the next token from logits: a chain of [`LogitsProcessor`]s (penalties, logit bias, then any the request
//! brings), then top-k, top-p and min-p (on temperature-1 probabilities), then temperature and a seeded draw;
//! temperature 0 is argmax. The same seed and the same logits give the same
//! token. Log-probabilities reported are those of the model's distribution after penalties (OpenAI's meaning).

use lar_types::SamplingParams;

/// splitmix64: small, fast, and the same sequence on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampled token, its log-probability and the most likely alternatives (where the parameters ask for them).
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

/// One link of the chain that edits a sequence's logits before a token is drawn: penalties, logit bias, and (in
/// later issues) grammar masks. Runs on the engine thread, once per sampled token, so it must be quick and must not
/// block.
pub trait LogitsProcessor: Send {
    /// Edits `logits` (one row, `n_vocab` long). `history` is the sequence so far: prompt, then generated tokens.
    fn process(&mut self, history: &[u32], logits: &mut [f32]);
    /// The token that was drawn (a grammar advances its state here).
    fn accept(&mut self, _token: u32) {}
    /// Why this processor cannot go on (a grammar engine's failure): the sequence then ends with an error rather
    /// than with text the processor did not vouch for.
    fn failed(&self) -> Option<String> {
        None
    }
}

/// Repetition (CTRL-style: divide positive logits, multiply negative ones), frequency and presence penalties over
/// the last `last_n` tokens of the history.
pub struct Penalties {
    pub repeat: f32,
    pub frequency: f32,
    pub presence: f32,
    pub last_n: usize,
}

impl LogitsProcessor for Penalties {
    fn process(&mut self, history: &[u32], logits: &mut [f32]) {
        let no_repeat = self.repeat == 1.0 || self.repeat <= 0.0;
        let window = &history[history.len().saturating_sub(self.last_n)..];
        let mut counts: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
        for &t in window {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &c) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if !no_repeat {
                *l = if *l > 0.0 {
                    *l / self.repeat
                } else {
                    *l * self.repeat
                };
            }
            *l -= c as f32 * self.frequency + self.presence;
        }
    }
}

/// Adds a fixed bias to some tokens' logits (ids outside the vocabulary are ignored: the request was checked
/// against the vocabulary when it was submitted).
pub struct LogitBias(pub Vec<(u32, f32)>);

impl LogitsProcessor for LogitBias {
    fn process(&mut self, _history: &[u32], logits: &mut [f32]) {
        for &(t, b) in &self.0 {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    processors: Vec<Box<dyn LogitsProcessor>>,
}

impl Sampler {
    /// A sampler for `params`: its penalties and logit bias become the first links of the processor chain.
    pub fn new(params: SamplingParams) -> Self {
        Self::with_processors(params, Vec::new())
    }

    /// As [`Sampler::new`], with `extra` processors run after the built-in ones (in order).
    pub fn with_processors(params: SamplingParams, extra: Vec<Box<dyn LogitsProcessor>>) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let mut processors: Vec<Box<dyn LogitsProcessor>> = Vec::new();
        let p = &params;
        let repeat_on = p.repeat_penalty != 1.0 && p.repeat_penalty > 0.0;
        if repeat_on || p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
            processors.push(Box::new(Penalties {
                repeat: p.repeat_penalty,
                frequency: p.frequency_penalty,
                presence: p.presence_penalty,
                last_n: p.repeat_last_n,
            }));
        }
        if !p.logit_bias.is_empty() {
            processors.push(Box::new(LogitBias(p.logit_bias.clone())));
        }
        processors.extend(extra);
        Self {
            params,
            rng: Rng::new(seed),
            processors,
        }
    }

    /// Picks the next token. `history` is the sequence so far (prompt and generated), for the processors.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Sampled {
        for p in &mut self.processors {
            p.process(history, logits);
        }
        let token = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        for p in &mut self.processors {
            p.accept(token);
        }
        if !self.params.wants_logprobs() {
            return Sampled {
                token,
                logprob: None,
                top: Vec::new(),
            };
        }
        let (logprob, top) = logprobs(logits, token, self.params.top_logprobs);
        Sampled {
            token,
            logprob: Some(logprob),
            top,
        }
    }

    /// The first processor's failure, if one failed (see [`LogitsProcessor::failed`]).
    pub fn failure(&self) -> Option<String> {
        self.processors.iter().find_map(|p| p.failed())
    }

    /// Draws from the logits after top-k, top-p and min-p, without sorting the whole vocabulary: top-k and min-p
    /// select their candidates in linear time, and top-p sorts only a growing prefix of the best candidates (64,
    /// then 256, ...) until it holds `top_p` of the probability mass, with the normalizer summed once over all.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        let cand = self.candidates(logits, max);
        let inv_t = 1.0 / self.params.temperature as f64;
        let w: Vec<f64> = cand
            .iter()
            .map(|c| ((c.1 as f64 - max as f64) * inv_t).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let r = self.rng.next_f64() * total;
        let mut cum = 0.0;
        for (c, q) in cand.iter().zip(&w) {
            cum += q;
            if r < cum {
                return c.0;
            }
        }
        cand.last().map_or(argmax(logits), |c| c.0)
    }

    /// The tokens top-k, top-p and min-p leave, with their logits (`max` is the largest logit).
    fn candidates(&self, logits: &[f32], max: f32) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
        }
        if p.top_p < 1.0 {
            let z: f64 = cand.iter().map(|c| (c.1 as f64 - max as f64).exp()).sum();
            let mut k = 64.min(cand.len());
            loop {
                if k < cand.len() {
                    cand.select_nth_unstable_by(k - 1, by_logit);
                }
                cand[..k].sort_unstable_by(by_logit);
                let mut cum = 0.0;
                let keep = cand[..k].iter().position(|c| {
                    cum += (c.1 as f64 - max as f64).exp() / z;
                    cum >= p.top_p as f64
                });
                match keep {
                    Some(i) => {
                        cand.truncate(i + 1);
                        break;
                    }
                    None if k == cand.len() => break,
                    None => k = (k * 4).min(cand.len()),
                }
            }
        }
        if p.min_p > 0.0 {
            // A token survives min-p when its probability is at least min_p times the best one's.
            let floor = max + p.min_p.ln();
            cand.retain(|c| c.1 >= floor);
        }
        cand
    }

    /// The candidates as the sampler chose them before it stopped sorting the vocabulary: sort everything, then cut
    /// (the twin [`Sampler::candidates`] is checked against).
    #[cfg(test)]
    fn candidates_reference(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            cand.truncate(p.top_k);
        }
        cand.sort_unstable_by(by_logit);
        let probs = |c: &[(u32, f32)]| -> Vec<f64> {
            let max = c[0].1 as f64;
            let e: Vec<f64> = c.iter().map(|x| (x.1 as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        };
        if p.top_p < 1.0 {
            let pr = probs(&cand);
            let mut cum = 0.0;
            let mut keep = cand.len();
            for (i, q) in pr.iter().enumerate() {
                cum += q;
                if cum >= p.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let pr = probs(&cand);
            let floor = pr[0] * p.min_p as f64;
            let keep = pr.iter().take_while(|&&q| q >= floor).count();
            cand.truncate(keep.max(1));
        }
        cand
    }
}

pub fn argmax(x: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &v) in x.iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0 as u32
}

/// Log-probability of `token` and the `n` most likely tokens with theirs.
fn logprobs(logits: &[f32], token: u32, n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits
        .iter()
        .map(|&l| ((l - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32
        + max;
    let lp = logits
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |l| l - lse);
    if n == 0 {
        return (lp, Vec::new());
    }
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let n = n.min(idx.len());
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    idx.select_nth_unstable_by(n - 1, cmp);
    idx.truncate(n);
    idx.sort_unstable_by(cmp);
    (
        lp,
        idx.into_iter()
            .map(|i| (i, logits[i as usize] - lse))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 0.5, 2.9, -1.0]
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplingParams::greedy(10));
        assert_eq!(s.sample(&mut logits(), &[]).token, 1);
    }

    #[test]
    fn same_seed_same_tokens_and_different_seeds_differ() {
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.5,
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                seed: Some(seed),
                ..Default::default()
            });
            (0..64)
                .map(|_| s.sample(&mut logits(), &[]).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn top_k_one_is_greedy_at_any_temperature() {
        let mut s = Sampler::new(SamplingParams {
            temperature: 5.0,
            top_k: 1,
            seed: Some(1),
            ..Default::default()
        });
        for _ in 0..32 {
            assert_eq!(s.sample(&mut logits(), &[]).token, 1);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // With top_p tiny only the best survives; with min_p 0.9 only tokens within 10% of the best.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.01,
            min_p: 0.0,
            seed: Some(3),
            ..Default::default()
        });
        assert!((0..32).all(|_| s.sample(&mut logits(), &[]).token == 1));
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.85,
            seed: Some(3),
            ..Default::default()
        });
        let seen: std::collections::HashSet<u32> = (0..200)
            .map(|_| s.sample(&mut logits(), &[]).token)
            .collect();
        assert_eq!(seen, [1, 4].into_iter().collect());
    }

    #[test]
    fn penalties_push_repeated_tokens_down() {
        let mut s = Sampler::new(SamplingParams {
            repeat_penalty: 2.0,
            ..SamplingParams::greedy(1)
        });
        // Token 1 (3.0) is halved to 1.5, so 4 (2.9) wins.
        assert_eq!(s.sample(&mut logits(), &[1]).token, 4);
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 1.0,
            frequency_penalty: 0.5,
            ..SamplingParams::greedy(1)
        });
        assert_eq!(s.sample(&mut logits(), &[1, 4]).token, 2);
    }

    /// Top-k, top-p and min-p without the full sort keep the same tokens as the full sort, on a vocabulary the size
    /// of a real one, for settings that cut in every stage (top-p reaching past the first 64 and 256 candidates too).
    #[test]
    fn candidates_equal_the_full_sort() {
        let mut rng = Rng::new(7);
        let logits: Vec<f32> = (0..50_000)
            .map(|_| (rng.next_f64() * 12.0 - 6.0) as f32)
            .collect();
        for (top_k, top_p, min_p) in [
            (0, 0.9, 0.0),
            (0, 0.5, 0.05),
            (0, 0.999, 0.0),
            (40, 0.95, 0.05),
            (0, 1.0, 0.3),
            (5000, 0.7, 0.0),
            (0, 0.0, 0.0),
        ] {
            let s = Sampler::new(SamplingParams {
                temperature: 1.0,
                top_k,
                top_p,
                min_p,
                seed: Some(1),
                ..Default::default()
            });
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut fast: Vec<u32> = s.candidates(&logits, max).iter().map(|c| c.0).collect();
            let mut slow: Vec<u32> = s
                .candidates_reference(&logits)
                .iter()
                .map(|c| c.0)
                .collect();
            fast.sort_unstable();
            slow.sort_unstable();
            assert_eq!(fast, slow, "top_k {top_k}, top_p {top_p}, min_p {min_p}");
        }
    }

    #[test]
    fn logit_bias_bans_and_forces_tokens() {
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(1, -100.0)],
            ..SamplingParams::greedy(1)
        });
        assert_eq!(s.sample(&mut logits(), &[]).token, 4);
        let mut s = Sampler::new(SamplingParams {
            logit_bias: vec![(5, 100.0)],
            temperature: 1.0,
            seed: Some(9),
            ..Default::default()
        });
        assert!((0..50).all(|_| s.sample(&mut logits(), &[]).token == 5));
    }

    /// A processor the request brings runs after the built-in ones and sees every drawn token.
    #[test]
    fn extra_processors_run_in_order_and_see_each_token() {
        struct OnlyEven(std::sync::Arc<std::sync::Mutex<Vec<u32>>>);
        impl LogitsProcessor for OnlyEven {
            fn process(&mut self, _h: &[u32], logits: &mut [f32]) {
                for (i, l) in logits.iter_mut().enumerate() {
                    if i % 2 == 1 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            fn accept(&mut self, token: u32) {
                self.0.lock().unwrap().push(token);
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut s = Sampler::with_processors(
            SamplingParams {
                logit_bias: vec![(2, -5.0), (4, -5.0)],
                ..SamplingParams::greedy(1)
            },
            vec![Box::new(OnlyEven(seen.clone()))],
        );
        // Tokens 1 (3.0) and 3 are masked out, 2 and 4 biased down by 5, so 0 (1.0) wins.
        assert_eq!(s.sample(&mut logits(), &[]).token, 0);
        assert_eq!(s.sample(&mut logits(), &[0]).token, 0);
        assert_eq!(*seen.lock().unwrap(), vec![0, 0]);
    }

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let mut s = Sampler::new(SamplingParams {
            top_logprobs: 3,
            ..SamplingParams::greedy(1)
        });
        let r = s.sample(&mut logits(), &[]);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 4, 2]);
        assert_eq!(r.logprob, Some(r.top[0].1));
        let total: f32 = logits().iter().map(|l| (l - 3.0).exp()).sum();
        let expected = (1.0 / total).ln();
        assert!(r.logprob.is_some_and(|lp| (lp - expected).abs() < 1e-5));
        // `logprobs` alone: the token's own, no alternatives.
        let mut s = Sampler::new(SamplingParams {
            logprobs: true,
            ..SamplingParams::greedy(1)
        });
        let r = s.sample(&mut logits(), &[]);
        assert_eq!((r.token, r.top.len()), (1, 0));
        assert!(r.logprob.is_some_and(|lp| (lp - expected).abs() < 1e-5));
    }

    #[test]
    fn logprobs_are_not_computed_unless_asked() {
        let mut s = Sampler::new(SamplingParams::greedy(1));
        let r = s.sample(&mut logits(), &[]);
        assert_eq!((r.token, r.logprob, r.top.len()), (1, None, 0));
    }
}
