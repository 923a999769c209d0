//! A mergeable, log-bucketed latency histogram with a stated relative error.
//!
//! Bucket 0 holds exact zeros. Bucket `i ≥ 1` holds latencies `v` (nanoseconds) with
//! `γ^(i-2) < v ≤ γ^(i-1)`, where `γ = (1 + α) / (1 − α)` and `α` = [`RELATIVE_ERROR`].
//! A quantile is answered with the bucket's representative `2γ^(i-1) / (γ + 1)`, which is
//! within `α` of every value in the bucket (the DDSketch construction). Buckets are plain
//! counts, so merging is bucket-wise addition and is exact: any split or order of merges
//! gives the same histogram as one pass.

/// The relative error bound of every quantile estimate.
pub const RELATIVE_ERROR: f64 = 0.02;

/// `γ`, the ratio between consecutive bucket bounds.
const GAMMA: f64 = (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR);

/// Largest bucket index; every `u64` nanosecond value maps at or below it.
pub const MAX_INDEX: u16 = 1120;

/// Bucket index of a latency in nanoseconds.
pub fn bucket_index(nanos: u64) -> u16 {
    if nanos == 0 {
        return 0;
    }
    let i = ((nanos as f64).ln() / GAMMA.ln()).ceil() + 1.0;
    // `i` is finite and ≥ 1 for nanos ≥ 1; the clamp keeps the cast in range.
    i.clamp(1.0, f64::from(MAX_INDEX)) as u16
}

/// Representative value (nanoseconds) of a bucket.
pub fn bucket_value(index: u16) -> f64 {
    if index == 0 {
        return 0.0;
    }
    2.0 * GAMMA.powi(i32::from(index) - 1) / (GAMMA + 1.0)
}

/// Upper bound (nanoseconds, inclusive) of a bucket.
pub fn bucket_upper_bound(index: u16) -> f64 {
    if index == 0 {
        return 0.0;
    }
    GAMMA.powi(i32::from(index) - 1)
}

/// Dense counts over the occupied index range `[offset, offset + counts.len())`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    offset: u16,
    counts: Vec<u64>,
}

impl Histogram {
    /// Adds `count` observations to bucket `index`.
    pub fn add(&mut self, index: u16, count: u64) {
        let index = index.min(MAX_INDEX);
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(count);
            return;
        }
        if index < self.offset {
            let grow = usize::from(self.offset - index);
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        }
        let at = usize::from(index - self.offset);
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] = self.counts[at].saturating_add(count);
    }

    /// Records one latency.
    pub fn record(&mut self, nanos: u64) {
        self.add(bucket_index(nanos), 1);
    }

    /// Bucket-wise sum: exact.
    pub fn merge(&mut self, other: &Histogram) {
        for (index, count) in other.iter() {
            self.add(index, count);
        }
    }

    /// Non-empty buckets in index order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            // The occupied range never exceeds MAX_INDEX, so the index fits a u16.
            .map(|(i, c)| (self.offset.saturating_add(i as u16), *c))
    }

    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, c| a.saturating_add(*c))
    }

    /// Whether no observation was recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Estimate of the `q` quantile (0 ≤ q ≤ 1) in nanoseconds: the representative of the
    /// bucket holding the observation of rank `⌊q·(n−1)⌋` (0-based) in sorted order.
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (n - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        for (index, count) in self.iter() {
            seen = seen.saturating_add(count);
            if seen > rank {
                return Some(bucket_value(index));
            }
        }
        None
    }

    /// Number of observations ≤ `nanos` if `nanos` is a bucket bound; for other values, the
    /// count of buckets whose upper bound is ≤ `nanos` (so exact at bucket bounds).
    pub fn count_at_or_below(&self, nanos: f64) -> u64 {
        self.iter()
            .take_while(|(i, _)| bucket_upper_bound(*i) <= nanos)
            .fold(0u64, |a, (_, c)| a.saturating_add(c))
    }

    /// Rebuilds from sparse pairs (as stored); pairs may come in any order.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u16, u64)>) -> Histogram {
        let mut h = Histogram::default();
        for (i, c) in pairs {
            h.add(i, c);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    #[test]
    fn zero_and_one_nanosecond_are_distinct_buckets() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1), 1);
        assert!(bucket_index(2) > 1);
        assert!(bucket_index(u64::MAX) <= MAX_INDEX);
    }

    #[test]
    fn single_value_round_trips_within_error() {
        let mut h = Histogram::default();
        h.record(10_745_496);
        let est = h.quantile(0.5).expect("one value");
        assert!((est - 10_745_496.0).abs() / 10_745_496.0 <= RELATIVE_ERROR);
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(Histogram::default().quantile(0.99), None);
    }

    proptest! {
        #[test]
        fn quantiles_stay_within_relative_error(
            values in proptest::collection::vec(1u64..=3_600_000_000_000u64, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut h = Histogram::default();
            for v in &values { h.record(*v); }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let exact = exact_quantile(&sorted, q) as f64;
            let est = h.quantile(q).expect("non-empty");
            prop_assert!((est - exact).abs() / exact <= RELATIVE_ERROR + 1e-9,
                "q={q} exact={exact} est={est}");
        }

        #[test]
        fn merging_any_split_equals_one_pass(
            values in proptest::collection::vec(0u64..=u64::MAX / 2, 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..6),
        ) {
            let mut whole = Histogram::default();
            for v in &values { whole.record(*v); }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(values.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain([values.len()]) {
                let mut part = Histogram::default();
                for v in &values[start..c.max(start)] { part.record(*v); }
                parts.push(part);
                start = c.max(start);
            }
            // Merge in reverse order to also vary the order.
            let mut merged = Histogram::default();
            for p in parts.iter().rev() { merged.merge(p); }
            prop_assert_eq!(merged.iter().collect::<Vec<_>>(), whole.iter().collect::<Vec<_>>());
            prop_assert_eq!(merged.count(), values.len() as u64);
        }
    }
}
