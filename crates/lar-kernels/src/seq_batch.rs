//! The forward pass's input: the new tokens of one sequence, their position, and the block table of its paged KV
//! cache ([`SeqBatch`]), the LoRA adapter it runs with ([`LoraSlot`]), and the check every backend makes of it.

use crate::error::{Error, Result};

/// New tokens of one sequence within a batch.
#[derive(Clone, Copy, Debug)]
pub struct SeqBatch<'a> {
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; the cache already holds positions `0..pos`.
    pub pos: usize,
    /// Block ids holding this sequence's cache, in order; must cover `pos + tokens.len()` positions.
    pub block_table: &'a [u32],
    /// Return logits for every new token at this position or later (teacher forcing, perplexity), and always for
    /// the last; `None`: the last alone.
    pub logits_from: Option<usize>,
    /// The model's LoRA adapter this sequence runs with (`None`: the bare base).
    pub lora: Option<LoraSlot>,
}

/// One of a model's LoRA adapters, by its id, at a strength (1: as trained; llama-server's per-request `scale`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraSlot {
    pub id: u32,
    pub scale: f32,
}

impl SeqBatch<'_> {
    /// The new tokens whose logits are returned, as indexes into `tokens` (see `logits_from`).
    pub fn logit_range(&self) -> std::ops::Range<usize> {
        let len = self.tokens.len();
        match (len, self.logits_from) {
            (0, _) => 0..0,
            (_, Some(p)) => p.saturating_sub(self.pos).min(len - 1)..len,
            (_, None) => len - 1..len,
        }
    }

    /// That the block table covers the new positions with blocks of a cache of `max_blocks` blocks of
    /// `block_size`, and that every token is in a vocabulary of `n_vocab`.
    pub fn check(&self, block_size: usize, max_blocks: usize, n_vocab: usize) -> Result<()> {
        let end = self.pos + self.tokens.len();
        if self.block_table.len() * block_size < end {
            return Err(Error::Invalid(format!(
                "block table covers {} positions, batch needs {end}",
                self.block_table.len() * block_size
            )));
        }
        if let Some(&bad) = self.block_table.iter().find(|&&b| b as usize >= max_blocks) {
            return Err(Error::Invalid(format!(
                "block id {bad} is beyond the cache's {max_blocks} blocks"
            )));
        }
        if let Some(&t) = self.tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(Error::Invalid(format!(
                "token id {t} is outside the vocabulary of {n_vocab}"
            )));
        }
        Ok(())
    }
}
