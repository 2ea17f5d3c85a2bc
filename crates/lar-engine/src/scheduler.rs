//! Books on sequences and KV blocks; no model, no tensors. The engine asks [`Scheduler::schedule`] what to run,
//! runs it, and reports back with [`Scheduler::advance`] and [`Scheduler::append_token`]. Blocks come from the
//! [`BlockManager`], which caches full blocks of prompt prefixes: a new sequence starts after the longest cached
//! prefix of its tokens.

use std::collections::{HashMap, VecDeque};

use crate::blocks::block_hash;

pub use crate::blocks::BlockManager;

/// One sequence as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Seq {
    pub id: u64,
    /// Prompt followed by generated tokens.
    pub tokens: Vec<u32>,
    /// How many of `tokens` have their K/V in the cache.
    pub n_computed: usize,
    pub blocks: Vec<u32>,
    /// Generated tokens so far.
    pub n_generated: usize,
    /// Prompt tokens found in the prefix cache when the sequence was first admitted.
    pub n_cached: usize,
    /// Leading full blocks whose content is registered with the block manager, and the hash of the last of them.
    n_registered: usize,
    parent_hash: u64,
    /// Where this sequence's chain of block hashes starts: 0 for the bare model, a hash of the LoRA adapter and
    /// its strength otherwise, so sequences share cached blocks only when their K/V are the same.
    root: u64,
    /// Never take a cached prefix: every prompt token is computed (a request that asks for the prompt's logprobs).
    uncached: bool,
    /// Another sequence with the same prompt (`n > 1`): this one is admitted once that one has computed the
    /// prompt's full blocks, and shares them through the prefix cache instead of computing them again.
    follows: Option<u64>,
}

/// A piece of work for one forward pass: tokens `start..start + len` of sequence `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub id: u64,
    pub start: usize,
    pub len: usize,
    /// This chunk reaches the end of the sequence's tokens, so its logits pick the next token.
    pub samples: bool,
}

#[derive(Debug)]
pub struct Scheduler {
    pub blocks: BlockManager,
    /// Most tokens in one forward pass (prefill chunks are cut to fit).
    pub max_batch_tokens: usize,
    /// Most sequences running at once.
    pub max_seqs: usize,
    seqs: HashMap<u64, Seq>,
    waiting: VecDeque<u64>,
    running: Vec<u64>,
    /// Sequences preempted since the last call (their cache was dropped; they will be recomputed).
    pub preempted: Vec<u64>,
    /// Free blocks kept per running sequence when admitting a new one (none when nothing runs).
    reserve_per_seq: usize,
    /// Look up cached prefixes at admission (on by default).
    prefix_caching: bool,
}

impl Scheduler {
    pub fn new(blocks: BlockManager, max_batch_tokens: usize, max_seqs: usize) -> Self {
        Self {
            blocks,
            max_batch_tokens: max_batch_tokens.max(1),
            max_seqs: max_seqs.max(1),
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            preempted: Vec::new(),
            reserve_per_seq: 0,
            prefix_caching: true,
        }
    }

    /// With `false`, admission never looks up cached prefixes: every prompt is computed whole (for measuring what
    /// the cache saves).
    pub fn with_prefix_caching(mut self, on: bool) -> Self {
        self.prefix_caching = on;
        self
    }

    /// Admission keeps `blocks` free blocks per running sequence, so the running ones can grow into them instead
    /// of being preempted by a newcomer's prompt.
    pub fn with_reserve(mut self, blocks: usize) -> Self {
        self.reserve_per_seq = blocks;
        self
    }

    pub fn n_running(&self) -> usize {
        self.running.len()
    }

    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn add(&mut self, id: u64, prompt: Vec<u32>) {
        self.add_with(id, prompt, true);
    }

    /// [`Self::add`]; with `use_cache` false the sequence never starts from a cached prefix.
    pub fn add_with(&mut self, id: u64, prompt: Vec<u32>, use_cache: bool) {
        self.seqs.insert(
            id,
            Seq {
                id,
                tokens: prompt,
                n_computed: 0,
                blocks: Vec::new(),
                n_generated: 0,
                n_cached: 0,
                n_registered: 0,
                parent_hash: 0,
                root: 0,
                uncached: !use_cache,
                follows: None,
            },
        );
        self.waiting.push_back(id);
    }

