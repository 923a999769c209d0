//! One series over a query's window: its labels and points, and the samples range and
//! instant selectors see in it.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// How long an instant selector looks back for a sample, and how long a counter stays
/// present after its last minute with data (Prometheus' default lookback).
pub const LOOKBACK_MS: i64 = 5 * 60_000;

/// Milliseconds per minute: the sample grid.
pub const MINUTE_MS: i64 = 60_000;

/// Milliseconds per day: raw counter values count from the start of the UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day start a raw counter value at `t` counts from: the minute ending at
/// midnight still belongs to the day before.
pub fn day_start(t: i64) -> i64 {
    t.saturating_sub(1).div_euclid(DAY_MS) * DAY_MS
}

/// Most samples one query may load (Prometheus' `query.max-samples` is 50 million).
pub const MAX_SAMPLES: usize = 20_000_000;

/// A running total or a per-minute value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
}

/// One series over the query's window.
#[derive(Debug, Clone)]
pub struct Series {
    /// Its labels, `__name__` included (shared with the samples read from it).
    pub labels: Arc<Labels>,
    /// Its labels without `__name__` (what `rate` and most functions answer with), made
    /// once rather than at every step.
    pub bare: Arc<Labels>,
    /// How its points are read.
    pub kind: SeriesKind,
    /// `(minute end in ms, value)` per minute with data, in time order: a counter's running
    /// total after that minute, a gauge's value for it. A counter loaded in parts (see
    /// [`super::Fetcher::select`]) has one point per part with data instead, at the part's
    /// end: its totals, presence and samples are then right only at the cuts.
    pub points: Vec<(i64, f64)>,
    /// A counter's samples: per UTC day with data, from the end of its first minute with
    /// data that day to the end of the day (ms, both included), in time order.
    spans: Vec<(i64, i64)>,
}

impl Series {
    /// A series of `kind` with `labels` and `points`.
    pub fn new(labels: Labels, kind: SeriesKind, points: Vec<(i64, f64)>) -> Series {
        let mut bare = labels.clone();
        bare.remove("__name__");
        let (labels, bare) = (Arc::new(labels), Arc::new(bare));
        let mut spans: Vec<(i64, i64)> = Vec::new();
        if kind == SeriesKind::Counter {
            for &(end, _) in &points {
                let day_end = day_start(end).saturating_add(DAY_MS);
                if spans.last().is_none_or(|s| s.1 != day_end) {
                    spans.push((end, day_end));
                }
            }
        }
        Series {
            labels,
            bare,
            kind,
            points,
            spans,
        }
    }

    /// A counter's total at `t`: the increments of the minutes that ended by `t` (from the
    /// start of the loaded window; only differences are meaningful).
    pub fn total_at(&self, t: i64) -> f64 {
        let i = self.points.partition_point(|(e, _)| *e <= t);
        if i == 0 { 0.0 } else { self.points[i - 1].1 }
    }

    /// A counter's sample value at `t`: its calls since the start of the UTC day.
    fn raw_at(&self, t: i64) -> f64 {
        self.total_at(t) - self.total_at(day_start(t))
    }

    /// The counter's sample spans clipped to the minute ends in `(a, b]`: first and last
    /// sample of each span that has one there.
    fn grid(&self, a: i64, b: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let after_a = a
            .div_euclid(MINUTE_MS)
            .saturating_add(1)
            .saturating_mul(MINUTE_MS);
        let until_b = b.div_euclid(MINUTE_MS).saturating_mul(MINUTE_MS);
        // Spans ending before `a` or starting after `b` have nothing there.
        let from = self.spans.partition_point(|s| s.1 < after_a);
        self.spans[from..]
            .iter()
            .take_while(move |s| s.0 <= until_b)
            .filter_map(move |&(first, last)| {
                let (lo, hi) = (first.max(after_a), last.min(until_b));
                (lo <= hi).then_some((lo, hi))
            })
    }

