//! Series for PromQL selectors, built from the per-minute rollups.
//!
//! Every rollup row is one minute of one key. A minute's figures become a sample stamped
//! at the minute's *end* (its calls are complete then):
//! - counters (`…_total`, a histogram's `_bucket`/`_sum`/`_count`) are built from the
//!   per-minute increments. Their samples sit on every minute end from the series' first
//!   minute with data to its last; an instant selector looks back five minutes, so a
//!   series is seen until five minutes after its last data. `increase(x[r])` at `t` is
//!   exactly the calls of the minutes that ended in `(t−r, t]`. A sample's own value (what
//!   a bare selector returns) counts from 00:00 UTC of its day, a counter that resets at
//!   midnight, so it does not depend on the query.
//! - gauges (the quantile families) have one sample per minute with data.
//!
//! Equality matchers on key labels go to the store as bound filters; every matcher is
//! then applied in memory to the full label set.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aggregator::histogram;
use aggregator::metrics::Metrics;
use aggregator::query::{self, KeyMinutes, KeyTotal, Window};
use aggregator::schema::Keys;
use aggregator::schema::Table;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::VectorSelector;
use proto::Side;

use super::PromError;
use super::catalog::{self, FAMILIES, Family, Measure, Reports};
use crate::ApiState;

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
    /// How its points are read.
    pub kind: SeriesKind,
    /// `(minute end in ms, value)` per minute with data, in time order: a counter's running
    /// total after that minute, a gauge's value for it.
    pub points: Vec<(i64, f64)>,
}

impl Series {
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

/// The matcher sets of a selector (AND within a set, OR across sets: `{a="1" or b="2"}`),
/// the metric name included as `__name__`.
pub fn matcher_sets(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut base: Vec<Matcher> = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, "__name__", name));
    }
    if vs.matchers.or_matchers.is_empty() {
        return vec![base];
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|set| set.iter().cloned().chain(base.iter().cloned()).collect())
        .collect()
}

/// Whether every matcher accepts `labels` (an absent label reads as empty).
pub fn matches(all: &[Matcher], labels: &Labels) -> bool {
    all.iter()
        .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
}

/// What a counter series adds up from a minute's metrics.
#[derive(Debug, Clone, Copy)]
enum Count {
    Calls,
    Errors,
    Latencies,
    /// Latency sum; increments in nanoseconds, samples in seconds.
    SumNanos,
    /// Calls whose histogram bucket representative is at most this many nanoseconds.
    AtMost(f64),
}

impl Count {
    fn increment(self, m: &Metrics) -> u128 {
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

    fn scale(self) -> f64 {
        match self {
            Count::SumNanos => 1e-9,
            _ => 1.0,
        }
    }
}

/// What one series reads from a minute's metrics.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Counter(Count),
    /// The minute's latency quantile, in seconds.
    Quantile(f64),
}

