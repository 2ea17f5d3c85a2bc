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
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        unit(self.next_u64())
    }

    /// What the `i + 1`-th [`Rng::next_u64`] from this state returns, without stepping: SplitMix64's state only
    /// counts, so any place in its stream can be had at once (dropout masks are made in parallel this way).
    #[inline(always)]
    pub fn at(&self, i: u64) -> u64 {
        mix(self.0.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)))
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

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits as a uniform value in `[0, 1)` (the top 24).
#[inline(always)]
pub fn unit(u: u64) -> f32 {
    (u >> 40) as f32 / (1u64 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `at(i)` is the stream's `i + 1`-th value.
    #[test]
    fn at_is_the_stream() {
        let r = Rng::keyed(7, &[3, 4]);
        let mut s = r.clone();
        for i in 0..100 {
            assert_eq!(r.at(i), s.next_u64());
        }
    }
}
