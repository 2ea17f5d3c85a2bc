//! The KV block books, with prefix caching as vLLM keeps them: every block is free, cached or owned.
//!
//! - Owned blocks have a reference count: a full block of a prompt prefix can be shared by every sequence that
//!   starts with the same tokens.
//! - A full block gets a content hash, the hash of its parent block's hash and its own tokens, so equal hashes
//!   mean equal prefixes (the tokens and the parent's hash are kept too, and compared on a hit: a hash collision
//!   can never hand a sequence another prefix's K/V).
//! - A block whose last owner lets go stays *cached*: free to reuse, but still holding its prefix, kept in
//!   least-recently-freed order and evicted only when no never-used (fresh) block is left. Admission looks up the
//!   longest cached prefix of a prompt and starts computing after it.
//!
//! Only full blocks are shared, so a block that is being written to always has one owner and no copy-on-write is
//! needed. No model, no tensors: ids and counts only, checked by [`BlockManager::check`] in the tests.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

/// Where a block stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Free, holding nothing worth keeping.
    Fresh,
    /// Free, holding a prefix; the stamp orders eviction (oldest first).
    Cached(u64),
    /// Owned by this many sequences.
    Owned(u32),
}

/// What a full block holds: its parent's hash and its tokens (compared on a hit, so a collision cannot match).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Content {
    hash: u64,
    parent: u64,
    tokens: Vec<u32>,
}

/// Counters of the prefix cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Prompt tokens looked up at admission, and how many of them were found cached.
    pub query_tokens: u64,
    pub hit_tokens: u64,
    /// Cached blocks reused for other content.
    pub evictions: u64,
}

#[derive(Debug)]
pub struct BlockManager {
    pub block_size: usize,
    pub total: usize,
    state: Vec<State>,
    content: Vec<Option<Content>>,
    /// Fresh blocks, reused last-freed first (their memory is the warmest).
    fresh: Vec<u32>,
    /// Cached blocks by the stamp they were freed at.
    lru: BTreeMap<u64, u32>,
    clock: u64,
    by_hash: HashMap<u64, u32>,
    pub stats: CacheStats,
}