    /// How many samples `samples(a, b)` returns, without building them.
    pub fn sample_count(&self, a: i64, b: i64) -> usize {
        match self.kind {
            SeriesKind::Counter => self
                .grid(a, b)
                .map(|(lo, hi)| usize::try_from((hi - lo) / MINUTE_MS + 1).unwrap_or(usize::MAX))
                .fold(0usize, usize::saturating_add),
            SeriesKind::Gauge => {
                let i = self.points.partition_point(|(e, _)| *e <= a);
                let j = self.points.partition_point(|(e, _)| *e <= b);
                j.saturating_sub(i)
            }
        }
    }

    /// Whether the series has a sample in `(a, b]`.
    pub fn present(&self, a: i64, b: i64) -> bool {
        match self.kind {
            SeriesKind::Counter => self.grid(a, b).next().is_some(),
            SeriesKind::Gauge => {
                let i = self.points.partition_point(|(e, _)| *e <= a);
                self.points.get(i).is_some_and(|(e, _)| *e <= b)
            }
        }
    }

    /// The samples in `(a, b]`.
    pub fn samples(&self, a: i64, b: i64) -> Vec<(i64, f64)> {
        match self.kind {
            SeriesKind::Counter => {
                let mut out = Vec::with_capacity(self.sample_count(a, b));
                for (lo, hi) in self.grid(a, b) {
                    let mut g = lo;
                    while g <= hi {
                        out.push((g, self.raw_at(g)));
                        match g.checked_add(MINUTE_MS) {
                            Some(next) => g = next,
                            None => break,
                        }
                    }
                }
                out
            }
            SeriesKind::Gauge => {
                let i = self.points.partition_point(|(e, _)| *e <= a);
                let j = self.points.partition_point(|(e, _)| *e <= b);
                self.points[i..j].to_vec()
            }
        }
    }

