//! BERT-family encoders (BERT, MiniLM, bge, e5: `BertModel` checkpoints) for sentence embeddings: a Hugging Face
//! directory (`config.json` + `model.safetensors`) read zero-copy into the same [`Gguf`] view as the decoders, and
//! the encoder forward pass over a batch of sequences.
//!
//! Per layer (post-norm): `x = LN(x + O(attention(Q x, K x, V x)))`, `x = LN(x + W2 gelu(W1 x))`, with biases on
//! every projection, bidirectional attention within each sequence, and erf GELU. Embeddings are word + absolute
//! position + token type 0, then LayerNorm. All matrix products go through the same kernels as the decoders.

use std::path::Path;
use std::sync::Arc;

use crate::bert_ops::{self, Qkv};
use crate::error::{Error, Result};
use crate::gemm_i8::{self, Epilogue, PackedQ8, QActs, gemm, gemm_quantized};
use crate::gguf::{Bytes, Gguf, Value};
use crate::pool::ThreadPool;
use crate::quant::GgmlType;
use crate::tensor::{ActSet, SyncPtr, Weight, load_vector, matmul};

/// The shape of an encoder, from `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ff: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub eps: f32,
}

struct Layer {
    q: Weight,
    k: Weight,
    v: Weight,
    o: Weight,
    bq: Vec<f32>,
    bk: Vec<f32>,
    bv: Vec<f32>,
    bo: Vec<f32>,
    ln1: (Vec<f32>, Vec<f32>),
    up: Weight,
    bup: Vec<f32>,
    down: Weight,
    bdown: Vec<f32>,
    ln2: (Vec<f32>, Vec<f32>),
}

/// A layer's projections repacked for [`gemm_i8`] (Q, K and V as one matrix).
struct Packed {
    qkv: PackedQ8,
    bqkv: Vec<f32>,
    o: PackedQ8,
    up: PackedQ8,
    down: PackedQ8,
}

impl Packed {
    /// Where the CPU runs the int8 GEMM and every projection is Q8_0 of a shape it takes.
    fn new(l: &Layer) -> Option<Self> {
        let ws = [&l.q, &l.k, &l.v, &l.o, &l.up, &l.down];
        if !gemm_i8::available()
            || ws.iter().any(|w| {
                w.ty != GgmlType::Q8_0 || !w.rows.is_multiple_of(16) || !w.cols.is_multiple_of(32)
            })
        {
            return None;
        }
        let pack = |w: &Weight| PackedQ8::from_q8_0(w.data(), w.rows, w.cols);
        let qkv: Vec<u8> = [&l.q, &l.k, &l.v]
            .iter()
            .flat_map(|w| w.data().iter().copied())
            .collect();
        Some(Self {
            qkv: PackedQ8::from_q8_0(&qkv, 3 * l.q.rows, l.q.cols),
            bqkv: [&l.bq, &l.bk, &l.bv]
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect(),
            o: pack(&l.o),
            up: pack(&l.up),
            down: pack(&l.down),
        })
    }
}

pub struct Bert {
    pub cfg: BertConfig,
    word: Weight,
    pos: Weight,
    token_type: Vec<f32>,
    ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    /// The layers' projections for the int8 GEMM, where it runs (Q8_0 projections on AVX-512 VNNI).
    packed: Option<Vec<Packed>>,
}

fn bad(msg: String) -> Error {
    Error::Invalid(format!("config.json: {msg}"))
}

