//! Causal self-attention for training, forward and backward, over a batch of packed sequences (segments laid end
//! to end, each attending only to itself) with grouped KV heads and an optional sliding window.
//!
//! Training needs the softmax probabilities again in the backward, so the forward keeps them (one `len × len`
//! matrix per segment and head; under gradient checkpointing only one block's are alive at a time). The work is
//! shared out per (segment, KV head): each task owns the query heads of its group, so every gradient row it writes
//! is its own.

use std::ops::Range;

use lar_kernels::pool::ThreadPool;
use lar_kernels::tensor::SyncPtr;

use crate::simd::{Task, axpy, dot, dots, run_fast};

/// The attention's shape: heads, grouped KV heads, head size, score scale and sliding window.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// A query at `p` sees keys `p + 1 - window ..= p` (as the engine's attention).
    pub window: Option<usize>,
}

impl Shape {
    fn first_key(&self, i: usize) -> usize {
        self.window.map_or(0, |w| (i + 1).saturating_sub(w))
    }
}

/// The probabilities of a forward, per (segment, head).
pub struct Probs {
    data: Vec<f32>,
    offsets: Vec<usize>,
}

/// Where each (segment, head)'s `len × len` matrix starts, and the total size.
fn layout(segs: &[Range<usize>], n_head: usize) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(segs.len() * n_head);
    let mut at = 0;
    for s in segs {
        for _ in 0..n_head {
            offsets.push(at);
            at += s.len() * s.len();
        }
    }
    (offsets, at)
}

/// `out` (`[T, n_head * head_dim]`) of queries `q` over keys `k` and values `v` (`[T, n_head_kv * head_dim]`),
/// each segment causal over itself; returns the probabilities the backward needs.
pub fn forward(
    sh: &Shape,
    segs: &[Range<usize>],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    pool: &ThreadPool,
) -> Probs {
    let (nh, nkv) = (sh.n_head, sh.n_head_kv);
    let (offsets, total) = layout(segs, nh);
    let mut data = vec![0f32; total];
    let (pp, op) = (SyncPtr(data.as_mut_ptr()), SyncPtr(out.as_mut_ptr()));
    let job = Fwd {
        sh,
        segs,
        offsets: &offsets,
        q,
        k,
        v,
        pp,
        op,
    };
    pool.run(segs.len() * nkv, &|task| run_fast(&job, task));
    Probs { data, offsets }
}

/// One forward task: a (segment, KV head)'s query heads.
struct Fwd<'a> {
    sh: &'a Shape,
    segs: &'a [Range<usize>],
    offsets: &'a [usize],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    pp: SyncPtr<f32>,
    op: SyncPtr<f32>,
}

impl Task for Fwd<'_> {
    #[inline(always)]
    fn run(&self, task: usize) {
        let Fwd {
            sh,
            segs,
            offsets,
            q,
            k,
            v,
            pp,
            op,
        } = *self;
        let (hd, nh, nkv) = (sh.head_dim, sh.n_head, sh.n_head_kv);
        let (qw, kw, group) = (nh * hd, nkv * hd, nh / nkv);
        let (si, g) = (task / nkv, task % nkv);
        let seg = &segs[si];
        let len = seg.len();
        for h in g * group..(g + 1) * group {
            // SAFETY: this task alone owns head h's matrix of this segment and head h's columns of its rows.
            let p = unsafe {
                std::slice::from_raw_parts_mut(pp.get().add(offsets[si * nh + h]), len * len)
            };
            for i in 0..len {
                let qi = &q[(seg.start + i) * qw + h * hd..][..hd];
                let row = &mut p[i * len..(i + 1) * len];
                let lo = sh.first_key(i);
                let key = |j: usize| &k[(seg.start + j) * kw + g * hd..][..hd];
                dots(qi, key, lo..i + 1, &mut row[lo..=i]);
                let mut max = f32::NEG_INFINITY;
                for s in &mut row[lo..=i] {
                    *s *= sh.scale;
                    max = max.max(*s);
                }
                let mut sum = 0f32;
                for x in &mut row[lo..=i] {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                let inv = 1.0 / sum;
                // SAFETY: as above.
                let o = unsafe {
                    std::slice::from_raw_parts_mut(op.get().add((seg.start + i) * qw + h * hd), hd)
                };
                o.fill(0.0);
                for j in lo..=i {
                    row[j] *= inv;
                    let vj = &v[(seg.start + j) * kw + g * hd..][..hd];
                    axpy(row[j], vj, o);
                }
            }
        }
    }
}