    /// The sample an instant selector sees at `t`: the latest in `(t − lookback, t]`.
    pub fn latest(&self, t: i64) -> Option<f64> {
        match self.kind {
            SeriesKind::Counter => self
                .grid(t.saturating_sub(LOOKBACK_MS), t)
                .last()
                .map(|(_, hi)| self.raw_at(hi)),
            SeriesKind::Gauge => {
                let j = self.points.partition_point(|(e, _)| *e <= t);
                let (e, v) = *self.points.get(j.checked_sub(1)?)?;
                (e > t.saturating_sub(LOOKBACK_MS)).then_some(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(points: &[(i64, f64)]) -> Series {
        Series::new(Labels::new(), SeriesKind::Counter, points.to_vec())
    }

    #[test]
    fn counters_sample_every_minute_until_midnight() {
        let (m, d) = (MINUTE_MS, DAY_MS);
        // Minutes ending at 2m (3 calls) and 4m (5 calls).
        let s = counter(&[(2 * m, 3.0), (4 * m, 8.0)]);
        assert_eq!(s.total_at(m), 0.0);
        assert_eq!(s.total_at(3 * m), 3.0);
        assert_eq!(
            s.samples(0, 5 * m),
            vec![(2 * m, 3.0), (3 * m, 3.0), (4 * m, 8.0), (5 * m, 8.0)]
        );
        assert_eq!(s.sample_count(0, 5 * m), 4);
        // Present from the end of its first minute with calls to the end of the day, quiet
        // minutes included; an instant selector sees it until five minutes after midnight.
        assert_eq!(s.latest(2 * m - 1), None);
        assert_eq!(s.latest(9 * m), Some(8.0));
        assert!(s.present(4 * m, 9 * m));
        assert_eq!(s.sample_count(0, d), 1439);
        assert_eq!(s.latest(d + 4 * m), Some(8.0));
        assert_eq!(s.latest(d + 5 * m), None);
        assert!(!s.present(d, 2 * d));
        // `(a, b]`: a sample exactly at `a` is outside.
        assert_eq!(s.samples(2 * m, 3 * m), vec![(3 * m, 3.0)]);
        // Extreme times neither overflow nor find anything.
        assert!(s.samples(i64::MAX - 10, i64::MAX).is_empty());
        assert_eq!(s.latest(i64::MIN), None);
    }

    #[test]
    fn raw_counter_values_count_from_midnight_utc() {
        let (m, d) = (MINUTE_MS, DAY_MS);
        // 2 calls in the last minute of day 0, 5 in the first of day 1.
        let s = counter(&[(d, 2.0), (d + m, 7.0)]);
        assert_eq!(day_start(d), 0);
        assert_eq!(s.latest(d), Some(2.0));
        assert_eq!(s.latest(d + m), Some(5.0));
        // Differences still span midnight: increase is not cut at the reset.
        assert_eq!(s.total_at(d + m) - s.total_at(d - m), 7.0);
    }

    #[test]
    fn gauges_have_samples_only_where_data_is() {
        let m = MINUTE_MS;
        let s = Series::new(
            Labels::new(),
            SeriesKind::Gauge,
            vec![(2 * m, 0.5), (4 * m, 0.25)],
        );
        assert_eq!(s.samples(0, 5 * m).len(), 2);
        assert!(!s.present(2 * m, 3 * m + 59_999));
        assert_eq!(s.latest(5 * m), Some(0.25));
        assert_eq!(s.latest(9 * m + 1), None);
    }

    /// Calls per minute over three days (minute index → calls), sparse.
    fn calls() -> impl proptest::strategy::Strategy<Value = Vec<(i64, u32)>> {
        proptest::collection::vec((0i64..3 * 1440, 1u32..5), 0..40)
    }

    proptest::proptest! {
        /// A counter's samples are facts of the series: every load whose window starts at
        /// or before 00:00 UTC of a range's first day and ends at or after its end gives the
        /// same samples there, equal to the rule computed here from the calls: a sample at
        /// each minute end `t` after a call that day (at a minute ending by `t`), valued at
        /// that day's calls so far.
        #[test]
        fn counter_samples_do_not_depend_on_the_window(
            calls in calls(),
            (a, len) in (0i64..3 * 1440, 1i64..900),
            early in 0i64..3,
            late in 0i64..600,
        ) {
            let (m, d) = (MINUTE_MS, DAY_MS);
            let mut per_minute = std::collections::BTreeMap::new();
            for (i, n) in &calls {
                *per_minute.entry(*i).or_insert(0u64) += u64::from(*n);
            }
            // Minute i ends at (i + 1)·m.
            let load = |from: i64, to: i64| {
                let mut total = 0.0;
                let points: Vec<(i64, f64)> = per_minute
                    .range(from..to)
                    .map(|(i, n)| {
                        total += *n as f64;
                        ((i + 1) * m, total)
                    })
                    .collect();
                Series::new(Labels::new(), SeriesKind::Counter, points)
            };
            let (a, b) = (a * m + 7, (a + len) * m + 7);
            // The samples the rule gives in (x, y].
            let rule = |x: i64, y: i64| {
                let mut want = Vec::new();
                let mut t = (x.div_euclid(m) + 1) * m;
                while t <= y {
                    let day = (t - 1).div_euclid(d) * d;
                    let so_far: Vec<u64> = per_minute
                        .range(day / m..t / m)
                        .map(|(_, n)| *n)
                        .collect();
                    if !so_far.is_empty() {
                        want.push((t, so_far.iter().sum::<u64>() as f64));
                    }
                    t += m;
                }
                want
            };
            let want = rule(a, b);
            let lookback = rule(b - LOOKBACK_MS, b).last().map(|(_, v)| *v);
            let day = a.min(b - LOOKBACK_MS).div_euclid(d);
            let narrow = load(day * 1440, b / m + 1);
            let wide = load((day - early) * 1440, b / m + 1 + late);
            for s in [&narrow, &wide] {
                proptest::prop_assert_eq!(&s.samples(a, b), &want);
                proptest::prop_assert_eq!(s.sample_count(a, b), want.len());
                proptest::prop_assert_eq!(s.present(a, b), !want.is_empty());
                // An instant selector at b sees the last sample of (b − 5m, b].
                proptest::prop_assert_eq!(s.latest(b), lookback);
            }
        }
    }
}