impl BertConfig {
    pub fn from_json(c: &serde_json::Value) -> Result<Self> {
        match c["model_type"].as_str() {
            Some("bert") => {}
            Some(kind @ ("roberta" | "xlm-roberta")) => {
                return Err(Error::Unsupported(format!(
                    "encoder type '{kind}' (Lar reads BERT checkpoints: MiniLM, bge, e5)"
                )));
            }
            Some(kind) => {
                return Err(lar_formats::Error::UnsupportedArch(format!(
                    "{kind} (not a BERT encoder)"
                ))
                .into());
            }
            None => return Err(bad("lacks model_type".into())),
        }
        let get = |k: &str| -> Result<usize> {
            c[k].as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0 && v < 1 << 20)
                .ok_or_else(|| bad(format!("lacks a valid {k}")))
        };
        let act = c["hidden_act"].as_str().unwrap_or("gelu");
        if act != "gelu" {
            return Err(Error::Unsupported(format!(
                "hidden_act '{act}' (Lar's BERT uses erf GELU)"
            )));
        }
        if let Some(p) = c["position_embedding_type"].as_str()
            && p != "absolute"
        {
            return Err(Error::Unsupported(format!("position_embedding_type '{p}'")));
        }
        let cfg = Self {
            hidden: get("hidden_size")?,
            layers: get("num_hidden_layers")?,
            heads: get("num_attention_heads")?,
            ff: get("intermediate_size")?,
            vocab: get("vocab_size")?,
            max_positions: get("max_position_embeddings")?,
            eps: c["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32,
        };
        if !cfg.hidden.is_multiple_of(cfg.heads) {
            return Err(bad(format!(
                "{} heads do not divide hidden size {}",
                cfg.heads, cfg.hidden
            )));
        }
        Ok(cfg)
    }
}