/// Gradients of [`forward`]: `dq`, `dk`, `dv` (overwritten) from `dout`, given the forward's inputs, output and
/// probabilities.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    sh: &Shape,
    segs: &[Range<usize>],
    (q, k, v): (&[f32], &[f32], &[f32]),
    out: &[f32],
    probs: &Probs,
    dout: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    pool: &ThreadPool,
) {
    let nkv = sh.n_head_kv;
    dq.fill(0.0);
    dk.fill(0.0);
    dv.fill(0.0);
    let (qp, kp, vp) = (
        SyncPtr(dq.as_mut_ptr()),
        SyncPtr(dk.as_mut_ptr()),
        SyncPtr(dv.as_mut_ptr()),
    );
    let job = Bwd {
        sh,
        segs,
        probs,
        q,
        k,
        v,
        out,
        dout,
        qp,
        kp,
        vp,
    };
    pool.run(segs.len() * nkv, &|task| run_fast(&job, task));
}

/// One backward task: a (segment, KV head)'s query heads.
struct Bwd<'a> {
    sh: &'a Shape,
    segs: &'a [Range<usize>],
    probs: &'a Probs,
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    dout: &'a [f32],
    qp: SyncPtr<f32>,
    kp: SyncPtr<f32>,
    vp: SyncPtr<f32>,
}

impl Task for Bwd<'_> {
    #[inline(always)]
    fn run(&self, task: usize) {
        let Bwd {
            sh,
            segs,
            probs,
            q,
            k,
            v,
            out,
            dout,
            qp,
            kp,
            vp,
        } = *self;
        let (hd, nh, nkv) = (sh.head_dim, sh.n_head, sh.n_head_kv);
        let (qw, kw, group) = (nh * hd, nkv * hd, nh / nkv);
        let (si, g) = (task / nkv, task % nkv);
        let seg = &segs[si];
        let len = seg.len();
        let mut ds = vec![0f32; len];
        for h in g * group..(g + 1) * group {
            let p = &probs.data[probs.offsets[si * nh + h]..][..len * len];
            for i in 0..len {
                let t = seg.start + i;
                let lo = sh.first_key(i);
                let doi = &dout[t * qw + h * hd..][..hd];
                let c = dot(doi, &out[t * qw + h * hd..][..hd]);
                let qi = &q[t * qw + h * hd..][..hd];
                // SAFETY: rows of this segment, columns of head h (dq) and of KV head g (dk, dv): this task's only.
                let dqi =
                    unsafe { std::slice::from_raw_parts_mut(qp.get().add(t * qw + h * hd), hd) };
                let value = |j: usize| &v[(seg.start + j) * kw + g * hd..][..hd];
                dots(doi, value, lo..i + 1, &mut ds[lo..=i]);
                for j in lo..=i {
                    let pj = p[i * len + j];
                    ds[j] = pj * (ds[j] - c) * sh.scale;
                    // SAFETY: as above.
                    let dvj = unsafe {
                        std::slice::from_raw_parts_mut(
                            vp.get().add((seg.start + j) * kw + g * hd),
                            hd,
                        )
                    };
                    axpy(pj, doi, dvj);
                }
                for j in lo..=i {
                    let kj = &k[(seg.start + j) * kw + g * hd..][..hd];
                    axpy(ds[j], kj, dqi);
                    // SAFETY: as above.
                    let dkj = unsafe {
                        std::slice::from_raw_parts_mut(
                            kp.get().add((seg.start + j) * kw + g * hd),
                            hd,
                        )
                    };
                    axpy(ds[j], qi, dkj);
                }
            }
        }
    }
}
