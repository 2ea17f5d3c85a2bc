//! Log-probabilities of a prompt's own tokens (what `/v1/completions` returns with `echo` and `logprobs`, and what
//! log-likelihood evaluations read): each prompt token scored by the logits of the position before it.

use serde::Serialize;

/// One prompt token's log-probability and the `k` most likely tokens at its position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PromptLogprob {
    pub logprob: f32,
    /// `(token, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Receives the logits row that scores each prompt position of a request (`pos`: the position of the token the
/// row predicts), for measures that need the whole distribution.
pub trait RowScorer: Send {
    fn row(&mut self, pos: usize, logits: &[f32]);
}

/// Scores `token` under the logits `row`, with the `k` most likely alternatives.
pub fn score(row: &[f32], token: u32, k: usize) -> PromptLogprob {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let lse = max + row.iter().map(|&x| (x - max).exp()).sum::<f32>().ln();
    let logprob = row
        .get(token as usize)
        .map_or(f32::NEG_INFINITY, |&x| x - lse);
    let k = k.min(row.len());
    if k == 0 {
        return PromptLogprob {
            logprob,
            top: Vec::new(),
        };
    }
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    let by_logit = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]);
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, by_logit);
    }
    idx.truncate(k);
    idx.sort_by(by_logit);
    PromptLogprob {
        logprob,
        top: idx
            .into_iter()
            .map(|t| (t, row[t as usize] - lse))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_log_softmax_and_top_is_sorted() {
        let row = [1.0f32, 3.0, 2.0, 0.0];
        let z: f32 = row.iter().map(|x| x.exp()).sum();
        let s = score(&row, 2, 2);
        assert!((s.logprob - (2.0 - z.ln())).abs() < 1e-6);
        assert_eq!(s.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((s.top[0].1 - (3.0 - z.ln())).abs() < 1e-6);
        assert!(score(&row, 9, 0).logprob.is_infinite());
    }
}
