//! Causal self-attention for training, forward and backward, over a batch of packed sequences (segments laid end
//! to end, each attending only to itself) with grouped KV heads and an optional sliding window.
//!
//! Training needs the softmax probabilities again in the backward, so the forward keeps them (one `len × len`
//! matrix per segment and head; under gradient checkpointing only one block's are alive at a time), and the
//! backward turns them into the scores' gradient in place. The work is cut into pieces of 32 rows (queries, or
//! keys for the key-side gradients) per head, so two threads have many pieces even for one sequence and three KV
//! heads; every piece owns what it writes. The products are register-blocked (`simd::combine_rows`): four output rows
//! at once, their 32-column sums held across the whole range of terms.

use std::ops::Range;

use lar_kernels::pool::ThreadPool;
use lar_kernels::tensor::SyncPtr;

use lar_kernels::ops::fast_exp;

use crate::simd::{Task, combine_rows, dot, dots, run_fast, sum};

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

    /// One past the last query of a segment of `len` that sees key `j`.
    fn queries_end(&self, j: usize, len: usize) -> usize {
        self.window.map_or(len, |w| (j + w).min(len))
    }
}

/// The probabilities of a forward, per (segment, head).
pub struct Probs {
    data: Vec<f32>,
    offsets: Vec<usize>,
}

impl Probs {
    /// Bytes it holds.
    pub fn bytes(&self) -> usize {
        4 * self.data.len() + std::mem::size_of::<usize>() * self.offsets.len()
    }
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

/// Rows (or keys) per piece of work.
const ROWS: usize = 32;

/// A piece of the work: rows (queries, or keys) `rows` of segment `seg` for head `head` (a query head, or a KV
/// head and its group).
struct Piece {
    seg: usize,
    head: usize,
    rows: Range<usize>,
}

/// A query piece as its task sees it: the segment, query head `h` and its KV head `g`, and the piece's rows of head
/// h's `len × len` matrix (the probabilities, or the scores' gradient).
struct QueryRows<'a> {
    seg: Range<usize>,
    h: usize,
    g: usize,
    rows: Range<usize>,
    p: &'a mut [f32],
}

impl Piece {
    /// This (query) piece's view of the matrices at `pp`, laid out as `offsets` says.
    ///
    /// # Safety
    /// `pp` holds the matrices of `offsets`, and no one else uses this piece's rows of them meanwhile.
    unsafe fn query_rows<'a>(
        &self,
        sh: &Shape,
        segs: &[Range<usize>],
        offsets: &[usize],
        pp: SyncPtr<f32>,
    ) -> QueryRows<'a> {
        let nh = sh.n_head;
        let (seg, rows) = (segs[self.seg].clone(), self.rows.clone());
        let len = seg.len();
        let at = offsets[self.seg * nh + self.head] + rows.start * len;
        // SAFETY: the caller's.
        let p = unsafe { std::slice::from_raw_parts_mut(pp.get().add(at), rows.len() * len) };
        QueryRows {
            seg,
            h: self.head,
            g: self.head / (nh / sh.n_head_kv),
            rows,
            p,
        }
    }
}

/// The pieces over `heads` heads; with `late_first` each segment's last rows come first (a causal query row costs
/// more the later it is, a key row the earlier, and the pool hands pieces out in order, so the dearest go first).
fn pieces(segs: &[Range<usize>], heads: usize, late_first: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    for (seg, s) in segs.iter().enumerate() {
        let mut blocks: Vec<Range<usize>> = (0..s.len())
            .step_by(ROWS)
            .map(|r| r..(r + ROWS).min(s.len()))
            .collect();
        if late_first {
            blocks.reverse();
        }
        for rows in blocks {
            for head in 0..heads {
                out.push(Piece {
                    seg,
                    head,
                    rows: rows.clone(),
                });
            }
        }
    }
    out
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
    let (offsets, total) = layout(segs, sh.n_head);
    let mut data = vec![0f32; total];
    let pieces = pieces(segs, sh.n_head, true);
    let job = Fwd {
        sh,
        segs,
        offsets: &offsets,
        pieces: &pieces,
        q,
        k,
        v,
        pp: SyncPtr(data.as_mut_ptr()),
        op: SyncPtr(out.as_mut_ptr()),
    };
    pool.run(pieces.len(), &|task| run_fast(&job, task));
    Probs { data, offsets }
}

