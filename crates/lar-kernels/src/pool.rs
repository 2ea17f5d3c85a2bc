//! A thread pool for the many small parallel loops of one forward pass.
//!
//! A decode step of a small model runs a few hundred parallel loops of tens of microseconds each, so the cost of
//! handing work out matters more than anything else: workers spin briefly on a generation counter (no syscall on
//! the hot path), then park on a condvar when idle. [`ThreadPool::run`] hands out task indices through an atomic
//! counter, the calling thread takes part, and it returns when every task has run. Not for long-running or
//! blocking work.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// The current job: points at a `JobPtr` on the caller's stack, valid for the duration of `run`.
    job: AtomicPtr<JobPtr>,
    generation: AtomicU64,
    next: AtomicUsize,
    n_tasks: AtomicUsize,
    /// Workers that have not yet finished the current generation.
    active: AtomicUsize,
    sleepers: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

#[derive(Clone, Copy)]
struct JobPtr(*const Job);

pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes callers: one job at a time.
    caller: Mutex<()>,
}

/// How long an idle worker spins before it parks, and how long it spins before it starts yielding its core
/// (which matters when more threads run than there are cores, e.g. tests in parallel).
const SPIN: u32 = 1 << 16;
const SPIN_YIELD: u32 = 1 << 11;

impl ThreadPool {
    /// A pool of `n_threads` threads in all, the caller included (so `n_threads - 1` workers).
    pub fn new(n_threads: usize) -> Self {
        let shared = Arc::new(Shared {
            job: AtomicPtr::new(std::ptr::null_mut()),
            generation: AtomicU64::new(0),
            next: AtomicUsize::new(0),
            n_tasks: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        // If the system refuses a thread, run with the ones it gave rather than fail.
        let workers = (1..n_threads.max(1))
            .map_while(|i| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("lar-worker-{i}"))
                    .spawn(move || worker(&s))
                    .ok()
            })
            .collect();
        Self {
            shared,
            workers,
            caller: Mutex::new(()),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every `i` in `0..n_tasks`, spread over the pool; returns when all have run.
    pub fn run(&self, n_tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        if n_tasks == 0 {
            return;
        }
        if self.workers.is_empty() || n_tasks == 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _guard = self.caller.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the pointer is only dereferenced by workers between the generation bump below and their
        // decrement of `active`, and this function does not return before `active` is back to zero.
        let ptr: *const Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(f) };
        let mut job = JobPtr(ptr);
        s.job.store(&mut job, Ordering::Relaxed);
        s.next.store(0, Ordering::Relaxed);
        s.n_tasks.store(n_tasks, Ordering::Relaxed);
        s.active.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.cv.notify_all();
        }
        let caller_panic = catch_unwind(AssertUnwindSafe(|| work(s, f))).is_err();
        let mut spins = 0u32;
        while s.active.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < SPIN_YIELD {
                std::hint::spin_loop()
            } else {
                std::thread::yield_now()
            }
        }
        s.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if caller_panic || s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a task of the thread pool panicked");
        }
    }
}

fn work(s: &Shared, f: &(dyn Fn(usize) + Sync + '_)) {
    let n = s.n_tasks.load(Ordering::Relaxed);
    loop {
        let i = s.next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        f(i);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            if s.shutdown.load(Ordering::Relaxed) {
                return;
            }
            spins += 1;
            if spins < SPIN {
                if spins < SPIN_YIELD {
                    std::hint::spin_loop()
                } else {
                    std::thread::yield_now()
                }
                continue;
            }
            let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            if s.generation.load(Ordering::SeqCst) == seen && !s.shutdown.load(Ordering::SeqCst) {
                drop(s.cv.wait(guard).unwrap_or_else(|e| e.into_inner()));
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        }
        let job = s.job.load(Ordering::Acquire);
        if !job.is_null() {
            // SAFETY: see `run`: the JobPtr and its closure outlive this generation (the generation was published
            // with SeqCst after the store, and read with Acquire above).
            let f = unsafe { &*(*job).0 };
            if catch_unwind(AssertUnwindSafe(|| work(s, f))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.active.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.cv.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Splits `0..n` into `parts` nearly equal ranges; part `i`'s range.
pub fn split(n: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let parts = parts.max(1);
    let base = n / parts;
    let rem = n % parts;
    let start = i * base + i.min(rem);
    start..start + base + usize::from(i < rem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        let pool = ThreadPool::new(3);
        for n in [0usize, 1, 2, 7, 1000] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50));
        }
    }

    #[test]
    fn split_covers_the_range() {
        for n in [0, 1, 5, 100, 101] {
            for parts in 1..7 {
                let total: usize = (0..parts).map(|i| split(n, parts, i).len()).sum();
                assert_eq!(total, n);
                assert_eq!(split(n, parts, parts - 1).end, n);
            }
        }
    }

    #[test]
    fn a_panicking_task_is_reported_not_hung() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| pool.run(8, &|i| assert!(i != 5))));
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        pool.run(4, &|_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 4);
    }
}
