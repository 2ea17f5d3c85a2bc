//! Quantization-aware repair: a LoRA trained on a quantized model to match a full-precision teacher's next-token
//! distribution (the KL divergence from the teacher's top tokens, cached once) over a text.
//!
//! [`chunks`] cuts the text's tokens into sequences; [`teach`] runs the teacher over each once and keeps, per
//! position, its top `k` tokens with their probabilities and its loss on the true next token; [`measure`] gives
//! the student's perplexity and KL divergence (from the teacher's top tokens) on held-out chunks, with or without
//! the adapter, so the report can say how much of the quantization's gap the adapter closed.

use lar_models::{KvStore, Model, SeqBatch, ThreadPool};

use crate::adapter::Adapter;
use crate::data::Example;
use crate::error::{Error, Result};
use crate::net::{Batch, Net};

/// A teacher's view of one chunk: per position, its top tokens `(id, probability)` for the next token, and its
/// negative log-likelihood of the true next token (none for the last position).
#[derive(Clone, Debug)]
pub struct Taught {
    pub top: Vec<Vec<(u32, f32)>>,
    pub nll: Vec<f32>,
}

/// The text's tokens cut into chunks of `seq_len` (the last, shorter one kept if it has at least 16 tokens).
pub fn chunks(tokens: &[u32], seq_len: usize) -> Vec<Vec<u32>> {
    tokens
        .chunks(seq_len.max(2))
        .filter(|c| c.len() >= 16.min(seq_len))
        .map(<[u32]>::to_vec)
        .collect()
}

/// Runs the teacher over `chunk`: its top `k` next tokens and its loss at every position.
pub fn teach(teacher: &Model, chunk: &[u32], k: usize, pool: &ThreadPool) -> Result<Taught> {
    let nv = teacher.hp.n_vocab;
    let bs = 16;
    let table: Vec<u32> = (0..chunk.len().div_ceil(bs) as u32).collect();
    let mut kv = KvStore::new(bs, teacher.hp.n_layers, teacher.hp.kv_dim(), table.len());
    let batch = [SeqBatch {
        tokens: chunk,
        pos: 0,
        block_table: &table,
        logits_from: Some(0),
        lora: None,
    }];
    let logits = teacher.forward(&batch, &mut kv, pool)?;
    let rows = logits
        .first()
        .ok_or_else(|| Error::Invalid("the teacher gave no logits".into()))?;
    let mut top = Vec::with_capacity(chunk.len());
    let mut nll = Vec::with_capacity(chunk.len());
    for (i, row) in rows.chunks_exact(nv).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max as f64
            + row
                .iter()
                .map(|v| ((v - max) as f64).exp())
                .sum::<f64>()
                .ln();
        let mut ids: Vec<u32> = (0..nv as u32).collect();
        let k = k.min(nv);
        ids.select_nth_unstable_by(k - 1, |a, b| row[*b as usize].total_cmp(&row[*a as usize]));
        ids.truncate(k);
        top.push(
            ids.into_iter()
                .map(|t| (t, (row[t as usize] as f64 - lse).exp() as f32))
                .collect(),
        );
        if let Some(&next) = chunk.get(i + 1) {
            nll.push((lse - row[next as usize] as f64) as f32);
        }
    }
    Ok(Taught { top, nll })
}

/// A chunk as a distillation example: every position but the last trained on the teacher's top tokens.
pub fn example(index: usize, chunk: &[u32], taught: &Taught) -> Example {
    let mut soft = taught.top.clone();
    if let Some(last) = soft.last_mut() {
        last.clear();
    }
    Example {
        line: index + 1,
        tokens: chunk.to_vec(),
        loss: vec![true; chunk.len()],
        soft: Some(soft),
    }
}

/// The student's perplexity and mean KL divergence (from the teacher's top tokens, nats per token) over
/// held-out examples made by [`example`].
pub fn measure(net: &Net, ad: &Adapter, held: &[Example]) -> Result<(f64, f64)> {
    let (mut nll, mut kl, mut n) = (0f64, 0f64, 0usize);
    for e in held {
        let mut hard = Batch::default();
        hard.push(&e.tokens, &vec![true; e.tokens.len()]);
        let mut soft = Batch::default();
        e.push_to(&mut soft);
        nll += net.loss(ad, &hard)? as f64;
        kl += net.loss(ad, &soft)? as f64;
        n += hard.n_loss();
    }
    let n = n.max(1) as f64;
    Ok(((nll / n).exp(), kl / n))
}

/// The teacher's perplexity over the same held-out chunks.
pub fn teacher_perplexity(taught: &[&Taught]) -> f64 {
    let (sum, n) = taught
        .iter()
        .flat_map(|t| t.nll.iter())
        .fold((0f64, 0usize), |(s, n), v| (s + *v as f64, n + 1));
    (sum / n.max(1) as f64).exp()
}
