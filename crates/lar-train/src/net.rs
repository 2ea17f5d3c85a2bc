//! The loss of a batch and its gradient with respect to the adapter, over the model's frozen weights.
//!
//! The forward is the engine's math (same norms, rotary embeddings, activations, quantized matmuls), run over a
//! batch of packed sequences. Each block's activations ([`Tape`]) are kept from the forward for the backward while
//! they fit the net's activation budget ([`Net::keep_bytes`]); past it, gradient checkpointing: the forward keeps
//! only the block's input, and the backward runs that block's forward again from it. The two give the same bits
//! (the forward is the same function, dropout masks are keyed), so the budget trades memory for time only: with
//! none, memory is the weights, the adapter and its optimizer state, one residual row per token and block, and one
//! block's activations; with room for every block, a step is one forward and one backward instead of two forwards.
//! The output head's logits are computed only for the tokens that carry loss, a few rows at a time.
//!
//! `reference: true` swaps every frozen product for its plain twin (dequantized rows, f32 sums): the exact function
//! the finite-difference checks differentiate.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use lar_kernels::ops::{add, add_bias};
use lar_kernels::pool::ThreadPool;
use lar_kernels::tensor::{ActSet, Weight, matmul};
use lar_models::Model;
use lar_models::model::Layer;

use crate::adapter::Adapter;
use crate::attention::{self, Probs, Shape};
use crate::dropout;
use crate::error::{Error, Result};
use crate::linear::{self, Pair};
use crate::ops;
use crate::par;

/// Packed sequences and what each position is trained to predict.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tokens: Vec<u32>,
    /// Each sequence's range of `tokens`; positions restart at 0 in each.
    pub segs: Vec<Range<usize>>,
    /// `targets[t]`: the token position `t` should predict (its sequence's next token).
    pub targets: Vec<u32>,
    /// The weight of position `t`'s loss (0: not trained on).
    pub weights: Vec<f32>,
    /// A teacher's distribution over its top tokens for position `t` (distillation: the loss is the KL divergence
    /// from it instead of cross-entropy); empty where the target is the next token.
    pub soft: Vec<Vec<(u32, f32)>>,
}

impl Batch {
    /// Appends one sequence; `loss[i]` says whether token `i` is trained on (predicted from token `i - 1`).
    pub fn push(&mut self, tokens: &[u32], loss: &[bool]) {
        let start = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        self.segs.push(start..self.tokens.len());
        for i in 0..tokens.len() {
            let next = tokens.get(i + 1).copied();
            self.targets.push(next.unwrap_or(0));
            let trained = next.is_some() && loss.get(i + 1).copied().unwrap_or(false);
            self.weights.push(if trained { 1.0 } else { 0.0 });
        }
    }

    /// Appends one sequence trained to match `soft[i]` at each position `i` (the teacher's distribution of the
    /// token after it); positions with an empty one carry no loss.
    pub fn push_soft(&mut self, tokens: &[u32], soft: &[Vec<(u32, f32)>]) {
        let start = self.tokens.len();
        self.soft.resize(start, Vec::new());
        self.tokens.extend_from_slice(tokens);
        self.segs.push(start..self.tokens.len());
        for i in 0..tokens.len() {
            let s = soft.get(i).cloned().unwrap_or_default();
            self.targets.push(tokens.get(i + 1).copied().unwrap_or(0));
            self.weights.push(if s.is_empty() { 0.0 } else { 1.0 });
            self.soft.push(s);
        }
    }

