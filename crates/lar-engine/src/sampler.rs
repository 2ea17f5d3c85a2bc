//! Choosing the next token from logits: penalties, then top-k, top-p and min-p (on temperature-1 probabilities),
//! then temperature and a seeded draw; temperature 0 is argmax. The same seed and the same logits give the same
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

/// A sampled token, its log-probability, and the most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Self {
            params,
            rng: Rng::new(seed),
        }
    }

    /// Picks the next token. `history` is the sequence so far (prompt and generated), for the penalties.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> Sampled {
        self.apply_penalties(logits, history);
        let token = if self.params.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.draw(logits)
        };
        let (logprob, top) = logprobs(logits, token, self.params.top_logprobs);
        Sampled {
            token,
            logprob,
            top,
        }
    }

    fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let p = &self.params;
        let no_repeat = p.repeat_penalty == 1.0 || p.repeat_penalty <= 0.0;
        if no_repeat && p.frequency_penalty == 0.0 && p.presence_penalty == 0.0 {
            return;
        }
        let window = &history[history.len().saturating_sub(p.repeat_last_n)..];
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
                    *l / p.repeat_penalty
                } else {
                    *l * p.repeat_penalty
                };
            }
            *l -= c as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
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
        let scaled: Vec<(u32, f32)> = cand.iter().map(|&(t, l)| (t, l / p.temperature)).collect();
        let pr = probs(&scaled);
        let r = self.rng.next_f64();
        let mut cum = 0.0;
        for (i, q) in pr.iter().enumerate() {
            cum += q;
            if r < cum {
                return scaled[i].0;
            }
        }
        scaled[scaled.len() - 1].0
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

    #[test]
    fn logprobs_are_normalized_and_sorted() {
        let mut s = Sampler::new(SamplingParams {
            top_logprobs: 3,
            ..SamplingParams::greedy(1)
        });
        let r = s.sample(&mut logits(), &[]);
        assert_eq!(r.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 4, 2]);
        assert_eq!(r.logprob, r.top[0].1);
        let total: f32 = logits().iter().map(|l| (l - 3.0).exp()).sum();
        assert!((r.logprob - (1.0 / total).ln()).abs() < 1e-5);
    }
}
