//! Paged KV cache storage: blocks of `block_size` token slots, addressed by block id.
//!
//! This is only storage. Which sequence owns which block, and when a block is free, is the business of the
//! engine's block manager (`lar-engine`), which keeps books on ids alone; the forward pass receives each sequence's
//! block table and reads and writes through it. A block holds, for every layer, K and V for its slots:
//! `(n_layers, 2, block_size, kv_dim)` f32. Blocks are allocated on first use, so memory grows with the tokens
//! actually cached, not with the context length. K and V are stored as f16 (llama.cpp's default cache type): half
//! the memory of f32, and the same rounding as the reference implementation.

/// Storage for up to `max_blocks` blocks.
pub struct KvStore {
    pub block_size: usize,
    pub n_layers: usize,
    pub kv_dim: usize,
    pub max_blocks: usize,
    /// f16 bit patterns.
    blocks: Vec<Option<Box<[u16]>>>,
}

impl KvStore {
    pub fn new(block_size: usize, n_layers: usize, kv_dim: usize, max_blocks: usize) -> Self {
        Self {
            block_size,
            n_layers,
            kv_dim,
            max_blocks,
            blocks: (0..max_blocks).map(|_| None).collect(),
        }
    }

    fn block_len(&self) -> usize {
        self.n_layers * 2 * self.block_size * self.kv_dim
    }

    fn block_mut(&mut self, id: u32) -> &mut [u16] {
        let len = self.block_len();
        self.blocks[id as usize].get_or_insert_with(|| vec![0u16; len].into_boxed_slice())
    }

    /// Writes K and V of one token: `slot` of block `id`, layer `layer`.
    pub fn write(&mut self, id: u32, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let (bs, d) = (self.block_size, self.kv_dim);
        let b = self.block_mut(id);
        let base = layer * 2 * bs * d;
        crate::ops::f32_to_f16(k, &mut b[base + slot * d..base + (slot + 1) * d]);
        crate::ops::f32_to_f16(
            v,
            &mut b[base + (bs + slot) * d..base + (bs + slot + 1) * d],
        );
    }

    /// K and V of block `id`, layer `layer`: each `(block_size, kv_dim)` f16 bit patterns. `None` for a block never
    /// written.
    pub fn layer(&self, id: u32, layer: usize) -> Option<(&[u16], &[u16])> {
        let (bs, d) = (self.block_size, self.kv_dim);
        let b = self.blocks.get(id as usize)?.as_deref()?;
        let base = layer * 2 * bs * d;
        Some((
            &b[base..base + bs * d],
            &b[base + bs * d..base + 2 * bs * d],
        ))
    }
}
