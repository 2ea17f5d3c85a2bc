//! A small seeded random number generator (SplitMix64): the adapter's initial weights, dropout masks and the
//! order of the data all follow from `--seed`, so a run is reproducible and a resumed run continues exactly.

/// SplitMix64: 64 bits of state, every state reachable, good enough for initialisation and shuffling.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one purpose within a run, independent of the others: `seed` mixed with `keys`.
    pub fn keyed(seed: u64, keys: &[u64]) -> Self {
        let mut r = Self(seed);
        for k in keys {
            r.0 ^= k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            r.next_u64();
        }
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// The state, to save in a checkpoint.
    pub fn state(&self) -> u64 {
        self.0
    }
}
