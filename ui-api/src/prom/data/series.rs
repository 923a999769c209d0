//! One series over a query's window: its labels and points, and the samples range and
//! instant selectors see in it.

use std::collections::BTreeMap;

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
    /// Its labels, `__name__` included.
    pub labels: Labels,
    /// Its labels without `__name__` (what `rate` and most functions answer with), made
    /// once rather than at every step.
    pub bare: Labels,
    /// How its points are read.
    pub kind: SeriesKind,
    /// `(minute end in ms, value)` per minute with data, in time order: a counter's running
    /// total after that minute, a gauge's value for it. A counter loaded in parts (see
    /// [`super::Fetcher::select`]) has one point per part with data instead, at the part's
    /// end: its totals, presence and samples are then right only at the cuts.
    pub points: Vec<(i64, f64)>,
}

impl Series {
    /// A series of `kind` with `labels` and `points`.
    pub fn new(labels: Labels, kind: SeriesKind, points: Vec<(i64, f64)>) -> Series {
        let mut bare = labels.clone();
        bare.remove("__name__");
        Series {
            labels,
            bare,
            kind,
            points,
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

    /// The counter's sample grid clipped to `(a, b]`: first and last minute end, if any.
    fn grid(&self, a: i64, b: i64) -> Option<(i64, i64)> {
        let first = self.points.first()?.0;
        let last = self.points.last()?.0;
        let after_a = a
            .div_euclid(MINUTE_MS)
            .saturating_add(1)
            .saturating_mul(MINUTE_MS);
        let lo = first.max(after_a);
        let hi = last.min(b.div_euclid(MINUTE_MS).saturating_mul(MINUTE_MS));
        (lo <= hi).then_some((lo, hi))
    }

    /// How many samples `samples(a, b)` returns, without building them.
    pub fn sample_count(&self, a: i64, b: i64) -> usize {
        match self.kind {
            SeriesKind::Counter => self.grid(a, b).map_or(0, |(lo, hi)| {
                usize::try_from((hi - lo) / MINUTE_MS + 1).unwrap_or(usize::MAX)
            }),
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
            SeriesKind::Counter => self.grid(a, b).is_some(),
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
                let Some((lo, hi)) = self.grid(a, b) else {
                    return Vec::new();
                };
                let mut out = Vec::with_capacity(self.sample_count(a, b));
                let mut g = lo;
                while g <= hi {
                    out.push((g, self.raw_at(g)));
                    match g.checked_add(MINUTE_MS) {
                        Some(next) => g = next,
                        None => break,
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
    fn counters_sample_every_minute_until_stale() {
        let m = MINUTE_MS;
        // Minutes ending at 2m (3 calls) and 4m (5 calls).
        let s = counter(&[(2 * m, 3.0), (4 * m, 8.0)]);
        assert_eq!(s.total_at(m), 0.0);
        assert_eq!(s.total_at(3 * m), 3.0);
        assert_eq!(
            s.samples(0, 5 * m),
            vec![(2 * m, 3.0), (3 * m, 3.0), (4 * m, 8.0)]
        );
        assert_eq!(s.sample_count(0, 5 * m), 3);
        // Seen by an instant selector until five minutes after the last minute with data.
        assert_eq!(s.latest(9 * m - 1), Some(8.0));
        assert_eq!(s.latest(9 * m), None);
        assert_eq!(s.latest(2 * m - 1), None);
        assert!(s.present(3 * m, 5 * m));
        assert!(!s.present(4 * m, 9 * m));
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
}
