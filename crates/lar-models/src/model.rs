//! A decoder-only transformer loaded from GGUF, and its batched forward pass over a paged KV cache.
//!
//! The forward pass takes a batch of sequences, each a run of new tokens at its own position with its own block
//! table, so one call serves a long prompt (prefill), one token each of many sequences (continuous batching), or
//! both. All tokens of the batch go through each weight matrix together; attention is per sequence, reading K and V
//! through the block table. Architecture differences (norm placement, QK-norm, activation, sliding windows, rope
//! style) are data in [`Hparams`] read by the file of each architecture in `arch/`; the math lives here once.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::kv::KvStore;
use crate::lora::{Lora, Proj, Rows, apply as apply_lora};
use crate::ops;
use crate::ops::{add, add_bias};
use crate::pool::ThreadPool;
use crate::profile::{Op, span};
use crate::tensor::{ActSet, SyncPtr, Weight, load_vector, matmul, matmul_many};

pub use lar_formats::hparams::{Activation, Hparams};
pub use lar_kernels::SeqBatch;

/// One block's weights (read-only outside this crate: training reads them through [`Model::layer`]).
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Weight,
    pub up: Weight,
    pub down: Weight,
    pub post_ffn_norm: Option<Vec<f32>>,
}

/// A loaded model: hyperparameters, weights (views into the mapped file) and the file itself.
pub struct Model {
    pub hp: Hparams,
    pub file: Arc<Gguf>,
    pub(crate) tok_embd: Weight,
    pub(crate) output_norm: Vec<f32>,
    pub(crate) output: Weight,
    pub(crate) layers: Vec<Layer>,
    pub(crate) inv_freq: Vec<f32>,
    pub(crate) inv_freq_swa: Vec<f32>,
    /// LoRA adapters a sequence may run with ([`SeqBatch::lora`] names one by its index here).
    pub(crate) loras: Vec<Lora>,
}

/// What [`Model::forward_observed`] shows each weight matrix's input to: its name and the input, one row per
/// token of the batch.
pub type Observer<'a> = dyn FnMut(&str, &[f32]) + 'a;

/// Largest head dimension the attention kernel's stack buffers take.
const MAX_HEAD_DIM: usize = 512;