    /// Positions that carry loss.
    pub fn n_loss(&self) -> usize {
        self.weights.iter().filter(|w| **w != 0.0).count()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// LoRA dropout: the probability and the key of this batch's masks (a block's masks are the same when its forward
/// runs again in the backward).
#[derive(Clone, Copy, Debug, Default)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
}

/// A model's frozen weights seen as a function of the adapter.
pub struct Net<'a> {
    pub model: &'a Model,
    pub pool: &'a ThreadPool,
    /// Plain twins instead of the engine's kernels (finite-difference checks).
    pub reference: bool,
    /// Bytes of block activations a step may keep from its forward for its backward; blocks past it are computed
    /// again (gradient checkpointing). 0 (what [`Net::new`] sets, and what `lar plan --finetune` plans): every
    /// block again.
    pub keep_bytes: usize,
    /// What the last [`Net::loss_and_grad`] kept: blocks, bytes.
    kept: [AtomicUsize; 2],
}

/// What a projection's LoRA keeps for its backward: `u = x · Aᵀ`, and the dropout whose mask its input had (made
/// again from its key in the backward, not kept).
#[derive(Default)]
struct Saved {
    drop: Option<Dropout>,
    u: Vec<f32>,
}

/// One block's activations, kept for its backward.
#[derive(Default)]
struct Tape {
    xn1: Vec<f32>,
    q_raw: Vec<f32>,
    k_raw: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    probs: Option<Probs>,
    att: Vec<f32>,
    o_raw: Vec<f32>,
    x2: Vec<f32>,
    xn2: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    h: Vec<f32>,
    down_raw: Vec<f32>,
    lora: [Option<Saved>; 7],
}

impl Saved {
    fn bytes(&self) -> usize {
        4 * self.u.len()
    }
}

impl Tape {
    /// Bytes it holds.
    fn bytes(&self) -> usize {
        let rows = [
            &self.xn1,
            &self.q_raw,
            &self.k_raw,
            &self.q,
            &self.k,
            &self.v,
            &self.att,
            &self.o_raw,
            &self.x2,
            &self.xn2,
            &self.gate,
            &self.up,
            &self.h,
            &self.down_raw,
        ];
        4 * rows.iter().map(|v| v.len()).sum::<usize>()
            + self.probs.as_ref().map_or(0, Probs::bytes)
            + self.lora.iter().flatten().map(Saved::bytes).sum::<usize>()
    }
}

const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// Rows of logits computed at once in the output head (each pass reads the whole output matrix, in the backward
/// converting it for the transposed product: fewer passes, less of that).
pub const HEAD_ROWS: usize = 64;

impl<'a> Net<'a> {
    pub fn new(model: &'a Model, pool: &'a ThreadPool) -> Self {
        Self {
            model,
            pool,
            reference: false,
            keep_bytes: 0,
            kept: Default::default(),
        }
    }

    /// The blocks whose activations the last [`Net::loss_and_grad`] kept from its forward (the others it
    /// computed again), and their bytes.
    pub fn kept(&self) -> (usize, usize) {
        (self.kept[0].load(Relaxed), self.kept[1].load(Relaxed))
    }

    /// Checks that this model can be trained here and the batch fits it.
    fn check(&self, ad: &Adapter, batch: &Batch) -> Result<()> {
        let hp = &self.model.hp;
        if ad.layers.len() != hp.n_layers {
            return Err(Error::Invalid(format!(
                "the adapter has {} blocks, the model {}",
                ad.layers.len(),
                hp.n_layers
            )));
        }
        let outside = |t: u32| t as usize >= hp.n_vocab;
        if let Some(t) = batch
            .tokens
            .iter()
            .copied()
            .chain(batch.soft.iter().flatten().map(|s| s.0))
            .find(|t| outside(*t))
        {
            return Err(Error::Invalid(format!(
                "token {t} is outside the vocabulary ({})",
                hp.n_vocab
            )));
        }
        if batch.targets.len() != batch.len() || batch.weights.len() != batch.len() {
            return Err(Error::Invalid(
                "batch targets and weights do not match its tokens".into(),
            ));
        }
        Ok(())
    }

