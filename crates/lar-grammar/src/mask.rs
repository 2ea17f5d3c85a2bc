//! [`GrammarMask`]: one sequence's grammar as a link of the engine's logits-processor chain. Before each draw it
//! sets the logit of every token the grammar cannot take next to minus infinity (the end-of-generation tokens stay
//! when the text so far is complete, and are all that is left when the grammar is done); after the draw it
//! advances the grammar by the token taken. A failure inside the grammar engine ends the sequence with an error
//! ([`LogitsProcessor::failed`]), never with unconstrained text.

use std::sync::Arc;

use lar_engine::sampler::LogitsProcessor;
use llguidance::Matcher;
use llguidance::toktrie::SimpleVob;

use crate::{Error, FAILED, guarded};

pub struct GrammarMask {
    matcher: Matcher,
    /// The grammar's own end-of-sequence token, then every token that ends a generation.
    eos: u32,
    eog: Arc<[u32]>,
    failed: Option<String>,
}

impl GrammarMask {
    pub(crate) fn new(matcher: Matcher, eos: u32, eog: Arc<[u32]>) -> Self {
        Self {
            matcher,
            eos,
            eog,
            failed: None,
        }
    }

    /// Whether the tokens taken so far make a complete match (ending here would be valid).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// The tokens the grammar allows next; `None` when only ending is left (done, or failed).
    fn allowed(&mut self) -> Option<SimpleVob> {
        if self.failed.is_some() || self.matcher.is_stopped() {
            return None;
        }
        let m = &mut self.matcher;
        match guarded("a token mask", || {
            m.compute_mask()
                .map_err(|e| Error::Unsupported(e.to_string()))
        }) {
            Ok(mask) if mask.is_zero() => {
                self.failed = Some(format!("{FAILED}: the grammar allows no token here"));
                None
            }
            Ok(mask) => Some(mask),
            Err(e) => {
                self.failed = Some(format!("{FAILED}: {e}"));
                None
            }
        }
    }
}

impl LogitsProcessor for GrammarMask {
    fn process(&mut self, _history: &[u32], logits: &mut [f32]) {
        let Some(mask) = self.allowed() else {
            keep_only(logits, &self.eog);
            return;
        };
        let ending = mask.is_allowed(self.eos);
        let saved: Vec<(u32, f32)> = if ending {
            self.eog
                .iter()
                .filter_map(|&t| logits.get(t as usize).map(|&l| (t, l)))
                .collect()
        } else {
            Vec::new()
        };
        apply(&mask, logits);
        // The grammar has one end-of-sequence token; the model may end its turn with any of its own.
        for (t, l) in saved {
            logits[t as usize] = l;
        }
        if !ending {
            for &t in self.eog.iter() {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }

    fn accept(&mut self, token: u32) {
        if self.failed.is_some() || self.matcher.is_stopped() || self.eog.contains(&token) {
            return;
        }
        let m = &mut self.matcher;
        if let Err(e) = guarded("a token", || {
            m.consume_token(token)
                .map_err(|e| Error::Unsupported(e.to_string()))
        }) {
            self.failed = Some(format!("{FAILED}: {e}"));
        }
    }

    fn failed(&self) -> Option<String> {
        self.failed.clone()
    }
}

/// Sets every logit the mask does not allow to minus infinity, 32 tokens (one mask word) at a time.
fn apply(mask: &SimpleVob, logits: &mut [f32]) {
    let words = mask.as_slice();
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let bits = words.get(w).copied().unwrap_or(0);
        if bits == u32::MAX {
            continue;
        }
        if bits == 0 {
            chunk.fill(f32::NEG_INFINITY);
            continue;
        }
        for (i, l) in chunk.iter_mut().enumerate() {
            if bits >> i & 1 == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// Leaves only `keep` drawable.
fn keep_only(logits: &mut [f32], keep: &[u32]) {
    let saved: Vec<(usize, f32)> = keep
        .iter()
        .filter_map(|&t| logits.get(t as usize).map(|&l| (t as usize, l)))
        .collect();
    logits.fill(f32::NEG_INFINITY);
    for (t, l) in saved {
        // A token the model itself rules out entirely still has to be drawable to end the sequence.
        logits[t] = if l.is_finite() { l } else { 0.0 };
    }
}