/// The forward's work: a piece's probability rows, then its output rows.
struct Fwd<'a> {
    sh: &'a Shape,
    segs: &'a [Range<usize>],
    offsets: &'a [usize],
    pieces: &'a [Piece],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    pp: SyncPtr<f32>,
    op: SyncPtr<f32>,
}

impl Task for Fwd<'_> {
    #[inline(always)]
    fn run(&self, task: usize) {
        let Fwd { sh, q, k, v, .. } = *self;
        let (hd, nh) = (sh.head_dim, sh.n_head);
        let (qw, kw) = (nh * hd, sh.n_head_kv * hd);
        // SAFETY: the pool runs each task once, so this piece's rows are this task's alone.
        let QueryRows { seg, h, g, rows, p } =
            unsafe { self.pieces[task].query_rows(sh, self.segs, self.offsets, self.pp) };
        let len = seg.len();
        let key = |j: usize| &k[(seg.start + j) * kw + g * hd..][..hd];
        for i in rows.clone() {
            let qi = &q[(seg.start + i) * qw + h * hd..][..hd];
            let row = &mut p[(i - rows.start) * len..][..len];
            let lo = sh.first_key(i);
            dots(qi, key, lo..i + 1, &mut row[lo..=i]);
            let mut max = f32::NEG_INFINITY;
            for s in &mut row[lo..=i] {
                *s *= sh.scale;
                max = max.max(*s);
            }
            for x in &mut row[lo..=i] {
                *x = fast_exp(*x - max);
            }
            let inv = 1.0 / sum(&row[lo..=i]);
            row[lo..=i].iter_mut().for_each(|x| *x *= inv);
        }
        let op = self.op;
        combine_rows(
            rows.start,
            rows.end,
            |i| sh.first_key(i)..i + 1,
            |i, j| p[(i - rows.start) * len + j],
            |j| &v[(seg.start + j) * kw + g * hd..][..hd],
            |i| {
                // SAFETY: head h's columns of this piece's tokens: this piece's alone.
                let o = unsafe {
                    std::slice::from_raw_parts_mut(op.get().add((seg.start + i) * qw + h * hd), hd)
                };
                o.fill(0.0);
                o
            },
        );
    }
}

/// Gradients of [`forward`]: `dq`, `dk`, `dv` (overwritten) from `dout`, given the forward's inputs, output and
/// probabilities (which become the scores' gradient on the way).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    sh: &Shape,
    segs: &[Range<usize>],
    (q, k, v): (&[f32], &[f32], &[f32]),
    out: &[f32],
    mut probs: Probs,
    dout: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    pool: &ThreadPool,
) {
    dq.fill(0.0);
    dk.fill(0.0);
    dv.fill(0.0);
    let keys = pieces(segs, sh.n_head_kv, false);
    let rows = pieces(segs, sh.n_head, true);
    let offsets = &probs.offsets;
    // dV = Pᵀ · dO.
    let job = KeySide {
        sh,
        segs,
        offsets,
        pieces: &keys,
        m: &probs.data,
        x: dout,
        outp: SyncPtr(dv.as_mut_ptr()),
    };
    pool.run(keys.len(), &|task| run_fast(&job, task));
    // P becomes dS = P ∘ (dO · Vᵀ - rowsum(dO ∘ O)) · scale, and dQ = dS · K.
    let job = QuerySide {
        sh,
        segs,
        offsets,
        pieces: &rows,
        k,
        v,
        out,
        dout,
        pp: SyncPtr(probs.data.as_mut_ptr()),
        qp: SyncPtr(dq.as_mut_ptr()),
    };
    pool.run(rows.len(), &|task| run_fast(&job, task));
    // dK = dSᵀ · Q.
    let job = KeySide {
        sh,
        segs,
        offsets,
        pieces: &keys,
        m: &probs.data,
        x: q,
        outp: SyncPtr(dk.as_mut_ptr()),
    };
    pool.run(keys.len(), &|task| run_fast(&job, task));
}

