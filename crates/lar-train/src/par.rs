//! Per-row work shared out over the pool: a block's norms, rotary embeddings, gates and losses run on every core
//! instead of on the calling thread alone while the others wait (a fifth of a step on two threads before).
//! Each task gets a range of rows and the part of each output those rows own, so results do not depend on the
//! number of threads.

use std::ops::Range;

use lar_kernels::pool::{ThreadPool, split};
use lar_kernels::tensor::SyncPtr;

/// `f(rows, out_rows)` for ranges of the `n` rows of `out` (each `out.len() / n` wide), in parallel.
pub fn rows(
    pool: &ThreadPool,
    n: usize,
    out: &mut [f32],
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let w = out.len() / n.max(1);
    let op = SyncPtr(out.as_mut_ptr());
    let tasks = pool.n_threads().min(n).max(1);
    pool.run(tasks, &|task| {
        let r = split(n, tasks, task);
        // SAFETY: rows `r` of `out` are this task's only.
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(r.start * w), r.len() * w) };
        f(r, o)
    });
}

/// [`rows`] with two outputs of `n` rows each (their own widths).
pub fn rows2(
    pool: &ThreadPool,
    n: usize,
    (a, b): (&mut [f32], &mut [f32]),
    f: impl Fn(Range<usize>, &mut [f32], &mut [f32]) + Sync,
) {
    let (wa, wb) = (a.len() / n.max(1), b.len() / n.max(1));
    let (ap, bp) = (SyncPtr(a.as_mut_ptr()), SyncPtr(b.as_mut_ptr()));
    let tasks = pool.n_threads().min(n).max(1);
    pool.run(tasks, &|task| {
        let r = split(n, tasks, task);
        // SAFETY: rows `r` of both outputs are this task's only.
        let (oa, ob) = unsafe {
            (
                std::slice::from_raw_parts_mut(ap.get().add(r.start * wa), r.len() * wa),
                std::slice::from_raw_parts_mut(bp.get().add(r.start * wb), r.len() * wb),
            )
        };
        f(r, oa, ob)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_once_with_its_own_part() {
        let pool = ThreadPool::new(2);
        let (mut a, mut b) = (vec![0f32; 7 * 3], vec![0f32; 7]);
        rows2(&pool, 7, (&mut a, &mut b), |r, oa, ob| {
            for (i, t) in r.enumerate() {
                oa[i * 3..(i + 1) * 3].fill(t as f32);
                ob[i] += 1.0 + t as f32;
            }
        });
        assert_eq!(b, (1..=7).map(|v| v as f32).collect::<Vec<_>>());
        assert!(
            a.chunks(3)
                .enumerate()
                .all(|(t, r)| r.iter().all(|v| *v == t as f32))
        );
        let mut c = vec![0f32; 5 * 2];
        rows(&pool, 5, &mut c, |r, o| {
            for (i, t) in r.enumerate() {
                o[2 * i] = t as f32;
            }
        });
        assert_eq!(
            c.iter().step_by(2).copied().collect::<Vec<_>>(),
            [0., 1., 2., 3., 4.]
        );
    }
}
