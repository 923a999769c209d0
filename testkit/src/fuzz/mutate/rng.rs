//! The mutator's deterministic random number generator (splitmix64).

/// A small deterministic generator (splitmix64): the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`; every seed, 0 included, is fine.
    #[must_use]
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`, or 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(n) if n > 0 => usize::try_from(self.next_u64() % n).unwrap_or(0),
            _ => 0,
        }
    }

    /// True with probability `1 / one_in` (always when `one_in` is 0 or 1).
    pub fn chance(&mut self, one_in: u32) -> bool {
        one_in <= 1 || self.next_u64().is_multiple_of(u64::from(one_in))
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub(super) fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo.saturating_add(self.below(hi.saturating_sub(lo).saturating_add(1)))
    }

    /// 1 half of the time, otherwise a number in `1..=max`.
    pub(super) fn repeats(&mut self, max: usize) -> usize {
        let many = self.between(1, max);
        self.either(1, many)
    }

    /// `a` or `b`, evenly.
    pub(super) fn either<T>(&mut self, a: T, b: T) -> T {
        if self.chance(2) { a } else { b }
    }

    /// A random element of `items`, `None` when it is empty.
    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        items.get(self.below(items.len())).copied()
    }

    /// A random byte.
    pub(super) fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }
}