impl Model {
    /// Opens a GGUF file and loads the model it describes.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_gguf(Arc::new(Gguf::open(path)?))
    }

    pub fn from_gguf(file: Arc<Gguf>) -> Result<Self> {
        Self::from_gguf_with(file, true)
    }

    /// As [`Model::from_gguf`]; `pack: false` keeps every weight in the file's layout (for a model that runs on
    /// another device, where a repacked copy in host memory would be dead weight).
    pub fn from_gguf_with(file: Arc<Gguf>, pack: bool) -> Result<Self> {
        if file.is_header_only() {
            return Err(Error::Invalid(
                "only the header of this model file was read; it can be planned, not run".into(),
            ));
        }
        let hp = Hparams::from_gguf(&file)?;
        if hp.head_dim == 0 || hp.head_dim > MAX_HEAD_DIM || hp.head_dim % 2 != 0 {
            return Err(Error::Unsupported(format!(
                "head dimension {} (Lar supports even sizes up to {MAX_HEAD_DIM})",
                hp.head_dim
            )));
        }
        if hp.n_head == 0 || hp.n_head_kv == 0 || hp.n_head % hp.n_head_kv != 0 {
            return Err(Error::Invalid(format!(
                "{} heads cannot share {} KV heads",
                hp.n_head, hp.n_head_kv
            )));
        }
        if hp.rope_dim > hp.head_dim || hp.rope_dim % 2 != 0 {
            return Err(Error::Invalid(format!(
                "rope dimension {} for head dimension {}",
                hp.rope_dim, hp.head_dim
            )));
        }
        let (d, hd) = (hp.n_embd, hp.head_dim);
        let tok_embd = Weight::load(&file, "token_embd.weight", hp.n_vocab, d)?;
        // Tied embeddings: the output matrix is packed as a copy of its own, and the lookups read the file's rows.
        let mut output = match file.tensor("output.weight") {
            Some(_) => Weight::load(&file, "output.weight", hp.n_vocab, d)?,
            None => tok_embd.clone(),
        };
        if pack {
            output.pack();
        }
        let output_norm = load_vector(&file, "output_norm.weight", d)?;
        let opt = |name: String, n: usize| -> Result<Option<Vec<f32>>> {
            if file.tensor(&name).is_some() {
                load_vector(&file, &name, n).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut layers = Vec::with_capacity(hp.n_layers);
        for i in 0..hp.n_layers {
            let p = |s: &str| format!("blk.{i}.{s}.weight");
            let b = |s: &str| format!("blk.{i}.{s}.bias");
            let (qd, kvd) = (hp.n_head * hd, hp.kv_dim());
            let (wq, wk, wv) = if hp.fused_qkv {
                let qkv = Weight::load(&file, &p("attn_qkv"), qd + 2 * kvd, d)?;
                (
                    qkv.rows_view(0, qd),
                    qkv.rows_view(qd, kvd),
                    qkv.rows_view(qd + kvd, kvd),
                )
            } else {
                (
                    Weight::load(&file, &p("attn_q"), qd, d)?,
                    Weight::load(&file, &p("attn_k"), kvd, d)?,
                    Weight::load(&file, &p("attn_v"), kvd, d)?,
                )
            };
            let (gate, up) = if hp.fused_gate_up {
                let gu = Weight::load(&file, &p("ffn_up"), 2 * hp.n_ff, d)?;
                (gu.rows_view(0, hp.n_ff), gu.rows_view(hp.n_ff, hp.n_ff))
            } else {
                (
                    Weight::load(&file, &p("ffn_gate"), hp.n_ff, d)?,
                    Weight::load(&file, &p("ffn_up"), hp.n_ff, d)?,
                )
            };
            layers.push(Layer {
                attn_norm: load_vector(&file, &p("attn_norm"), d)?,
                wq,
                wk,
                wv,
                wo: Weight::load(&file, &p("attn_output"), d, hp.n_head * hd)?,
                bq: opt(b("attn_q"), hp.n_head * hd)?,
                bk: opt(b("attn_k"), hp.kv_dim())?,
                bv: opt(b("attn_v"), hp.kv_dim())?,
                q_norm: opt(p("attn_q_norm"), hd)?,
                k_norm: opt(p("attn_k_norm"), hd)?,
                post_attn_norm: opt(p("post_attention_norm"), d)?,
                ffn_norm: load_vector(&file, &p("ffn_norm"), d)?,
                gate,
                up,
                down: Weight::load(&file, &p("ffn_down"), d, hp.n_ff)?,
                post_ffn_norm: opt(p("post_ffw_norm"), d)?,
            });
        }
        // Repacked for this CPU's kernels where it has faster ones (not the embedding table: its rows are read
        // one by one in the file's layout).
        for l in layers.iter_mut().filter(|_| pack) {
            for w in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.gate,
                &mut l.up,
                &mut l.down,
            ] {
                w.pack();
            }
        }
        let mut inv_freq = ops::rope_inv_freq(hp.rope_dim, hp.rope_base);
        if let Some(info) = file.tensor("rope_freqs.weight") {
            // Llama 3.x long-context scaling: per-frequency divisors.
            let factors = load_vector(&file, &info.name, hp.rope_dim / 2)?;
            for (f, s) in inv_freq.iter_mut().zip(&factors) {
                *f /= s;
            }
        }
        let inv_freq_swa = ops::rope_inv_freq(hp.rope_dim, hp.rope_base_swa);
        Ok(Self {
            hp,
            file,
            tok_embd,
            output_norm,
            output,
            layers,
            inv_freq,
            inv_freq_swa,
            loras: Vec::new(),
        })
    }

    /// Adds a LoRA adapter (checked against this model by `lar_formats::lora::LoraAdapter::open`); sequences
    /// run with it by the id returned.
    pub fn add_lora(&mut self, lora: Lora) -> u32 {
        self.loras.push(lora);
        (self.loras.len() - 1) as u32
    }

    /// The adapters added, by id.
    pub fn loras(&self) -> &[Lora] {
        &self.loras
    }

    /// Block `i`'s weights (for training, which runs its own forward and backward over them).
    pub fn layer(&self, i: usize) -> &Layer {
        &self.layers[i]
    }

    /// Block `i`'s weights, to change (tests of training give a block the norms another architecture has).
    pub fn layer_mut(&mut self, i: usize) -> &mut Layer {
        &mut self.layers[i]
    }

    /// The token embedding table (rows in the file's layout).
    pub fn token_embedding(&self) -> &Weight {
        &self.tok_embd
    }

    /// The output matrix (the embedding table again where the file ties them) and the final norm's weights.
    pub fn output_head(&self) -> (&Weight, &[f32]) {
        (&self.output, &self.output_norm)
    }

    /// The rotary frequencies block `layer` runs with (sliding-window layers may have their own base).
    pub fn rope_freqs(&self, layer: usize) -> &[f32] {
        if self.hp.is_swa_layer(layer) {
            &self.inv_freq_swa
        } else {
            &self.inv_freq
        }
    }

    /// Each sequence's adapter and strength, if it runs with one.
    fn seq_loras(&self, batch: &[SeqBatch]) -> Result<Vec<Option<(&Lora, f32)>>> {
        batch
            .iter()
            .map(|sb| {
                let Some(slot) = sb.lora else { return Ok(None) };
                let lora = self.loras.get(slot.id as usize).ok_or_else(|| {
                    Error::Invalid(format!(
                        "LoRA adapter {} is not loaded ({} are)",
                        slot.id,
                        self.loras.len()
                    ))
                })?;
                if !slot.scale.is_finite() {
                    return Err(Error::Invalid(format!(
                        "LoRA scale {} is not a finite number",
                        slot.scale
                    )));
                }
                Ok(Some((lora, slot.scale)))
            })
            .collect()
    }

    /// Runs the batch; returns logits per sequence: one row (`n_vocab`) for the last token, or one per token from
    /// `logits_from` on. Writes the batch's K and V into `kv` at their positions.
    pub fn forward(
        &self,
        batch: &[SeqBatch],
        kv: &mut KvStore,
        pool: &ThreadPool,
    ) -> Result<Vec<Vec<f32>>> {
        self.forward_observed(batch, kv, pool, None)
    }

    /// [`Model::forward`], showing `observe` the input of every weight matrix of the blocks (its GGUF name, the
    /// batch's input rows, one per token): what an importance matrix is made of. A fused matrix (`attn_qkv`,
    /// `ffn_up` holding gate and up) is shown once, under its own name.
    pub fn forward_observed(
        &self,
        batch: &[SeqBatch],
        kv: &mut KvStore,
        pool: &ThreadPool,
        mut observe: Option<&mut Observer>,
    ) -> Result<Vec<Vec<f32>>> {
        let mut seen = |il: usize, w: &str, x: &[f32]| {
            if let Some(o) = observe.as_mut() {
                o(&format!("blk.{il}.{w}.weight"), x);
            }
        };
        let hp = &self.hp;
        let (d, hd, nh, nkv) = (hp.n_embd, hp.head_dim, hp.n_head, hp.n_head_kv);
        let kvd = hp.kv_dim();
        // token index -> (sequence, position)
        let mut where_: Vec<(usize, usize)> = Vec::new();
        for (s, sb) in batch.iter().enumerate() {
            sb.check(kv.block_size, kv.max_blocks, hp.n_vocab)?;
            where_.extend((sb.pos..sb.pos + sb.tokens.len()).map(|p| (s, p)));
        }
        let n = where_.len();
        if n == 0 {
            return Ok(vec![Vec::new(); batch.len()]);
        }
        let seq_loras = self.seq_loras(batch)?;
        let lora = lora_rows(&seq_loras, batch.iter().map(|b| b.tokens.len()));
        let delta = |il: usize, p: Proj, input: &[f32], out: &mut [f32]| {
            if !lora.is_empty() {
                let _s = span(Op::Lora);
                apply_lora(&lora, |l| l.delta(il, p), input, out, pool);
            }
        };
        let mut x = vec![0f32; n * d];
        let embed = span(Op::Embed);
        for (i, tok) in batch.iter().flat_map(|b| b.tokens).enumerate() {
            let row = &mut x[i * d..(i + 1) * d];
            self.tok_embd.dequantize_row(*tok as usize, row);
            if hp.embed_scale != 1.0 {
                ops::scale(hp.embed_scale, row);
            }
        }
        drop(embed);
        let mut xn = vec![0f32; n * d];
        let mut q = vec![0f32; n * nh * hd];
        let mut k = vec![0f32; n * kvd];
        let mut v = vec![0f32; n * kvd];
        let mut att = vec![0f32; n * nh * hd];
        let mut o = vec![0f32; n * d];
        let mut gate = vec![0f32; n * hp.n_ff];
        let mut up = vec![0f32; n * hp.n_ff];
        for (il, l) in self.layers.iter().enumerate() {
            let norm = span(Op::Norm);
            norm_rows(&x, &l.attn_norm, hp.rms_eps, d, &mut xn);
            drop(norm);
            if hp.fused_qkv {
                seen(il, "attn_qkv", &xn);
            } else {
                for w in ["attn_q", "attn_k", "attn_v"] {
                    seen(il, w, &xn);
                }
            }
            {
                let mut acts = ActSet::new(&xn, n, d, pool);
                let quantize = span(Op::Quantize);
                acts.prepare(&[&l.wq, &l.wk, &l.wv]);
                drop(quantize);
                let _m = span(Op::Matmul);
                let jobs = [(&l.wq, &mut q), (&l.wk, &mut k), (&l.wv, &mut v)];
                matmul_many(
                    &mut jobs.map(|(w, out)| (w, acts.get(w), &mut out[..])),
                    pool,
                );
            }
            delta(il, Proj::Q, &xn, &mut q);
            delta(il, Proj::K, &xn, &mut k);
            delta(il, Proj::V, &xn, &mut v);
            let residual = span(Op::Residual);
            add_bias(&mut q, l.bq.as_deref());
            add_bias(&mut k, l.bk.as_deref());
            add_bias(&mut v, l.bv.as_deref());
            drop(residual);
            let rope = span(Op::Rope);
            let freqs = if hp.is_swa_layer(il) {
                &self.inv_freq_swa
            } else {
                &self.inv_freq
            };
            for (t, &(_, pos)) in where_.iter().enumerate() {
                for h in 0..nh {
                    let head = &mut q[(t * nh + h) * hd..(t * nh + h + 1) * hd];
                    if let Some(w) = &l.q_norm {
                        norm_in_place(head, w, hp.rms_eps);
                    }
                    ops::rope(&mut head[..hp.rope_dim], pos, freqs, hp.rope_neox);
                }
                for h in 0..nkv {
                    let head = &mut k[(t * nkv + h) * hd..(t * nkv + h + 1) * hd];
                    if let Some(w) = &l.k_norm {
                        norm_in_place(head, w, hp.rms_eps);
                    }
                    ops::rope(&mut head[..hp.rope_dim], pos, freqs, hp.rope_neox);
                }
            }
            for (t, &(s, pos)) in where_.iter().enumerate() {
                let block = batch[s].block_table[pos / kv.block_size];
                kv.write(
                    block,
                    il,
                    pos % kv.block_size,
                    &k[t * kvd..(t + 1) * kvd],
                    &v[t * kvd..(t + 1) * kvd],
                );
            }
            drop(rope);
            let attention = span(Op::Attention);
            self.attention(il, &q, batch, &where_, kv, &mut att, pool);
            drop(attention);
            seen(il, "attn_output", &att);
            self.project(&l.wo, &att, nh * hd, &mut o, pool);
            delta(il, Proj::O, &att, &mut o);
            let norm = span(Op::Norm);
            if let Some(w) = &l.post_attn_norm {
                norm_rows_in_place(&mut o, w, hp.rms_eps, d);
            }
            drop(norm);
            let residual = span(Op::Residual);
            add(&mut x, &o);
            drop(residual);
            let norm = span(Op::Norm);
            norm_rows(&x, &l.ffn_norm, hp.rms_eps, d, &mut xn);
            drop(norm);
            if !hp.fused_gate_up {
                seen(il, "ffn_gate", &xn);
            }
            seen(il, "ffn_up", &xn);
            {
                let mut acts = ActSet::new(&xn, n, d, pool);
                let quantize = span(Op::Quantize);
                acts.prepare(&[&l.gate, &l.up]);
                drop(quantize);
                let _m = span(Op::Matmul);
                let jobs = [(&l.gate, &mut gate), (&l.up, &mut up)];
                matmul_many(
                    &mut jobs.map(|(w, out)| (w, acts.get(w), &mut out[..])),
                    pool,
                );
            }
            delta(il, Proj::Gate, &xn, &mut gate);
            delta(il, Proj::Up, &xn, &mut up);
            // gate = act(gate) * up, rows shared out over the pool for prompts.
            let activation = span(Op::Activation);
            let (gp, ff) = (SyncPtr(gate.as_mut_ptr()), hp.n_ff);
            let tasks = if n >= 8 { pool.n_threads() } else { 1 };
            pool.run(tasks, &|task| {
                let rows = crate::pool::split(n, tasks, task);
                // SAFETY: each task takes its own rows of `gate`, which outlives the loop.
                let g = unsafe {
                    std::slice::from_raw_parts_mut(gp.get().add(rows.start * ff), rows.len() * ff)
                };
                let u = &up[rows.start * ff..rows.end * ff];
                match hp.activation {
                    Activation::Silu => ops::silu_mul(g, u),
                    Activation::Gelu => ops::gelu_mul(g, u),
                }
            });
            drop(activation);
            seen(il, "ffn_down", &gate);
            self.project(&l.down, &gate, hp.n_ff, &mut o, pool);
            delta(il, Proj::Down, &gate, &mut o);
            let norm = span(Op::Norm);
            if let Some(w) = &l.post_ffn_norm {
                norm_rows_in_place(&mut o, w, hp.rms_eps, d);
            }
            drop(norm);
            let _r = span(Op::Residual);
            add(&mut x, &o);
        }
        let _logits = span(Op::Logits);
        let rows = logit_rows(batch);
        let mut sel = vec![0f32; rows.len() * d];
        for (j, &r) in rows.iter().enumerate() {
            ops::rms_norm(
                &x[r * d..(r + 1) * d],
                &self.output_norm,
                hp.rms_eps,
                &mut sel[j * d..(j + 1) * d],
            );
        }
        let nv = hp.n_vocab;
        let mut logits = vec![0f32; rows.len() * nv];
        matmul(
            &self.output,
            ActSet::new(&sel, rows.len(), d, pool).for_weight(&self.output),
            &mut logits,
            pool,
        );
        if lora.iter().any(|r| r.lora.output().is_some()) {
            // The output's rows are the batch's logit rows, not its token rows.
            let out_rows = lora_rows(&seq_loras, batch.iter().map(|b| b.logit_range().len()));
            let _s = span(Op::Lora);
            apply_lora(&out_rows, |l| l.output(), &sel, &mut logits, pool);
        }
        Ok(split_logits(batch, &logits, nv))
    }

    /// `out = input · wᵀ` for `cols`-wide input rows: the activations quantized for `w`, then the product (each
    /// step a span of its own for `lar bench --profile`).
    fn project(&self, w: &Weight, input: &[f32], cols: usize, out: &mut [f32], pool: &ThreadPool) {
        let mut acts = ActSet::new(input, input.len() / cols, cols, pool);
        let quantize = span(Op::Quantize);
        acts.prepare(&[w]);
        drop(quantize);
        let _m = span(Op::Matmul);
        matmul(w, acts.get(w), out, pool);
    }

    /// Causal (and, on sliding-window layers, windowed) attention of every new token over its sequence's cache:
    /// the tiled kernel of [`crate::attention`].
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: usize,
        q: &[f32],
        batch: &[SeqBatch],
        where_: &[(usize, usize)],
        kv: &KvStore,
        out: &mut [f32],
        pool: &ThreadPool,
    ) {
        let hp = &self.hp;
        let a = crate::attention::Attn {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: hp.attn_scale,
            window: hp.sliding_window.filter(|_| hp.is_swa_layer(layer)),
            layer,
            q,
            batch,
            where_,
            kv,
        };
        crate::attention::attention(&a, out, pool);
    }
}

