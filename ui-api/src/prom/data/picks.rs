//! What each series of a family reads from a minute's metrics (calls, errors, latency
//! counts and sums, bucket counts, quantiles), and how its points are built.

use std::collections::BTreeMap;

use aggregator::histogram;
use aggregator::metrics::Metrics;
use promql_parser::label::Matcher;

use super::matchers::{matches, name_matches};
use super::series::{Labels, Series, SeriesKind};
use crate::prom::catalog::{self, Family, Measure};

/// What a counter series adds up from a minute's metrics.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    Calls,
    Errors,
    Latencies,
    /// Latency sum; increments in nanoseconds, samples in seconds.
    SumNanos,
    /// Calls whose histogram bucket representative is at most this many nanoseconds.
    AtMost(f64),
}

impl Count {
    pub fn increment(self, m: &Metrics) -> u128 {
        match self {
            Count::Calls => u128::from(m.calls),
            Count::Errors => u128::from(m.errors),
            Count::Latencies => u128::from(m.latency_count),
            Count::SumNanos => u128::from(m.latency_sum_nanos),
            Count::AtMost(le) => m
                .histogram
                .iter()
                .filter(|(i, _)| histogram::bucket_value(*i) <= le)
                .map(|(_, c)| u128::from(c))
                .sum(),
        }
    }

    pub fn scale(self) -> f64 {
        match self {
            Count::SumNanos => 1e-9,
            _ => 1.0,
        }
    }
}

/// What one series reads from a minute's metrics.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    Counter(Count),
    /// The minute's latency quantile, in seconds.
    Quantile(f64),
}

/// One series of a key: its extra label (`le`, `quantile`) if any, and what it reads.
impl Pick {
    /// Whether it reads latency histograms.
    pub fn needs_histograms(self) -> bool {
        matches!(self, Pick::Quantile(_) | Pick::Counter(Count::AtMost(_)))
    }
}

pub type Picked = (Option<(&'static str, String)>, Pick);

/// The series a family gives one key under `name`, before label matching: the extra
/// label (`le`, `quantile`) if any, and what each reads.
pub fn picks(f: &Family, name: &str) -> Vec<Picked> {
    let plain = |c: Count| vec![(None, Pick::Counter(c))];
    match (f.measure, catalog::extra_label(f, name)) {
        (Measure::Calls, _) => plain(Count::Calls),
        (Measure::Errors, _) => plain(Count::Errors),
        (Measure::Latency, None) if name.ends_with("_sum") => plain(Count::SumNanos),
        (Measure::Latency, None) => plain(Count::Latencies),
        (Measure::Latency, Some((label, values))) => values
            .into_iter()
            .map(|(v, le)| (Some((label, v)), Pick::Counter(Count::AtMost(le * 1e9))))
            .collect(),
        (Measure::Quantile, extra) => extra
            .into_iter()
            .flat_map(|(label, values)| {
                values
                    .into_iter()
                    .map(move |(v, q)| (Some((label, v)), Pick::Quantile(q)))
            })
            .collect(),
    }
}

/// One series' points from a key's `(start, metrics)` entries in time order (minutes, or
/// parts of the window): each stamped at `end(start)` in ms, a counter's as the running
/// total after it, a gauge's as its own value.
pub fn build(
    pick: Pick,
    minutes: &[(i64, Metrics)],
    end: impl Fn(i64) -> i64,
) -> (SeriesKind, Vec<(i64, f64)>) {
    match pick {
        Pick::Quantile(q) => (
            SeriesKind::Gauge,
            minutes
                .iter()
                .filter_map(|(m, x)| Some((end(*m), x.histogram.quantile(q)? / 1e9)))
                .collect(),
        ),
        Pick::Counter(count) => {
            let mut total: u128 = 0;
            let points = minutes
                .iter()
                .map(|(m, x)| {
                    total = total.saturating_add(count.increment(x));
                    (end(*m), total as f64 * count.scale())
                })
                .collect();
            (SeriesKind::Counter, points)
        }
    }
}

/// The series a selector's matcher set gives in family `f`, worked out once per family:
/// each matching name and what its series read.
pub fn picked_names(f: &Family, set: &[Matcher]) -> Vec<(String, Vec<Picked>)> {
    catalog::series_names(f)
        .into_iter()
        .filter(|n| name_matches(set, n))
        .map(|n| {
            let p = picks(f, &n);
            (n, p)
        })
        .collect()
}

/// A key's series labels (`base` plus the extra label, if any) when `set` accepts them and
/// no earlier matcher set or family already gave that series.
pub fn new_labels(
    base: &Labels,
    extra: &Option<(&'static str, String)>,
    set: &[Matcher],
    out: &BTreeMap<Labels, Series>,
) -> Option<Labels> {
    let mut labels = base.clone();
    if let Some((l, v)) = extra {
        labels.insert(l.to_string(), v.clone());
    }
    (!out.contains_key(&labels) && matches(set, &labels)).then_some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_use_the_bucket_representatives() {
        let mut m = Metrics::default();
        for nanos in [1_000_000u64, 4_000_000, 20_000_000, 3_000_000_000] {
            m.histogram.record(nanos);
            m.latency_count += 1;
        }
        let le = |s: f64| Count::AtMost(s * 1e9).increment(&m);
        assert_eq!(le(0.005), 2);
        assert_eq!(le(0.025), 3);
        assert_eq!(le(2.5), 3);
        assert_eq!(Count::AtMost(f64::INFINITY).increment(&m), 4);
    }
}