    /// Σ weight · cross-entropy of the batch, without gradients (evaluation).
    pub fn loss(&self, ad: &Adapter, batch: &Batch) -> Result<f32> {
        self.check(ad, batch)?;
        let mut x = self.embed(&batch.tokens);
        let pos = positions(&batch.segs);
        for il in 0..self.model.hp.n_layers {
            x = self.block(
                il,
                ad,
                &x,
                batch,
                &pos,
                Dropout::default(),
                &mut Tape::default(),
            );
        }
        Ok(self.head(&x, batch, None))
    }

    /// Σ weight · cross-entropy of the batch; adds its gradient with respect to the adapter to `grads`.
    pub fn loss_and_grad(
        &self,
        ad: &Adapter,
        batch: &Batch,
        dropout: Dropout,
        grads: &mut Adapter,
    ) -> Result<f32> {
        self.check(ad, batch)?;
        let hp = &self.model.hp;
        let pos = positions(&batch.segs);
        // The forward, keeping each block's input, and its activations while they fit the budget.
        let mut inputs = Vec::with_capacity(hp.n_layers);
        let mut tapes = Vec::with_capacity(hp.n_layers);
        let mut kept = 0;
        let mut x = self.embed(&batch.tokens);
        for il in 0..hp.n_layers {
            let mut tape = Tape::default();
            let next = self.block(il, ad, &x, batch, &pos, dropout, &mut tape);
            let keep = kept + tape.bytes() <= self.keep_bytes;
            if keep {
                kept += tape.bytes();
            }
            tapes.push(keep.then_some(tape));
            inputs.push(std::mem::replace(&mut x, next));
        }
        self.kept[0].store(tapes.iter().flatten().count(), Relaxed);
        self.kept[1].store(kept, Relaxed);
        let mut dx = vec![0f32; x.len()];
        let loss = self.head(&x, batch, Some(&mut dx));
        drop(x);
        for il in (0..hp.n_layers).rev() {
            let input = inputs.pop().expect("one input per block");
            let tape = match tapes.pop().flatten() {
                Some(t) => t,
                None => {
                    let mut t = Tape::default();
                    self.block(il, ad, &input, batch, &pos, dropout, &mut t);
                    t
                }
            };
            dx = self.block_backward(il, ad, &input, batch, &pos, tape, &dx, grads);
        }
        Ok(loss)
    }