/// The rows (sequences of `lens` rows laid end to end) of the sequences that run with an adapter.
fn lora_rows<'a>(
    seq_loras: &[Option<(&'a Lora, f32)>],
    lens: impl Iterator<Item = usize>,
) -> Vec<Rows<'a>> {
    let mut start = 0;
    let mut out = Vec::new();
    for (l, len) in seq_loras.iter().zip(lens) {
        if let Some((lora, scale)) = *l {
            out.push(Rows {
                rows: start..start + len,
                lora,
                scale,
            });
        }
        start += len;
    }
    out
}

/// The rows of a batch's tokens (laid end to end) whose logits are asked for ([`SeqBatch::logit_range`]).
pub(crate) fn logit_rows(batch: &[SeqBatch]) -> Vec<usize> {
    let mut rows = Vec::new();
    let mut start = 0;
    for sb in batch {
        let r = sb.logit_range();
        rows.extend(start + r.start..start + r.end);
        start += sb.tokens.len();
    }
    rows
}

/// `logits` (`nv` per row of [`logit_rows`]) handed back per sequence.
pub(crate) fn split_logits(batch: &[SeqBatch], logits: &[f32], nv: usize) -> Vec<Vec<f32>> {
    let mut rows = logits.chunks_exact(nv);
    batch
        .iter()
        .map(|sb| {
            let take = sb.logit_range().len();
            rows.by_ref().take(take).flatten().copied().collect()
        })
        .collect()
}

