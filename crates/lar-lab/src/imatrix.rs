//! Importance matrices, as llama-imatrix makes them and llama-quantize reads them: for every weight matrix of the
//! blocks, the sum over a text's tokens of each input column's squared activation (`NAME.in_sum2`, one row per
//! expert) and how many tokens went in (`NAME.counts`), in llama.cpp's GGUF imatrix format (`general.type`
//! `imatrix`, `imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`), so either tool reads the other's.
//! Quantizing with one weighs each value's error by its column's mean squared activation ([`Imatrix::weights`]).
//!
//! [`collect`] runs the model over the text as llama-imatrix does: tokenized whole, cut into chunks of `ctx` tokens
//! (BOS first when the model adds one), every token of each chunk evaluated, batches of fewer than 16 tokens not
//! counted (llama-imatrix skips them too), the output matrix left out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use lar_formats::ggml_type::GgmlType;
use lar_formats::gguf::{Gguf, Value};
use lar_formats::gguf_write::GgufWriter;
use lar_models::{KvStore, Model, SeqBatch, ThreadPool};
use lar_tokenizer::Tokenizer;
use serde::Serialize;

use crate::perplexity;
use crate::{Error, Result};

/// One weight matrix's statistics: `sums` holds `counts.len()` rows (one per expert) of the input's columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub sums: Vec<f32>,
    pub counts: Vec<f32>,
}

/// An importance matrix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, Entry>,
    /// The texts it was computed on.
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
}

const IN_SUM2: &str = ".in_sum2";
const COUNTS: &str = ".counts";

impl Imatrix {
    /// Reads a GGUF imatrix (Lar's or llama-imatrix's), checking it whole: sums and counts in pairs, F32, sizes
    /// that agree, finite values, the metadata llama-quantize requires.
    pub fn load(path: &Path) -> Result<Imatrix> {
        let bad = |why: String| Error::Invalid(format!("{}: {why}", path.display()));
        let g = Gguf::open(path).map_err(|e| {
            bad(format!(
                "not an importance matrix in llama.cpp's GGUF format ({e})"
            ))
        })?;
        let mut m = Imatrix::default();
        match g.get("imatrix.datasets") {
            Some(Value::Array(a)) => {
                m.datasets = a
                    .iter()
                    .filter_map(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            }
            _ => return Err(bad("no imatrix.datasets: not an importance matrix".into())),
        }
        let num = |k: &str| -> Result<u32> {
            g.get(k)
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .ok_or_else(|| bad(format!("no {k}")))
        };
        m.chunk_count = num("imatrix.chunk_count")?;
        m.chunk_size = num("imatrix.chunk_size")?;
        let f32s = |name: &str| -> Result<Vec<f32>> {
            let t = g
                .tensor(name)
                .ok_or_else(|| bad(format!("{name} is missing")))?;
            if t.ty != GgmlType::F32 {
                return Err(bad(format!("{name} is {}, not F32", t.ty.name())));
            }
            let v: Vec<f32> = g
                .tensor_data(t)
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some(x) = v.iter().find(|x| !x.is_finite()) {
                return Err(bad(format!("{name} holds {x}")));
            }
            Ok(v)
        };
        for t in &g.tensors {
            let Some(name) = t.name.strip_suffix(IN_SUM2) else {
                if !t.name.ends_with(COUNTS) {
                    return Err(bad(format!("unexpected tensor {}", t.name)));
                }
                if g.tensor(&t.name.replace(COUNTS, IN_SUM2)).is_none() {
                    return Err(bad(format!("{} has no sums", t.name)));
                }
                continue;
            };
            let sums = f32s(&t.name)?;
            let counts = f32s(&format!("{name}{COUNTS}"))?;
            if counts.is_empty() || !sums.len().is_multiple_of(counts.len()) {
                return Err(bad(format!(
                    "{name}: {} sums do not split into {} matrices",
                    sums.len(),
                    counts.len()
                )));
            }
            m.entries.insert(name.to_string(), Entry { sums, counts });
        }
        if m.entries.is_empty() {
            return Err(bad("holds no matrices".into()));
        }
        Ok(m)
    }

    /// Writes the matrix (tensors by name, as llama-imatrix orders them); nothing is left behind on failure.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut w = GgufWriter::new();
        w.add("general.type", Value::String("imatrix".into()));
        w.add(
            "imatrix.datasets",
            Value::Array(self.datasets.iter().cloned().map(Value::String).collect()),
        );
        w.add("imatrix.chunk_count", Value::U32(self.chunk_count));
        w.add("imatrix.chunk_size", Value::U32(self.chunk_size));
        for (name, e) in &self.entries {
            let n = e.counts.len();
            w.add_f32(&format!("{name}{IN_SUM2}"), &[e.sums.len() / n, n], &e.sums);
            w.add_f32(&format!("{name}{COUNTS}"), &[1, n], &e.counts);
        }
        let part = path.with_extension("part");
        let io = |e: std::io::Error| Error::Io(path.display().to_string(), e);
        w.write(&part).map_err(io)?;
        std::fs::rename(&part, path).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            io(e)
        })
    }

    /// The weights llama-quantize gives tensor `name`: each column's mean squared activation (its sum over the
    /// count, per expert; 1 where a matrix saw no tokens). `None` when the matrix does not have it.
    pub fn weights(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        let ne0 = e.sums.len() / e.counts.len();
        let mut w = Vec::with_capacity(e.sums.len());
        for (row, &c) in e.sums.chunks_exact(ne0).zip(&e.counts) {
            let c = c.round();
            if c > 0.0 {
                w.extend(row.iter().map(|s| s / c));
            } else {
                w.extend(std::iter::repeat_n(1.0, ne0));
            }
        }
        Some(w)
    }
}