/// `out[j] = Σ_{h in j's group} Σ_i m_h[i, j] · x_h[i]` for a piece's keys `j` (of a KV head): dV from the
/// probabilities and dO, dK from the scores' gradient and Q.
struct KeySide<'a> {
    sh: &'a Shape,
    segs: &'a [Range<usize>],
    offsets: &'a [usize],
    pieces: &'a [Piece],
    m: &'a [f32],
    x: &'a [f32],
    outp: SyncPtr<f32>,
}

impl Task for KeySide<'_> {
    #[inline(always)]
    fn run(&self, task: usize) {
        let KeySide { sh, m, x, outp, .. } = *self;
        let pc = &self.pieces[task];
        let (hd, nh, nkv) = (sh.head_dim, sh.n_head, sh.n_head_kv);
        let (qw, kw, group) = (nh * hd, nkv * hd, nh / nkv);
        let (seg, g) = (&self.segs[pc.seg], pc.head);
        let len = seg.len();
        for h in g * group..(g + 1) * group {
            let mh = &m[self.offsets[pc.seg * nh + h]..][..len * len];
            combine_rows(
                pc.rows.start,
                pc.rows.end,
                |j| j..sh.queries_end(j, len),
                |j, i| mh[i * len + j],
                |i| &x[(seg.start + i) * qw + h * hd..][..hd],
                // SAFETY: KV head g's columns of this piece's keys: this piece's alone.
                |j| unsafe {
                    std::slice::from_raw_parts_mut(
                        outp.get().add((seg.start + j) * kw + g * hd),
                        hd,
                    )
                },
            );
        }
    }
}

/// A piece's rows of P turned into dS, then its rows of dQ.
struct QuerySide<'a> {
    sh: &'a Shape,
    segs: &'a [Range<usize>],
    offsets: &'a [usize],
    pieces: &'a [Piece],
    k: &'a [f32],
    v: &'a [f32],
    out: &'a [f32],
    dout: &'a [f32],
    pp: SyncPtr<f32>,
    qp: SyncPtr<f32>,
}

impl Task for QuerySide<'_> {
    #[inline(always)]
    fn run(&self, task: usize) {
        let QuerySide {
            sh,
            k,
            v,
            out,
            dout,
            qp,
            ..
        } = *self;
        let (hd, nh) = (sh.head_dim, sh.n_head);
        let (qw, kw) = (nh * hd, sh.n_head_kv * hd);
        // SAFETY: the pool runs each task once, so this piece's rows are this task's alone.
        let QueryRows { seg, h, g, rows, p } =
            unsafe { self.pieces[task].query_rows(sh, self.segs, self.offsets, self.pp) };
        let len = seg.len();
        let mut dp = vec![0f32; len];
        let value = |j: usize| &v[(seg.start + j) * kw + g * hd..][..hd];
        for i in rows.clone() {
            let t = seg.start + i;
            let lo = sh.first_key(i);
            let doi = &dout[t * qw + h * hd..][..hd];
            let c = dot(doi, &out[t * qw + h * hd..][..hd]);
            dots(doi, value, lo..i + 1, &mut dp[lo..=i]);
            let row = &mut p[(i - rows.start) * len..][..len];
            for (s, d) in row[lo..=i].iter_mut().zip(&dp[lo..=i]) {
                *s *= (d - c) * sh.scale;
            }
        }
        combine_rows(
            rows.start,
            rows.end,
            |i| sh.first_key(i)..i + 1,
            |i, j| p[(i - rows.start) * len + j],
            |j| &k[(seg.start + j) * kw + g * hd..][..hd],
            // SAFETY: head h's columns of this piece's tokens: this piece's alone.
            |i| unsafe {
                std::slice::from_raw_parts_mut(qp.get().add((seg.start + i) * qw + h * hd), hd)
            },
        );
    }
}