fn norm_rows(x: &[f32], w: &[f32], eps: f32, d: usize, out: &mut [f32]) {
    for (xi, oi) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        ops::rms_norm(xi, w, eps, oi);
    }
}

fn norm_rows_in_place(x: &mut [f32], w: &[f32], eps: f32, d: usize) {
    for row in x.chunks_exact_mut(d) {
        norm_in_place(row, w, eps);
    }
}

fn norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let mut tmp = [0f32; 8192];
    if x.len() <= tmp.len() {
        let t = &mut tmp[..x.len()];
        ops::rms_norm(x, w, eps, t);
        x.copy_from_slice(t);
    } else {
        let src = x.to_vec();
        ops::rms_norm(&src, w, eps, x);
    }
}

#[cfg(test)]
mod packing_tests {
    use super::*;
    use crate::quant::{GgmlType, SimdLevel, simd_level};

    /// On an AVX-512 VNNI machine every Q4_K, Q5_0, Q6_K and Q8_0 projection of Gemma 3 is repacked at load (the
    /// golden tests would also pass on the file's layout, so this is what shows the packed kernels are the ones
    /// running), and so is its tied output matrix (a copy); the embedding table, read row by row, stays in the
    /// file's layout.
    #[test]
    fn projections_are_repacked_where_the_cpu_has_the_kernels() {
        let path = lar_testdata::model(lar_testdata::GEMMA3);
        let file = crate::open_model(&path).expect("Gemma 3 test model");
        let m = Model::from_gguf(Arc::new(file)).expect("loads");
        let vnni = simd_level() == SimdLevel::Avx512Vnni;
        let mut packed = 0;
        for l in &m.layers {
            for w in [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down] {
                let packable = matches!(
                    w.ty,
                    GgmlType::Q4_K | GgmlType::Q5_0 | GgmlType::Q6_K | GgmlType::Q8_0
                );
                assert_eq!(w.is_packed(), vnni && packable, "{w:?}");
                packed += w.is_packed() as usize;
            }
        }
        assert!(!m.tok_embd.is_packed());
        assert_eq!(m.output.is_packed(), vnni);
        if vnni {
            assert_eq!(
                packed,
                27 + 81 + 9 + 9,
                "Gemma 3 270M Q4_K_M: 27 Q4_K, 81 Q5_0, 9 Q6_K, 9 Q8_0 projections"
            );
        }
    }
}