/// Maps a directory's safetensors files into a [`Gguf`] under the checkpoint's own tensor names (a leading `bert.`
/// dropped). With `q8`, the projection matrices are requantized to Q8_0 into an owned part (the int8 kernels are
/// several times faster than F32 ones; embeddings stay within 0.9999 cosine of the F32 ones, tested).
fn open_weights(dir: &Path, q8: bool) -> Result<Gguf> {
    let (mut parts, mut tensors, mut base) = (Vec::new(), Vec::new(), 0usize);
    let mut owned: Vec<(usize, Vec<u8>)> = Vec::new(); // (index in tensors, Q8_0 bytes)
    let mut row = Vec::new();
    for f in crate::safetensors::weight_files(dir)? {
        let (map, what) = crate::safetensors::map_file(&f)?;
        for e in crate::safetensors::parse_header(&map, &what)? {
            if e.name.ends_with("position_ids") {
                continue; // an integer buffer 0..max_positions that older checkpoints save; not a weight
            }
            let name = e.name.strip_prefix("bert.").unwrap_or(&e.name).to_string();
            let t = crate::safetensors::tensor_info(&e, name, base)?;
            let linear = t.name.starts_with("encoder.layer.")
                && t.name.ends_with(".weight")
                && t.dims.len() == 2;
            if q8 && linear && t.dims[0].is_multiple_of(32) {
                let mut q = Vec::with_capacity(t.size / 4 * 34 / 32 + 34);
                let cols = t.dims[0];
                for r in map[e.start..e.end].chunks_exact(t.size / t.dims[1]) {
                    row.resize(cols, 0f32);
                    crate::quant::dequantize(t.ty, r, &mut row);
                    crate::quant::quantize_act(crate::quant::GgmlType::Q8_0, &row, &mut q);
                }
                owned.push((tensors.len(), q));
            }
            tensors.push(t);
        }
        base += map.len();
        parts.push(Bytes::Map(map));
    }
    // Requantized matrices in one owned part after the files.
    let mut extra = Vec::new();
    for (i, q) in owned {
        let t = &mut tensors[i];
        t.ty = crate::quant::GgmlType::Q8_0;
        t.offset = base + extra.len();
        t.size = q.len();
        extra.extend_from_slice(&q);
    }
    if !extra.is_empty() {
        parts.push(Bytes::Owned(extra));
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("general.architecture".into(), Value::String("bert".into()));
    Ok(Gguf::from_parts(meta, tensors, parts)?)
}

impl Bert {
    /// Opens a Hugging Face BERT directory, its projections requantized to Q8_0 when `q8`.
    pub fn open_dir(dir: &Path, q8: bool) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|cause| lar_formats::Error::Io { path, cause })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let cfg = BertConfig::from_json(&json)?;
        let file = Arc::new(open_weights(dir, q8)?);
        let (d, ff) = (cfg.hidden, cfg.ff);
        let w = |name: &str, rows, cols| Weight::load(&file, name, rows, cols);
        let v = |name: &str, n| load_vector(&file, name, n);
        let ln = |p: &str| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((v(&format!("{p}.weight"), d)?, v(&format!("{p}.bias"), d)?))
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = |s: &str| format!("encoder.layer.{i}.{s}");
            layers.push(Layer {
                q: w(&p("attention.self.query.weight"), d, d)?,
                k: w(&p("attention.self.key.weight"), d, d)?,
                v: w(&p("attention.self.value.weight"), d, d)?,
                o: w(&p("attention.output.dense.weight"), d, d)?,
                bq: v(&p("attention.self.query.bias"), d)?,
                bk: v(&p("attention.self.key.bias"), d)?,
                bv: v(&p("attention.self.value.bias"), d)?,
                bo: v(&p("attention.output.dense.bias"), d)?,
                ln1: ln(&p("attention.output.LayerNorm"))?,
                up: w(&p("intermediate.dense.weight"), ff, d)?,
                bup: v(&p("intermediate.dense.bias"), ff)?,
                down: w(&p("output.dense.weight"), d, ff)?,
                bdown: v(&p("output.dense.bias"), d)?,
                ln2: ln(&p("output.LayerNorm"))?,
            });
        }
        // Token type 0 (single-segment input): one row added to every token.
        let tt = "embeddings.token_type_embeddings.weight";
        let token_type = match file.tensor(tt).and_then(|i| i.dims.get(1).copied()) {
            Some(rows) => {
                let mut row = vec![0f32; d];
                w(tt, rows, d)?.dequantize_row(0, &mut row);
                row
            }
            None => vec![0f32; d],
        };
        Ok(Self {
            word: w("embeddings.word_embeddings.weight", cfg.vocab, d)?,
            pos: w(
                "embeddings.position_embeddings.weight",
                cfg.max_positions,
                d,
            )?,
            token_type,
            ln: ln("embeddings.LayerNorm")?,
            packed: layers.iter().map(Packed::new).collect(),
            layers,
            cfg,
        })
    }

    /// The last hidden states of each sequence (`len x hidden`, row-major). Sequences are encoded together: every
    /// projection runs once over all their tokens (no padding); attention stays within each sequence.
    pub fn forward(&self, seqs: &[&[u32]], pool: &ThreadPool) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let d = c.hidden;
        let mut starts = Vec::with_capacity(seqs.len() + 1);
        let mut n = 0usize;
        for s in seqs {
            if s.len() > c.max_positions {
                return Err(Error::Invalid(format!(
                    "a sequence of {} tokens is longer than the encoder's {} positions",
                    s.len(),
                    c.max_positions
                )));
            }
            if let Some(&t) = s.iter().find(|&&t| t as usize >= c.vocab) {
                return Err(Error::Invalid(format!(
                    "token id {t} is outside the vocabulary ({})",
                    c.vocab
                )));
            }
            starts.push(n);
            n += s.len();
        }
        starts.push(n);
        if n == 0 {
            return Ok(seqs.iter().map(|_| Vec::new()).collect());
        }
        let mut x = vec![0f32; n * d];
        let mut tmp = vec![0f32; d];
        for (si, s) in seqs.iter().enumerate() {
            for (p, &t) in s.iter().enumerate() {
                let row = &mut x[(starts[si] + p) * d..(starts[si] + p + 1) * d];
                self.word.dequantize_row(t as usize, row);
                self.pos.dequantize_row(p, &mut tmp);
                for ((r, a), b) in row.iter_mut().zip(&tmp).zip(&self.token_type) {
                    *r += a + b;
                }
            }
        }
        let ln = |x: &mut [f32], (w, b): &(Vec<f32>, Vec<f32>)| {
            bert_ops::layer_norm(x, d, w, b, c.eps, pool)
        };
        ln(&mut x, &self.ln);
        let mut att = vec![0f32; n * d];
        if let Some(packed) = &self.packed {
            // The int8 GEMM: bias, GELU and the residual added as results are stored.
            let mut qkv = vec![0f32; n * 3 * d];
            // The FFN's hidden layer exists only quantized (the up projection's tiles quantize what they store).
            let (mut acts, mut hidden) = (QActs::default(), QActs::default());
            let epi = |bias, gelu, accumulate| Epilogue {
                bias: Some(bias),
                gelu,
                accumulate,
            };
            for (l, p) in self.layers.iter().zip(packed) {
                acts.quantize(&x, n, d, pool);
                gemm(
                    &acts,
                    &p.qkv,
                    &mut qkv,
                    3 * d,
                    epi(&p.bqkv, false, false),
                    pool,
                );
                let parts = Qkv {
                    q: &qkv,
                    k: &qkv[d..],
                    v: &qkv[2 * d..],
                    ld: 3 * d,
                };
                bert_ops::attention(parts, d, c.heads, &starts, &mut att, pool);
                acts.quantize(&att, n, d, pool);
                gemm(&acts, &p.o, &mut x, d, epi(&l.bo, false, true), pool);
                ln(&mut x, &l.ln1);
                acts.quantize(&x, n, d, pool);
                gemm_quantized(&acts, &p.up, &mut hidden, epi(&l.bup, true, false), pool);
                gemm(
                    &hidden,
                    &p.down,
                    &mut x,
                    d,
                    epi(&l.bdown, false, true),
                    pool,
                );
                ln(&mut x, &l.ln2);
            }
        } else {
            let (mut q, mut k, mut v) = (vec![0f32; n * d], vec![0f32; n * d], vec![0f32; n * d]);
            let mut o = vec![0f32; n * d];
            let mut up = vec![0f32; n * c.ff];
            for l in &self.layers {
                {
                    let mut acts = ActSet::new(&x, n, d, pool);
                    acts.prepare(&[&l.q, &l.k, &l.v]);
                    matmul(&l.q, acts.get(&l.q), &mut q, pool);
                    matmul(&l.k, acts.get(&l.k), &mut k, pool);
                    matmul(&l.v, acts.get(&l.v), &mut v, pool);
                }
                add_bias(&mut q, &l.bq);
                add_bias(&mut k, &l.bk);
                add_bias(&mut v, &l.bv);
                let parts = Qkv {
                    q: &q,
                    k: &k,
                    v: &v,
                    ld: d,
                };
                bert_ops::attention(parts, d, c.heads, &starts, &mut att, pool);
                let mut acts = ActSet::new(&att, n, d, pool);
                matmul(&l.o, acts.for_weight(&l.o), &mut o, pool);
                add_bias(&mut o, &l.bo);
                for (xi, oi) in x.iter_mut().zip(&o) {
                    *xi += oi;
                }
                ln(&mut x, &l.ln1);
                let mut acts = ActSet::new(&x, n, d, pool);
                matmul(&l.up, acts.for_weight(&l.up), &mut up, pool);
                par_rows(&mut up, c.ff, pool, &|p| {
                    add_bias(p, &l.bup);
                    p.iter_mut()
                        .for_each(|u| *u = crate::bert_ops::gelu_erf(*u));
                });
                let mut acts = ActSet::new(&up, n, c.ff, pool);
                matmul(&l.down, acts.for_weight(&l.down), &mut o, pool);
                add_bias(&mut o, &l.bdown);
                for (xi, oi) in x.iter_mut().zip(&o) {
                    *xi += oi;
                }
                ln(&mut x, &l.ln2);
            }
        }
        Ok(starts
            .windows(2)
            .map(|w| x[w[0] * d..w[1] * d].to_vec())
            .collect())
    }
}