    fn embed(&self, tokens: &[u32]) -> Vec<f32> {
        let hp = &self.model.hp;
        let d = hp.n_embd;
        let mut x = vec![0f32; tokens.len() * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            self.model.token_embedding().dequantize_row(t as usize, row);
            if hp.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= hp.embed_scale);
            }
        }
        x
    }

    fn frozen(&self, w: &Weight, x: &[f32], out: &mut [f32]) {
        if self.reference {
            linear::frozen_reference(w, x, out);
        } else {
            linear::frozen(w, x, out, self.pool);
        }
    }

    /// `dx += dy · w` (the fast path or its twin), then a packed weight's file pages given back.
    fn frozen_backward(&self, w: &Weight, dy: &[f32], dx: &mut [f32]) {
        self.frozen_backward_resident(w, dy, dx);
        w.release_file_pages();
    }

    /// [`Net::frozen_backward`] leaving a packed weight's file pages resident (the caller gives them back).
    fn frozen_backward_resident(&self, w: &Weight, dy: &[f32], dx: &mut [f32]) {
        if self.reference {
            linear::frozen_backward_reference(w, dy, dx);
        } else {
            linear::frozen_backward_resident(w, dy, dx, self.pool);
        }
    }

    /// `out = x · Wᵀ (+ the LoRA's delta)`, keeping what the LoRA's backward needs. `acts`: `x` as the engine's
    /// kernels read it, shared by the projections of the same input (q, k and v; gate and up).
    #[allow(clippy::too_many_arguments)]
    fn project(
        &self,
        il: usize,
        t: usize,
        w: &Weight,
        ad: &Adapter,
        drop: Dropout,
        (x, acts): (&[f32], &mut ActSet),
        out: &mut [f32],
    ) -> Option<Saved> {
        if self.reference {
            linear::frozen_reference(w, x, out);
        } else {
            matmul(w, acts.for_weight(w), out, self.pool);
        }
        let p = ad.pair(il, t)?;
        let n = x.len() / p.n_in;
        let mut saved = Saved {
            u: vec![0f32; n * p.rank],
            ..Default::default()
        };
        if drop.p > 0.0 {
            let mut xd = x.to_vec();
            dropout::apply(drop, il, t, &mut xd, p.n_in, self.pool);
            linear::lora_forward(p, ad.scale(), &xd, &mut saved.u, out, self.pool);
            saved.drop = Some(drop);
        } else {
            linear::lora_forward(p, ad.scale(), x, &mut saved.u, out, self.pool);
        }
        Some(saved)
    }

    /// Adds `dy · W` and the LoRA's share to `dx`, and the LoRA's gradient to `grads`.
    #[allow(clippy::too_many_arguments)]
    fn project_backward(
        &self,
        il: usize,
        t: usize,
        w: &Weight,
        ad: &Adapter,
        saved: Option<&Saved>,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        grads: &mut Adapter,
    ) {
        self.frozen_backward(w, dy, dx);
        let (Some(p), Some(s)) = (ad.pair(il, t), saved) else {
            return;
        };
        let g = grads.layers[il][t]
            .as_mut()
            .expect("the gradient has the adapter's shape");
        match s.drop {
            Some(drop) => {
                let mut xd = x.to_vec();
                dropout::apply(drop, il, t, &mut xd, p.n_in, self.pool);
                let mut dxd = vec![0f32; x.len()];
                linear::lora_backward(p, ad.scale(), &xd, &s.u, dy, g, &mut dxd, self.pool);
                dropout::apply(drop, il, t, &mut dxd, p.n_in, self.pool);
                add(dx, &dxd);
            }
            None => linear::lora_backward(p, ad.scale(), x, &s.u, dy, g, dx, self.pool),
        }
    }

    /// RMS norm of each `n_embd`-wide row of `x` into `out`, rows shared out over the pool.
    fn norm_rows(&self, x: &[f32], w: &[f32], out: &mut [f32]) {
        let (d, eps) = (self.model.hp.n_embd, self.model.hp.rms_eps);
        par::rows(self.pool, x.len() / d, out, |r, o| {
            ops::rms_norm_rows(&x[r.start * d..r.end * d], w, eps, d, o)
        });
    }

    /// The backward of [`Net::norm_rows`] added to `dx`, rows shared out over the pool.
    fn norm_rows_backward_add(&self, x: &[f32], w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (d, eps) = (self.model.hp.n_embd, self.model.hp.rms_eps);
        par::rows(self.pool, x.len() / d, dx, |r, o| {
            let at = r.start * d..r.end * d;
            ops::rms_norm_rows_backward_add(&x[at.clone()], w, eps, d, &dy[at], o)
        });
    }

    fn shape(&self, il: usize) -> Shape {
        let hp = &self.model.hp;
        Shape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim,
            scale: hp.attn_scale,
            window: hp.sliding_window.filter(|_| hp.is_swa_layer(il)),
        }
    }

    /// Block `il`'s forward from its input `x`; its activations go to `tape`.
    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        il: usize,
        ad: &Adapter,
        x: &[f32],
        batch: &Batch,
        pos: &[usize],
        drop: Dropout,
        tape: &mut Tape,
    ) -> Vec<f32> {
        let hp = &self.model.hp;
        let l: &Layer = self.model.layer(il);
        let (d, hd, nh, nkv, ff) = (hp.n_embd, hp.head_dim, hp.n_head, hp.n_head_kv, hp.n_ff);
        let n = batch.len();
        let eps = hp.rms_eps;
        tape.xn1 = vec![0f32; n * d];
        self.norm_rows(x, &l.attn_norm, &mut tape.xn1);
        let mut q = vec![0f32; n * nh * hd];
        let mut k = vec![0f32; n * nkv * hd];
        let mut v = vec![0f32; n * nkv * hd];
        let mut acts = ActSet::new(&tape.xn1, n, d, self.pool);
        let x1 = (&tape.xn1[..], &mut acts);
        tape.lora[Q] = self.project(il, Q, &l.wq, ad, drop, (x1.0, &mut *x1.1), &mut q);
        tape.lora[K] = self.project(il, K, &l.wk, ad, drop, (x1.0, &mut *x1.1), &mut k);
        tape.lora[V] = self.project(il, V, &l.wv, ad, drop, x1, &mut v);
        add_bias(&mut q, l.bq.as_deref());
        add_bias(&mut k, l.bk.as_deref());
        add_bias(&mut v, l.bv.as_deref());
        // The raw heads only where a per-head norm's backward needs them.
        if l.q_norm.is_some() {
            tape.q_raw = q.clone();
        }
        if l.k_norm.is_some() {
            tape.k_raw = k.clone();
        }
        let freqs = self.model.rope_freqs(il);
        for (heads, norm) in [(&mut q, &l.q_norm), (&mut k, &l.k_norm)] {
            let per_tok = heads.len() / n.max(1);
            par::rows(self.pool, n, heads, |toks, rows| {
                for (t, row) in toks.zip(rows.chunks_exact_mut(per_tok)) {
                    for head in row.chunks_exact_mut(hd) {
                        if let Some(w) = norm {
                            let src = head.to_vec();
                            lar_kernels::ops::rms_norm(&src, w, eps, head);
                        }
                        lar_kernels::ops::rope(
                            &mut head[..hp.rope_dim],
                            pos[t],
                            freqs,
                            hp.rope_neox,
                        );
                    }
                }
            });
        }
        let mut att = vec![0f32; n * nh * hd];
        tape.probs = Some(attention::forward(
            &self.shape(il),
            &batch.segs,
            &q,
            &k,
            &v,
            &mut att,
            self.pool,
        ));
        (tape.q, tape.k, tape.v) = (q, k, v);
        let mut o = vec![0f32; n * d];
        let mut acts = ActSet::new(&att, n, nh * hd, self.pool);
        tape.lora[O] = self.project(il, O, &l.wo, ad, drop, (&att, &mut acts), &mut o);
        tape.att = att;
        if let Some(w) = &l.post_attn_norm {
            tape.o_raw = o.clone();
            self.norm_rows(&tape.o_raw, w, &mut o);
        }
        let mut x2 = x.to_vec();
        add(&mut x2, &o);
        tape.xn2 = vec![0f32; n * d];
        self.norm_rows(&x2, &l.ffn_norm, &mut tape.xn2);
        tape.x2 = x2;
        let (mut gate, mut up) = (vec![0f32; n * ff], vec![0f32; n * ff]);
        let mut acts = ActSet::new(&tape.xn2, n, d, self.pool);
        let x2 = (&tape.xn2[..], &mut acts);
        tape.lora[GATE] = self.project(il, GATE, &l.gate, ad, drop, (x2.0, &mut *x2.1), &mut gate);
        tape.lora[UP] = self.project(il, UP, &l.up, ad, drop, x2, &mut up);
        let mut h = vec![0f32; n * ff];
        par::rows(self.pool, n, &mut h, |r, h| {
            let at = r.start * ff..r.end * ff;
            ops::gated(hp.activation, &gate[at.clone()], &up[at], h)
        });
        (tape.gate, tape.up) = (gate, up);
        let mut down = vec![0f32; n * d];
        let mut acts = ActSet::new(&h, n, ff, self.pool);
        tape.lora[DOWN] = self.project(il, DOWN, &l.down, ad, drop, (&h, &mut acts), &mut down);
        tape.h = h;
        if let Some(w) = &l.post_ffn_norm {
            tape.down_raw = down.clone();
            self.norm_rows(&tape.down_raw, w, &mut down);
        }
        let mut out = tape.x2.clone();
        add(&mut out, &down);
        out
    }

    /// Block `il`'s backward: the gradient of its input from that of its output; its LoRA's gradients to `grads`.
    #[allow(clippy::too_many_arguments)]
    fn block_backward(
        &self,
        il: usize,
        ad: &Adapter,
        x: &[f32],
        batch: &Batch,
        pos: &[usize],
        mut tape: Tape,
        dout: &[f32],
        grads: &mut Adapter,
    ) -> Vec<f32> {
        let hp = &self.model.hp;
        let l: &Layer = self.model.layer(il);
        let (d, hd, nh, nkv, ff) = (hp.n_embd, hp.head_dim, hp.n_head, hp.n_head_kv, hp.n_ff);
        let n = batch.len();
        let eps = hp.rms_eps;
        // out = x2 + post_ffn_norm(down_raw)
        let mut dx2 = dout.to_vec();
        let mut ddown = match &l.post_ffn_norm {
            Some(w) => {
                let mut g = vec![0f32; n * d];
                self.norm_rows_backward_add(&tape.down_raw, w, dout, &mut g);
                g
            }
            None => dout.to_vec(),
        };
        let mut dh = vec![0f32; n * ff];
        let saved = tape.lora[DOWN].as_ref();
        self.project_backward(
            il, DOWN, &l.down, ad, saved, &tape.h, &ddown, &mut dh, grads,
        );
        ddown.clear();
        let (mut dgate, mut dup) = (vec![0f32; n * ff], vec![0f32; n * ff]);
        par::rows2(self.pool, n, (&mut dgate, &mut dup), |r, dg, du| {
            let at = r.start * ff..r.end * ff;
            let (g, u, dh) = (&tape.gate[at.clone()], &tape.up[at.clone()], &dh[at]);
            ops::gated_backward(hp.activation, g, u, dh, dg, du)
        });
        drop(dh);
        let mut dxn2 = vec![0f32; n * d];
        let saved = tape.lora[GATE].as_ref();
        self.project_backward(
            il, GATE, &l.gate, ad, saved, &tape.xn2, &dgate, &mut dxn2, grads,
        );
        let saved = tape.lora[UP].as_ref();
        self.project_backward(il, UP, &l.up, ad, saved, &tape.xn2, &dup, &mut dxn2, grads);
        self.norm_rows_backward_add(&tape.x2, &l.ffn_norm, &dxn2, &mut dx2);
        // x2 = x + post_attn_norm(o_raw)
        let mut dx = dx2.clone();
        let do_raw = match &l.post_attn_norm {
            Some(w) => {
                let mut g = vec![0f32; n * d];
                self.norm_rows_backward_add(&tape.o_raw, w, &dx2, &mut g);
                g
            }
            None => dx2,
        };
        let mut datt = vec![0f32; n * nh * hd];
        let saved = tape.lora[O].as_ref();
        self.project_backward(
            il, O, &l.wo, ad, saved, &tape.att, &do_raw, &mut datt, grads,
        );
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; n * nh * hd],
            vec![0f32; n * nkv * hd],
            vec![0f32; n * nkv * hd],
        );
        let probs = tape.probs.take().expect("the block's forward ran");
        attention::backward(
            &self.shape(il),
            &batch.segs,
            (&tape.q, &tape.k, &tape.v),
            &tape.att,
            probs,
            &datt,
            (&mut dq, &mut dk, &mut dv),
            self.pool,
        );
        let freqs = self.model.rope_freqs(il);
        for (grad, raw, norm) in [
            (&mut dq, &tape.q_raw, &l.q_norm),
            (&mut dk, &tape.k_raw, &l.k_norm),
        ] {
            let per_tok = grad.len() / n;
            par::rows(self.pool, n, grad, |toks, rows| {
                for (t, row) in toks.zip(rows.chunks_exact_mut(per_tok)) {
                    for (h, head) in row.chunks_exact_mut(hd).enumerate() {
                        ops::rope_backward(&mut head[..hp.rope_dim], pos[t], freqs, hp.rope_neox);
                        if let Some(w) = norm {
                            // The raw heads are on the tape wherever there is a norm.
                            let raw_head = &raw[t * per_tok + h * hd..][..hd];
                            let g = head.to_vec();
                            ops::rms_norm_backward(raw_head, w, eps, &g, head);
                        }
                    }
                }
            });
        }
        let mut dxn1 = vec![0f32; n * d];
        for (t, w, g) in [(Q, &l.wq, &dq), (K, &l.wk, &dk), (V, &l.wv, &dv)] {
            let saved = tape.lora[t].as_ref();
            self.project_backward(il, t, w, ad, saved, &tape.xn1, g, &mut dxn1, grads);
        }
        self.norm_rows_backward_add(x, &l.attn_norm, &dxn1, &mut dx);
        dx
    }

    /// The output head over the rows that carry loss: Σ weight · cross-entropy; with `dx`, the gradient of the
    /// final residual stream `x`.
    fn head(&self, x: &[f32], batch: &Batch, mut dx: Option<&mut Vec<f32>>) -> f32 {
        let hp = &self.model.hp;
        let (d, nv) = (hp.n_embd, hp.n_vocab);
        let (output, norm) = self.model.output_head();
        let rows: Vec<usize> = (0..batch.len())
            .filter(|&t| batch.weights[t] != 0.0)
            .collect();
        let mut loss = 0f32;
        for chunk in rows.chunks(HEAD_ROWS) {
            let mut xn = vec![0f32; chunk.len() * d];
            par::rows(self.pool, chunk.len(), &mut xn, |js, out| {
                for (j, o) in js.zip(out.chunks_exact_mut(d)) {
                    let t = chunk[j];
                    lar_kernels::ops::rms_norm(&x[t * d..(t + 1) * d], norm, hp.rms_eps, o);
                }
            });
            let mut logits = vec![0f32; chunk.len() * nv];
            self.frozen(output, &xn, &mut logits);
            // Each row's loss (rows shared out), then their sum in row order.
            let mut each = vec![0f32; chunk.len()];
            par::rows2(
                self.pool,
                chunk.len(),
                (&mut logits, &mut each),
                |js, rows, ls| {
                    for ((j, row), l) in js.zip(rows.chunks_exact_mut(nv)).zip(ls) {
                        let t = chunk[j];
                        let w = batch.weights[t];
                        *l = w * match batch.soft.get(t).filter(|s| !s.is_empty()) {
                            Some(teacher) => ops::kl_topk(row, teacher, w),
                            None => ops::cross_entropy(row, batch.targets[t] as usize, w),
                        };
                    }
                },
            );
            for l in each {
                loss += l;
            }
            if let Some(dx) = dx.as_deref_mut() {
                let mut dxn = vec![0f32; chunk.len() * d];
                self.frozen_backward_resident(output, &logits, &mut dxn);
                for (j, &t) in chunk.iter().enumerate() {
                    let mut g = vec![0f32; d];
                    ops::rms_norm_backward(
                        &x[t * d..(t + 1) * d],
                        norm,
                        hp.rms_eps,
                        &dxn[j * d..(j + 1) * d],
                        &mut g,
                    );
                    for (a, b) in dx[t * d..(t + 1) * d].iter_mut().zip(&g) {
                        *a += b;
                    }
                }
            }
        }
        // The chunks' transposed products read the output matrix's rows from the file: given back once here.
        output.release_file_pages();
        loss
    }
}

/// Each token's position within its sequence.
fn positions(segs: &[Range<usize>]) -> Vec<usize> {
    segs.iter().flat_map(|s| 0..s.len()).collect()
}

/// The pair of block `il`'s projection `t`, for tests that perturb one weight.
pub fn pair_mut(ad: &mut Adapter, il: usize, t: usize) -> Option<&mut Pair> {
    ad.layers.get_mut(il)?[t].as_mut()
}