/// How to collect.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Tokens per chunk (llama-imatrix's `-c`, 512 by default).
    pub ctx: usize,
    /// At most this many chunks (all that fit by default).
    pub chunks: Option<usize>,
    pub threads: usize,
}

/// What a collection did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub matrices: usize,
    pub chunks: usize,
    pub tokens: usize,
    pub seconds: f64,
}

/// Batches of fewer tokens than this are not counted (llama-imatrix's rule).
const MIN_ROWS: usize = 16;

/// Runs the model in `model_path` over `text` (named `dataset` in the result) and sums each block matrix's squared
/// input columns; `progress(done, total)` after each chunk.
pub fn collect(
    model_path: &Path,
    text: &str,
    dataset: &str,
    opts: Options,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Imatrix, Summary)> {
    let started = Instant::now();
    let load = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", model_path.display()));
    let file = Arc::new(lar_models::open_model(model_path).map_err(|e| load(&e))?);
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| load(&e))?;
    let model = Model::from_gguf(file).map_err(|e| load(&e))?;
    let v = &tokenizer.vocab;
    let tokens = tokenizer.encode(text, true, false);
    let bos = if v.add_bos { v.bos } else { None };
    let popts = perplexity::Options {
        ctx: opts.ctx,
        chunks: opts.chunks,
    };
    let chunks = perplexity::chunks(&tokens, popts, bos)?;
    let pool = ThreadPool::new(opts.threads.max(1));
    let bs = 16;
    let table: Vec<u32> = (0..opts.ctx.div_ceil(bs) as u32).collect();
    let mut sums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad: Option<String> = None;
    let total = chunks.len();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut kv = KvStore::new(bs, model.hp.n_layers, model.hp.kv_dim(), table.len());
        for start in (0..chunk.len()).step_by(512) {
            let end = (start + 512).min(chunk.len());
            let b = SeqBatch {
                tokens: &chunk[start..end],
                pos: start,
                block_table: &table,
                logits_from: None,
                lora: None,
            };
            let rows = end - start;
            let mut seen = |name: &str, x: &[f32]| {
                if rows < MIN_ROWS {
                    return;
                }
                let cols = x.len() / rows;
                let acc = sums
                    .entry(name.to_string())
                    .or_insert_with(|| vec![0f64; cols]);
                if acc.len() != cols {
                    bad.get_or_insert_with(|| {
                        format!("{name}: {} columns, then {cols}", acc.len())
                    });
                    return;
                }
                for row in x.chunks_exact(cols) {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += (v as f64) * (v as f64);
                    }
                }
                *counts.entry(name.to_string()).or_insert(0) += rows;
            };
            model
                .forward_observed(&[b], &mut kv, &pool, Some(&mut seen))
                .map_err(|e| load(&e))?;
        }
        progress(i + 1, total);
    }
    if let Some(b) = bad {
        return Err(Error::Invalid(b));
    }
    let mut m = Imatrix {
        datasets: vec![dataset.to_string()],
        chunk_count: total as u32,
        chunk_size: opts.ctx as u32,
        ..Imatrix::default()
    };
    for (name, s) in sums {
        if let Some(x) = s.iter().find(|x| !x.is_finite()) {
            return Err(Error::Invalid(format!(
                "{name}: the activations reached {x}"
            )));
        }
        let count = counts.get(&name).copied().unwrap_or(0) as f32;
        m.entries.insert(
            name,
            Entry {
                sums: s.into_iter().map(|v| v as f32).collect(),
                counts: vec![count],
            },
        );
    }
    let summary = Summary {
        matrices: m.entries.len(),
        chunks: total,
        tokens: total * opts.ctx,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((m, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_weighs_by_the_mean() {
        let d = tempfile::tempdir().unwrap();
        let mut m = Imatrix {
            datasets: vec!["wiki.txt".into()],
            chunk_count: 3,
            chunk_size: 512,
            ..Imatrix::default()
        };
        m.entries.insert(
            "blk.0.attn_q.weight".into(),
            Entry {
                sums: vec![4.0, 8.0, 0.0, 2.0],
                counts: vec![2.0],
            },
        );
        m.entries.insert(
            "blk.0.ffn_down_exps.weight".into(),
            Entry {
                sums: vec![3.0, 6.0, 5.0, 5.0],
                counts: vec![3.0, 0.0],
            },
        );
        let p = d.path().join("m.gguf");
        m.save(&p).unwrap();
        assert_eq!(Imatrix::load(&p).unwrap(), m);
        assert_eq!(
            m.weights("blk.0.attn_q.weight").unwrap(),
            [2.0, 4.0, 0.0, 1.0]
        );
        assert_eq!(
            m.weights("blk.0.ffn_down_exps.weight").unwrap(),
            [1.0, 2.0, 1.0, 1.0]
        );
        assert!(m.weights("output.weight").is_none());
        // Not an imatrix: a model, a truncated file, garbage.
        std::fs::write(d.path().join("junk"), b"GGUF\x03\x00\x00\x00garbage").unwrap();
        let e = Imatrix::load(&d.path().join("junk"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an importance matrix"), "{e}");
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(d.path().join("cut"), &bytes[..bytes.len() / 2]).unwrap();
        assert!(Imatrix::load(&d.path().join("cut")).is_err());
    }
}