    /// Starts `id`'s chain of block hashes at `root` (see [`Seq`]'s `root`); call before it is scheduled.
    pub fn set_root(&mut self, id: u64, root: u64) {
        if let Some(s) = self.seqs.get_mut(&id)
            && s.blocks.is_empty()
        {
            s.root = root;
            s.parent_hash = root;
        }
    }

    /// Makes `id` wait for `leader` (same prompt) to compute the prompt's full blocks before it is admitted, so it
    /// shares them. No effect once `leader` has finished.
    pub fn follow(&mut self, id: u64, leader: u64) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.follows = Some(leader);
        }
    }

    pub fn get(&self, id: u64) -> Option<&Seq> {
        self.seqs.get(&id)
    }

    pub fn has_work(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Decides the next forward pass.
    ///
    /// Contract:
    /// 1. Running sequences come first, in the order they were admitted, each with all its uncomputed tokens
    ///    (one, when decoding) as far as the token budget allows.
    /// 2. Then waiting sequences are admitted in arrival order while sequences, budget and blocks allow (blocks for
    ///    the whole sequence so far, plus the reserve for each running sequence). A sequence that owns no blocks
    ///    (new, or preempted) first takes the longest cached prefix of its tokens (full blocks, never its last
    ///    token) and starts computing after it. A prompt longer than the remaining budget is cut into chunks
    ///    (chunked prefill) and continues next time.
    /// 3. Every returned item already owns the blocks for `start + len` tokens.
    /// 4. When a running sequence needs a block and none is free, the most recently admitted running sequence
    ///    is preempted: its blocks are freed, its cache forgotten (`n_computed = 0`), and it goes back to the
    ///    front of the waiting queue; its id is recorded in `preempted`.
    pub fn schedule(&mut self) -> Vec<Scheduled> {
        let mut out = Vec::new();
        let mut budget = self.max_batch_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let (start, want) = {
                let s = &self.seqs[&id];
                (s.n_computed, s.tokens.len() - s.n_computed)
            };
            let len = want.min(budget);
            if len == 0 {
                i += 1;
                continue;
            }
            if !self.reserve(id, start + len) {
                // Free a block by preempting the youngest running sequence (possibly this one).
                let Some(victim) = self.running.pop() else {
                    break;
                };
                self.preempt(victim);
                out.retain(|s: &Scheduled| s.id != victim);
                continue;
            }
            budget -= len;
            out.push(Scheduled {
                id,
                start,
                len,
                samples: start + len == self.seqs[&id].tokens.len(),
            });
            i += 1;
        }
        while budget > 0 && self.running.len() < self.max_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let bs = self.blocks.block_size;
            let s = &self.seqs[&id];
            let total = s.tokens.len();
            // Full blocks of every token but the last, which must be computed for its logits.
            let usable = total.saturating_sub(1) / bs * bs;
            // A follower waits (and holds the queue: it was submitted right behind its leader) until the leader
            // has computed the blocks it will share.
            if let Some(leader) = s.follows.and_then(|l| self.seqs.get(&l))
                && leader.n_computed < usable
                && self.prefix_caching
            {
                break;
            }
            let lookup = s.blocks.is_empty() && self.prefix_caching && !s.uncached;
            let (hit, hit_free) = if lookup {
                self.blocks.longest_prefix(s.root, &s.tokens[..usable])
            } else {
                (0, 0)
            };
            let start = if hit > 0 { hit * bs } else { s.n_computed };
            let len = (total - start).min(budget);
            // Admit only if the whole sequence so far fits in what is free, so admission cannot thrash.
            let need = self
                .blocks
                .blocks_for(total)
                .saturating_sub(s.blocks.len().max(hit));
            let keep_free = self.running.len() * self.reserve_per_seq;
            if need + keep_free > self.blocks.n_free() - hit_free {
                break;
            }
            if lookup {
                self.take_cached_prefix(id, usable, hit);
            }
            if !self.reserve(id, start + len) {
                break;
            }
            self.waiting.pop_front();
            self.running.push(id);
            if let Some(s) = self.seqs.get_mut(&id) {
                // Admitted: after a preemption it comes back without waiting for anyone.
                s.follows = None;
            }
            budget -= len;
            out.push(Scheduled {
                id,
                start,
                len,
                samples: start + len == total,
            });
        }
        out
    }

    /// Gives `id` the first `hit` cached blocks of its tokens (a lookup of `usable` tokens); its computation starts
    /// after them.
    fn take_cached_prefix(&mut self, id: u64, usable: usize, hit: usize) {
        let Some(s) = self.seqs.get_mut(&id) else {
            return;
        };
        let bs = self.blocks.block_size;
        s.blocks = self
            .blocks
            .acquire(s.root, &s.tokens[..usable], hit, usable);
        let n = s.blocks.len();
        s.n_computed = n * bs;
        s.n_registered = n;
        s.parent_hash = s.tokens[..n * bs].chunks_exact(bs).fold(s.root, block_hash);
        if s.n_generated == 0 {
            s.n_cached = n * bs;
        }
    }

    /// Makes sure `id` owns blocks for `tokens` tokens; false (and nothing allocated) if there are not enough.
    fn reserve(&mut self, id: u64, tokens: usize) -> bool {
        let need = self.blocks.blocks_for(tokens);
        let have = self.seqs[&id].blocks.len();
        if need <= have {
            return true;
        }
        if need - have > self.blocks.n_free() {
            return false;
        }
        for _ in have..need {
            let b = self.blocks.allocate().expect("checked n_free");
            self.seqs.get_mut(&id).expect("known id").blocks.push(b);
        }
        true
    }

    fn preempt(&mut self, id: u64) {
        if let Some(s) = self.seqs.get_mut(&id) {
            self.blocks.release(&mut s.blocks);
            s.n_computed = 0;
            s.n_registered = 0;
            s.parent_hash = s.root;
        }
        self.waiting.push_front(id);
        self.preempted.push(id);
    }

    /// Records that the scheduled chunk ran: its tokens are now in the cache.
    pub fn advance(&mut self, item: &Scheduled) {
        let bs = self.blocks.block_size;
        if let Some(s) = self.seqs.get_mut(&item.id) {
            s.n_computed = s.n_computed.max(item.start + item.len);
            // Blocks that are now full become findable by the sequences that share their prefix.
            let full = (s.n_computed / bs).min(s.blocks.len());
            while s.n_registered < full {
                let i = s.n_registered;
                s.parent_hash = self.blocks.register(
                    s.blocks[i],
                    s.parent_hash,
                    &s.tokens[i * bs..(i + 1) * bs],
                );
                s.n_registered += 1;
            }
        }
    }

    /// Checks the block books against every sequence's block table (see [`BlockManager::check`]).
    pub fn check(&self) -> Result<(), String> {
        self.blocks
            .check(self.seqs.values().map(|s| s.blocks.as_slice()))
    }

    /// Appends a generated token (not yet in the cache).
    pub fn append_token(&mut self, id: u64, token: u32) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.push(token);
            s.n_generated += 1;
        }
    }

    /// Removes a sequence (finished or cancelled) and frees its blocks.
    pub fn finish(&mut self, id: u64) -> Option<Seq> {
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&w| w != id);
        let mut s = self.seqs.remove(&id)?;
        self.blocks.release(&mut s.blocks);
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(blocks: usize, budget: usize) -> Scheduler {
        Scheduler::new(BlockManager::new(blocks, 4), budget, 8)
    }

    /// Runs the scheduled items as a model would: advance, and sample a fake token where asked.
    fn run(s: &mut Scheduler, items: &[Scheduled]) {
        for it in items {
            s.advance(it);
            if it.samples {
                s.append_token(it.id, 7);
            }
        }
    }

    #[test]
    fn long_prompt_is_chunked_then_decoded() {
        let mut s = sched(16, 8);
        s.add(1, vec![1; 20]);
        let a = s.schedule();
        assert_eq!(
            a,
            vec![Scheduled {
                id: 1,
                start: 0,
                len: 8,
                samples: false
            }]
        );
        run(&mut s, &a);
        let b = s.schedule();
        assert_eq!(
            b,
            vec![Scheduled {
                id: 1,
                start: 8,
                len: 8,
                samples: false
            }]
        );
        run(&mut s, &b);
        let c = s.schedule();
        assert_eq!(
            c,
            vec![Scheduled {
                id: 1,
                start: 16,
                len: 4,
                samples: true
            }]
        );
        run(&mut s, &c);
        let d = s.schedule();
        assert_eq!(
            d,
            vec![Scheduled {
                id: 1,
                start: 20,
                len: 1,
                samples: true
            }]
        );
        assert_eq!(s.get(1).unwrap().blocks.len(), 6); // 21 tokens in blocks of 4
    }

    #[test]
    fn decodes_batch_with_a_new_prefill() {
        let mut s = sched(32, 16);
        s.add(1, vec![1; 3]);
        let a = s.schedule();
        run(&mut s, &a);
        s.add(2, vec![2; 5]);
        let b = s.schedule();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            Scheduled {
                id: 1,
                start: 3,
                len: 1,
                samples: true
            }
        );
        assert_eq!(
            b[1],
            Scheduled {
                id: 2,
                start: 0,
                len: 5,
                samples: true
            }
        );
    }

    #[test]
    fn admission_waits_for_blocks_and_finish_frees_them() {
        let mut s = sched(3, 64);
        s.add(1, vec![1; 8]); // 2 blocks
        s.add(2, vec![2; 8]); // 2 more: does not fit
        let a = s.schedule();
        assert_eq!(a.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1]);
        run(&mut s, &a);
        s.finish(1);
        assert_eq!(s.blocks.n_free(), 3);
        let b = s.schedule();
        assert_eq!(b.iter().map(|x| x.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn out_of_blocks_preempts_the_youngest() {
        let mut s = sched(4, 64);
        s.add(1, vec![1; 8]);
        s.add(2, vec![2; 8]);
        let a = s.schedule(); // both admitted, 4 blocks used, each has 8 tokens + 1 sampled
        assert_eq!(a.len(), 2);
        run(&mut s, &a);
        let b = s.schedule(); // seq 1 needs a 3rd block: seq 2 is preempted
        assert_eq!(s.preempted, vec![2]);
        assert_eq!(
            b,
            vec![Scheduled {
                id: 1,
                start: 8,
                len: 1,
                samples: true
            }]
        );
        let seq2 = s.get(2).unwrap();
        assert_eq!(
            (seq2.n_computed, seq2.blocks.len(), seq2.tokens.len()),
            (0, 0, 9)
        );
        // Invariant: blocks owned + free = total.
        let owned: usize = [1, 2].iter().map(|&i| s.get(i).unwrap().blocks.len()).sum();
        assert_eq!(owned + s.blocks.n_free(), 4);
    }

    #[test]
    fn admission_keeps_a_reserve_for_running_sequences() {
        // The same two sequences as above, with one block kept free per running sequence: the second waits
        // instead of being admitted and preempted a step later.
        let mut s = sched(4, 64).with_reserve(1);
        s.add(1, vec![1; 8]);
        s.add(2, vec![2; 8]);
        let a = s.schedule();
        assert_eq!(a.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1]);
        run(&mut s, &a);
        let b = s.schedule();
        assert!(s.preempted.is_empty());
        assert_eq!(b.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!((s.n_running(), s.n_waiting()), (1, 1));
        // With nothing running, a sequence that fits is admitted whatever the reserve.
        s.finish(1);
        assert_eq!(
            s.schedule().iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn a_cached_prefix_is_skipped_and_shared() {
        let mut s = sched(16, 64);
        s.add(1, vec![5; 10]);
        let a = s.schedule();
        run(&mut s, &a);
        s.finish(1);
        // Same first 8 tokens (two full blocks), then different: computing starts at 8.
        let mut p = vec![5; 8];
        p.extend([6, 6, 6]);
        s.add(2, p.clone());
        s.add(3, p);
        let b = s.schedule();
        assert_eq!(
            b.iter().map(|x| (x.id, x.start, x.len)).collect::<Vec<_>>(),
            vec![(2, 8, 3), (3, 8, 3)]
        );
        assert_eq!(s.get(2).unwrap().n_cached, 8);
        // Both own the two cached blocks (shared), each its own third block.
        assert_eq!(s.get(2).unwrap().blocks[..2], s.get(3).unwrap().blocks[..2]);
        assert_ne!(s.get(2).unwrap().blocks[2], s.get(3).unwrap().blocks[2]);
        s.check().unwrap();
        // Looked up: 8 tokens for each of the three (all but the last token, in whole blocks); found: 8 twice.
        assert_eq!(
            (s.blocks.stats.query_tokens, s.blocks.stats.hit_tokens),
            (24, 16)
        );
    }

    /// Cached blocks are shared only between sequences with the same root (the same LoRA adapter at the same
    /// strength, or none): the same tokens under another adapter have other K/V.
    #[test]
    fn a_cached_prefix_is_shared_only_under_the_same_adapter() {
        let mut s = sched(16, 64);
        s.add(1, vec![5; 10]);
        s.set_root(1, 77);
        let a = s.schedule();
        run(&mut s, &a);
        s.finish(1);
        let starts = |s: &mut Scheduler, id: u64, root: u64| {
            s.add(id, vec![5; 10]);
            s.set_root(id, root);
            let b = s.schedule();
            run(s, &b);
            s.finish(id);
            b.iter().find(|x| x.id == id).map(|x| x.start)
        };
        assert_eq!(
            starts(&mut s, 2, 0),
            Some(0),
            "the bare model shares nothing"
        );
        assert_eq!(
            starts(&mut s, 3, 78),
            Some(0),
            "another adapter shares nothing"
        );
        assert_eq!(
            starts(&mut s, 4, 77),
            Some(8),
            "the same adapter shares two blocks"
        );
        assert_eq!(
            starts(&mut s, 5, 0),
            Some(8),
            "the bare model's own blocks are shared"
        );
        s.check().unwrap();
    }

    #[test]
    fn a_prompt_that_is_all_cached_still_computes_its_last_token() {
        let mut s = sched(16, 64);
        s.add(1, vec![3; 8]);
        let a = s.schedule();
        run(&mut s, &a);
        s.finish(1);
        s.add(2, vec![3; 8]);
        // One full block of the two is usable: the last token (in the second block) must be computed.
        assert_eq!(
            s.schedule(),
            vec![Scheduled {
                id: 2,
                start: 4,
                len: 4,
                samples: true
            }]
        );
        s.check().unwrap();
    }

    /// Random traffic over a small cache with much shared prefix (two token values): after every step the books
    /// hold (every block free, cached or owned; counts match the tables), every scheduled item owns its blocks,
    /// and every sequence finishes.
    #[test]
    fn randomized_traffic_keeps_the_books() {
        let mut rng = crate::sampler::Rng::new(11);
        for reserve in [0, 1] {
            let mut s = Scheduler::new(BlockManager::new(24, 4), 16, 4).with_reserve(reserve);
            let mut next_id = 1u64;
            let mut live: Vec<(u64, usize)> = Vec::new(); // (id, tokens to generate)
            let mut done = 0;
            for step in 0..3000 {
                if live.len() < 6 && rng.next_u64().is_multiple_of(3) && step < 2500 {
                    let len = 1 + (rng.next_u64() % 30) as usize;
                    let prompt: Vec<u32> = (0..len).map(|_| (rng.next_u64() % 2) as u32).collect();
                    s.add(next_id, prompt);
                    live.push((next_id, 1 + (rng.next_u64() % 20) as usize));
                    next_id += 1;
                }
                let items = s.schedule();
                for it in &items {
                    let seq = s.get(it.id).unwrap();
                    assert!(
                        seq.blocks.len() * 4 >= it.start + it.len,
                        "step {step}: {it:?}"
                    );
                    assert_eq!(seq.n_computed, it.start, "step {step}: {it:?}");
                }
                for it in &items {
                    s.advance(it);
                    if it.samples {
                        s.append_token(it.id, (rng.next_u64() % 2) as u32);
                    }
                }
                s.preempted.clear();
                // Finish sequences that generated enough, and now and then cancel one outright.
                live.retain(|&(id, want)| {
                    let (generated, len) = {
                        let seq = s.get(id).unwrap();
                        (seq.n_generated, seq.tokens.len())
                    };
                    let cancel = rng.next_u64().is_multiple_of(200);
                    if generated >= want || cancel || len >= 60 {
                        s.finish(id);
                        done += 1;
                        false
                    } else {
                        true
                    }
                });
                s.check().unwrap_or_else(|e| panic!("step {step}: {e}"));
            }
            assert!(live.is_empty() || !s.has_work() || done > 0);
            for (id, _) in live.drain(..) {
                s.finish(id);
            }
            s.check().unwrap();
            assert_eq!(s.blocks.n_free(), 24);
            assert!(
                s.blocks.stats.hit_tokens > 0,
                "the traffic must hit the cache"
            );
            assert!(done > 100, "{done} sequences finished");
        }
    }
}