/// `f` over `x` in row-aligned pieces (`width` elements per row), one per thread.
fn par_rows(x: &mut [f32], width: usize, pool: &ThreadPool, f: &(dyn Fn(&mut [f32]) + Sync)) {
    let rows = x.len() / width;
    let parts = pool.n_threads().min(rows).max(1);
    let ptr = SyncPtr(x.as_mut_ptr());
    pool.run(parts, &|i| {
        let r = crate::pool::split(rows, parts, i);
        // SAFETY: the row ranges of the parts are disjoint.
        let piece = unsafe {
            std::slice::from_raw_parts_mut(ptr.get().add(r.start * width), r.len() * width)
        };
        f(piece);
    });
}

fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        let ok = serde_json::json!({"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "intermediate_size": 1536, "vocab_size": 30522, "max_position_embeddings": 512});
        assert_eq!(BertConfig::from_json(&ok).unwrap().hidden, 384);
        let mut odd = ok.clone();
        odd["num_attention_heads"] = 5.into();
        assert!(
            BertConfig::from_json(&odd)
                .unwrap_err()
                .to_string()
                .contains("do not divide")
        );
        let mut llama = ok.clone();
        llama["model_type"] = "llama".into();
        assert!(BertConfig::from_json(&llama).is_err());
        let mut act = ok;
        act["hidden_act"] = "relu".into();
        assert!(
            BertConfig::from_json(&act)
                .unwrap_err()
                .to_string()
                .contains("relu")
        );
    }
}