/// One series of a key: its extra label (`le`, `quantile`) if any, and what it reads.
type Picked = (Option<(&'static str, String)>, Pick);

/// The series a family gives one key under `name`, before label matching: the extra
/// label (`le`, `quantile`) if any, and what each reads.
fn picks(f: &Family, name: &str) -> Vec<Picked> {
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

fn build(pick: Pick, minutes: &[(i64, Metrics)]) -> (SeriesKind, Vec<(i64, f64)>) {
    let end = |m: i64| (m + 60) * 1000;
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

/// Whether a matcher set's `__name__` matchers accept the series name `name`.
pub fn name_matches(set: &[Matcher], name: &str) -> bool {
    set.iter()
        .filter(|m| m.name == "__name__")
        .all(|m| m.is_match(name))
}

/// `__name__` and the family's key labels of one key.
pub fn key_labels(f: &Family, name: &str, keys: &Keys) -> Labels {
    let mut labels: Labels = f
        .labels
        .iter()
        .map(|(label, key)| ((*label).to_string(), keys[*key].to_string()))
        .collect();
    labels.insert("__name__".into(), name.to_string());
    labels
}

/// A table read with bound equality filters `(key column, value)`.
type Scan = (Table, Vec<(usize, String)>);

/// A merged read: the scan, the side counted (`None`: the side rule) and the part.
type TotalScan = (Scan, Option<Side>, Window);

/// Loads series for selectors over one window, reading each table/filter pair once.
pub struct Fetcher<'a> {
    state: &'a ApiState,
    window: Window,
    cache: HashMap<Scan, Arc<Vec<KeyMinutes>>>,
    totals: HashMap<TotalScan, Arc<Vec<KeyTotal>>>,
    samples: usize,
}

/// The series a selector's matcher set gives in family `f`, worked out once per family:
/// each matching name and what its series read.
fn picked_names(f: &Family, set: &[Matcher]) -> Vec<(String, Vec<Picked>)> {
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
fn new_labels(
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

/// The equality matchers of `set` on `f`'s key labels, as store filters.
fn key_filters(f: &Family, set: &[Matcher]) -> Vec<(usize, String)> {
    let mut filters: Vec<(usize, String)> = set
        .iter()
        .filter(|m| m.op == MatchOp::Equal)
        .filter_map(|m| {
            f.labels
                .iter()
                .find(|(l, _)| *l == m.name)
                .map(|(_, k)| (*k, m.value.clone()))
        })
        .collect();
    filters.sort();
    filters.dedup();
    filters
}

impl<'a> Fetcher<'a> {
    /// A fetcher reading `window` of the store behind `state`.
    pub fn new(state: &'a ApiState, window: Window) -> Fetcher<'a> {
        Fetcher {
            state,
            window,
            cache: HashMap::new(),
            totals: HashMap::new(),
            samples: 0,
        }
    }

    async fn rows(
        &mut self,
        table: Table,
        filters: Vec<(usize, String)>,
    ) -> Result<Arc<Vec<KeyMinutes>>, PromError> {
        let key = (table, filters);
        if let Some(rows) = self.cache.get(&key) {
            return Ok(rows.clone());
        }
        let rows = Arc::new(
            query::key_minutes(
                self.state.store.as_ref(),
                &self.state.dedup,
                table,
                self.window,
                key.1.clone(),
            )
            .await?,
        );
        self.cache.insert(key, rows.clone());
        Ok(rows)
    }

    /// Every series one of the selector's matcher sets accepts.
    pub async fn select(&mut self, vs: &VectorSelector) -> Result<Vec<Series>, PromError> {
        let mut out: BTreeMap<Labels, Series> = BTreeMap::new();
        for set in matcher_sets(vs) {
            for f in FAMILIES {
                let picked = picked_names(f, &set);
                if picked.is_empty() {
                    continue;
                }
                let rows = self.rows(f.table, key_filters(f, &set)).await?;
                for km in rows.iter() {
                    let minutes = match f.reports {
                        Reports::Chosen => km.chosen(),
                        Reports::Server => &km.server,
                        Reports::Client => &km.client,
                    };
                    if minutes.is_empty() {
                        continue;
                    }
                    for (name, picks) in &picked {
                        let base = key_labels(f, name, &km.keys);
                        for (extra, pick) in picks {
                            let Some(labels) = new_labels(&base, extra, &set, &out) else {
                                continue;
                            };
                            let (kind, points) = build(*pick, minutes);
                            if points.is_empty() {
                                continue;
                            }
                            self.samples += points.len();
                            if self.samples > MAX_SAMPLES {
                                return Err(PromError::unsupported(format!(
                                    "the query would load more than {MAX_SAMPLES} samples; narrow its selectors or time range"
                                )));
                            }
                            out.insert(
                                labels.clone(),
                                Series {
                                    labels,
                                    kind,
                                    points,
                                },
                            );
                        }
                    }
                }
            }
        }
        Ok(out.into_values().collect())
    }
}

impl Fetcher<'_> {
    async fn totals(
        &mut self,
        scan: Scan,
        side: Option<Side>,
        part: Window,
    ) -> Result<Arc<Vec<KeyTotal>>, PromError> {
        let key = (scan, side, part);
        if let Some(rows) = self.totals.get(&key) {
            return Ok(rows.clone());
        }
        let rows = Arc::new(
            query::key_totals(
                self.state.store.as_ref(),
                &self.state.dedup,
                key.0.0,
                self.window,
                part,
                key.0.1.clone(),
                side,
            )
            .await?,
        );
        self.totals.insert(key, rows.clone());
        Ok(rows)
    }

    /// The selector's counters read only for `increase`/`rate` over `(from, to]` (ms), the
    /// loaded window ending at `to`: per series the increase over that range from merged
    /// reads (tiers, when the store has them) instead of every minute. Each series has two
    /// points, 0 at `from` and the increase at `to`, so only `total_at(from)`,
    /// `total_at(to)` and `present(from, to)` mean anything (the caller reads nothing
    /// else). `None` when the selector matches a gauge: then [`Fetcher::select`].
    pub async fn select_increase(
        &mut self,
        vs: &VectorSelector,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<Series>>, PromError> {
        let minute = |ms: i64| ms.div_euclid(MINUTE_MS) * 60;
        // The minutes that end in (from, to].
        let part = Window {
            start_minute: minute(from),
            end_minute: minute(to).max(minute(from)),
        };
        let sets = matcher_sets(vs);
        // What each set matches in each family, worked out before anything is read.
        let mut wanted = Vec::new();
        for set in &sets {
            for f in FAMILIES {
                let picked = picked_names(f, set);
                if !picked.is_empty() {
                    wanted.push((set, f, picked));
                }
            }
        }
        // A gauge among the matched names: nothing is read here.
        let gauge = wanted.iter().any(|(_, _, picked)| {
            picked
                .iter()
                .any(|(_, p)| p.iter().any(|(_, pick)| matches!(pick, Pick::Quantile(_))))
        });
        if gauge {
            return Ok(None);
        }
        let mut out: BTreeMap<Labels, Series> = BTreeMap::new();
        for (set, f, picked) in &wanted {
            let side = match f.reports {
                Reports::Chosen => None,
                Reports::Server => Some(Side::Server),
                Reports::Client => Some(Side::Client),
            };
            let totals = self
                .totals((f.table, key_filters(f, set)), side, part)
                .await?;
            for kt in totals.iter() {
                for (name, picks) in picked {
                    let base = key_labels(f, name, &kt.keys);
                    for (extra, pick) in picks {
                        let Pick::Counter(count) = pick else {
                            continue;
                        };
                        let Some(labels) = new_labels(&base, extra, set, &out) else {
                            continue;
                        };
                        let increase = count.increment(&kt.metrics) as f64 * count.scale();
                        out.insert(
                            labels.clone(),
                            Series {
                                labels,
                                kind: SeriesKind::Counter,
                                points: vec![(from, 0.0), (to, increase)],
                            },
                        );
                    }
                }
            }
        }
        Ok(Some(out.into_values().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(points: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::new(),
            kind: SeriesKind::Counter,
            points: points.to_vec(),
        }
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
        let s = Series {
            labels: Labels::new(),
            kind: SeriesKind::Gauge,
            points: vec![(2 * m, 0.5), (4 * m, 0.25)],
        };
        assert_eq!(s.samples(0, 5 * m).len(), 2);
        assert!(!s.present(2 * m, 3 * m + 59_999));
        assert_eq!(s.latest(5 * m), Some(0.25));
        assert_eq!(s.latest(9 * m + 1), None);
    }

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