/// The hash of a full block: its parent's hash (0 for the first block) and its tokens.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    // SipHash with fixed keys: the same on every run and platform.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl BlockManager {
    pub fn new(total: usize, block_size: usize) -> Self {
        Self {
            block_size,
            total,
            state: vec![State::Fresh; total],
            content: vec![None; total],
            fresh: (0..total as u32).rev().collect(),
            lru: BTreeMap::new(),
            clock: 0,
            by_hash: HashMap::new(),
            stats: CacheStats::default(),
        }
    }

    /// Blocks that can be handed out: fresh ones and cached ones (which would be evicted).
    pub fn n_free(&self) -> usize {
        self.fresh.len() + self.lru.len()
    }

    /// Free blocks that still hold a prefix.
    pub fn n_cached(&self) -> usize {
        self.lru.len()
    }

    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// A block for new content: a fresh one, else the least recently freed cached one (its prefix is forgotten).
    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.fresh.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.lru.pop_first()?;
                if let Some(c) = self.content[b as usize].take() {
                    self.by_hash.remove(&c.hash);
                }
                self.stats.evictions += 1;
                b
            }
        };
        self.state[b as usize] = State::Owned(1);
        Some(b)
    }

    /// Lets go of every block in `ids` (last block first, so a sequence's tail is evicted before its head).
    pub fn release(&mut self, ids: &mut Vec<u32>) {
        for b in ids.drain(..).rev() {
            let i = b as usize;
            let State::Owned(n) = self.state[i] else {
                continue;
            };
            if n > 1 {
                self.state[i] = State::Owned(n - 1);
            } else if self.content[i].is_some() {
                self.clock += 1;
                self.state[i] = State::Cached(self.clock);
                self.lru.insert(self.clock, b);
            } else {
                self.state[i] = State::Fresh;
                self.fresh.push(b);
            }
        }
    }

    /// Records that owned block `b` is full and holds `tokens` after the prefix whose last block hashed to
    /// `parent`. When another block already holds the same prefix, `b` stays unregistered (it is freed as fresh).
    pub fn register(&mut self, b: u32, parent: u64, tokens: &[u32]) -> u64 {
        let hash = block_hash(parent, tokens);
        let i = b as usize;
        if self.content[i].is_none() && !self.by_hash.contains_key(&hash) {
            self.content[i] = Some(Content {
                hash,
                parent,
                tokens: tokens.to_vec(),
            });
            self.by_hash.insert(hash, b);
        }
        hash
    }

    /// The cached block holding `tokens` after `parent`, if any.
    fn find(&self, parent: u64, tokens: &[u32]) -> Option<u32> {
        let b = *self.by_hash.get(&block_hash(parent, tokens))?;
        let c = self.content[b as usize].as_ref()?;
        (c.parent == parent && c.tokens == tokens).then_some(b)
    }

    /// How many leading full blocks of `tokens` are cached, and how many of those are free (taking them would
    /// lower [`Self::n_free`]). `root` is the hash the chain starts from: 0 for the bare model, another for each
    /// LoRA adapter (its K/V differ from the base's for the same tokens). Counts nothing; see [`Self::acquire`].
    pub fn longest_prefix(&self, root: u64, tokens: &[u32]) -> (usize, usize) {
        let (mut parent, mut n, mut free) = (root, 0, 0);
        for chunk in tokens.chunks_exact(self.block_size) {
            let Some(b) = self.find(parent, chunk) else {
                break;
            };
            n += 1;
            free += usize::from(matches!(self.state[b as usize], State::Cached(_)));
            parent = block_hash(parent, chunk);
        }
        (n, free)
    }

    /// Takes a reference on the first `n` cached blocks of `tokens` (as [`Self::longest_prefix`] found them) and
    /// returns them in order; records the lookup of `queried` tokens in the stats.
    pub fn acquire(&mut self, root: u64, tokens: &[u32], n: usize, queried: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(n);
        let mut parent = root;
        for chunk in tokens.chunks_exact(self.block_size).take(n) {
            let Some(b) = self.find(parent, chunk) else {
                break;
            };
            let i = b as usize;
            self.state[i] = match self.state[i] {
                State::Cached(stamp) => {
                    self.lru.remove(&stamp);
                    State::Owned(1)
                }
                State::Owned(k) => State::Owned(k + 1),
                State::Fresh => State::Owned(1),
            };
            out.push(b);
            parent = block_hash(parent, chunk);
        }
        self.stats.query_tokens += queried as u64;
        self.stats.hit_tokens += (out.len() * self.block_size) as u64;
        out
    }

    /// Checks the books against the sequences' block tables: every block is exactly one of fresh, cached or owned;
    /// an owned block's count is the number of tables it is in; cached blocks and only they are in the LRU order;
    /// every registered hash points at a block that holds it.
    pub fn check<'a>(&self, tables: impl IntoIterator<Item = &'a [u32]>) -> Result<(), String> {
        let mut owners = vec![0u32; self.total];
        for t in tables {
            for &b in t {
                owners[b as usize] += 1;
            }
        }
        let mut fresh = vec![false; self.total];
        for &b in &self.fresh {
            if std::mem::replace(&mut fresh[b as usize], true) {
                return Err(format!("block {b} is twice in the fresh list"));
            }
        }
        for (b, s) in self.state.iter().enumerate() {
            let ok = match s {
                State::Fresh => fresh[b] && owners[b] == 0 && self.content[b].is_none(),
                State::Cached(stamp) => {
                    !fresh[b]
                        && owners[b] == 0
                        && self.lru.get(stamp) == Some(&(b as u32))
                        && self.content[b].is_some()
                }
                State::Owned(n) => !fresh[b] && owners[b] == *n,
            };
            if !ok {
                return Err(format!(
                    "block {b}: {s:?}, in {} tables, fresh-listed {}, content {}",
                    owners[b],
                    fresh[b],
                    self.content[b].is_some()
                ));
            }
        }
        if self.lru.len() + self.fresh.len() + owners.iter().filter(|&&n| n > 0).count()
            != self.total
        {
            return Err("the free lists and the owned blocks do not add up to the cache".into());
        }
        for (h, &b) in &self.by_hash {
            if self.content[b as usize].as_ref().map(|c| c.hash) != Some(*h) {
                return Err(format!(
                    "hash {h:x} points at block {b}, which does not hold it"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_full_block_is_found_again_until_evicted() {
        let mut m = BlockManager::new(3, 2);
        let a = m.allocate().unwrap();
        let b = m.allocate().unwrap();
        let h = m.register(a, 0, &[1, 2]);
        m.register(b, h, &[3, 4]);
        let mut table = vec![a, b];
        m.release(&mut table);
        assert_eq!((m.n_free(), m.n_cached()), (3, 2));
        m.check([]).unwrap();
        // Found, in order; only the full blocks of the prompt count.
        assert_eq!(m.longest_prefix(0, &[1, 2, 3, 4, 5]), (2, 2));
        assert_eq!(m.longest_prefix(0, &[1, 2, 9, 9]), (1, 1));
        assert_eq!(m.longest_prefix(0, &[9, 2, 3, 4]), (0, 0));
        let got = m.acquire(0, &[1, 2, 3, 4, 5], 2, 4);
        assert_eq!(got, vec![a, b]);
        assert_eq!((m.stats.query_tokens, m.stats.hit_tokens), (4, 4));
        m.check([got.as_slice()]).unwrap();
        // Shared: a second owner of the same prefix.
        let again = m.acquire(0, &[1, 2, 3, 4], 2, 4);
        m.check([got.as_slice(), again.as_slice()]).unwrap();
        let (mut x, mut y) = (got, again);
        m.release(&mut x);
        m.release(&mut y);
        // Fresh blocks go first; then the least recently freed cached block, the tail (b) before the head (a).
        let c = m.allocate().unwrap();
        assert_ne!(c, a);
        assert_ne!(c, b);
        let d = m.allocate().unwrap();
        assert_eq!(d, b);
        assert_eq!(m.stats.evictions, 1);
        assert_eq!(m.longest_prefix(0, &[1, 2, 3, 4]), (1, 1));
        m.check([[c, d].as_slice()]).unwrap();
    }

    #[test]
    fn a_second_block_with_the_same_prefix_is_not_registered() {
        let mut m = BlockManager::new(2, 2);
        let a = m.allocate().unwrap();
        let b = m.allocate().unwrap();
        m.register(a, 0, &[1, 2]);
        m.register(b, 0, &[1, 2]);
        let (mut ta, mut tb) = (vec![a], vec![b]);
        m.release(&mut tb);
        m.release(&mut ta);
        assert_eq!(m.n_cached(), 1);
        m.check([]).unwrap();
    }
}
