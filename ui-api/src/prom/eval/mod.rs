//! A PromQL evaluator over the series of [`super::data`].
//!
//! The expression is parsed by `promql-parser`; every selector's series are loaded once
//! for the whole query (one window covering every evaluation time, range and offset), then
//! the expression is evaluated at each step in memory. Supported: selectors (`=`, `!=`,
//! `=~`, `!~`, `or` sets), range selectors, `offset`, `@`; `rate`, `increase`,
//! `{sum,avg,min,max,count}_over_time`, `histogram_quantile`, `vector`, `scalar`, `time`,
//! `abs`, `ceil`, `floor`, `round`, `sqrt`, `exp`, `ln`, `log2`, `log10`, `clamp_min`,
//! `clamp_max`; `sum`, `avg`, `min`, `max`, `count`, `group`, `topk`, `bottomk` with
//! `by`/`without`; arithmetic and comparison operators (`bool` too) between scalars and
//! vectors with `on`/`ignoring` one-to-one, `group_left` and `group_right` matching; `and`,
//! `or`, `unless`. Anything else is refused with a 422 naming it, never answered
//! approximately.
//!
//! `rate` and `increase` are exact at minute resolution: `increase(x[r])` at `t` is the
//! sum of the increments of the minutes that ended in `(t−r, t]` (no extrapolation), and
//! `rate` divides it by `r` in seconds.
//!
//! A selector read only by `rate`/`increase` (the common panels: `sum(rate(x[$__range]))`,
//! `sum by (service) (rate(x[5m]))`) needs its counters' running totals only at the two
//! ends of its ranges at each step, and whether they had calls since 00:00 UTC of each
//! range's first day: it loads them in parts of the window cut at those times
//! (`Fetcher::select` with cuts) rather than per minute — a part that spans whole hours or
//! days is read from hour and day rows — and gets the same answers. A selector whose sample
//! values are read anywhere in the query, or that matches a gauge, loads every minute.
//!
//! - [`selectors`]: the selectors of an expression, the times they read at, the bounds;
//! - [`functions`], [`aggregate`], [`binary`]: function calls, aggregations, operators;
//! - [`histogram`]: `histogram_quantile` as Prometheus computes it;
//! - [`labels`]: the label-set operations they share.

mod aggregate;
mod binary;
mod functions;
mod histogram;
mod labels;
mod selectors;
mod value;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use aggregator::query::Window;
use promql_parser::parser::{Expr, MatrixSelector, VectorSelector};

use super::data::{self, Fetcher, LOOKBACK_MS, Labels, MAX_SAMPLES, Series};
use super::error::PromError;
use crate::limits::{Budget, SampleMeter};
use crate::state::ApiState;
use labels::{map_values, unique};
use selectors::{MAX_WINDOW_MS, address, millis, read_time, selectors};

pub use selectors::{MAX_DEPTH, depth};
pub use value::{Sample, Value};

/// One query: its expression and the series of its selectors, ready to evaluate at any
/// time in its range.
pub struct Evaluator {
    /// The parsed query, boxed so the selectors' addresses stay put when the evaluator
    /// moves (they key `index`).
    expr: Box<Expr>,
    /// For each selector of `expr` (by address), its entry in `loaded`; equal selectors
    /// share one.
    index: HashMap<usize, usize>,
    loaded: Vec<Vec<Series>>,
    /// For each entry of `loaded`, whether its series stay distinct without `__name__`
    /// (then `rate` and `increase` need not check their result for duplicates).
    bare_distinct: Vec<bool>,
    /// The query's start and end (ms), for `@ start()` / `@ end()`.
    start: i64,
    end: i64,
    /// Samples touched by range selectors at the current step (bounded by
    /// [`MAX_SAMPLES`]).
    touched: Cell<usize>,
    /// The label sets aggregations built, by hash: a group's labels are built once per
    /// query and shared by its samples at every step (see [`Evaluator::intern`]).
    interned: RefCell<HashMap<u64, Vec<Arc<Labels>>>>,
    hasher: foldhash::fast::RandomState,
    /// What the whole query may still spend: samples over every step, its deadline, its
    /// cancellation.
    budget: Budget,
}

impl Evaluator {
    fn new(expr: Box<Expr>, start: i64, end: i64, budget: Budget) -> Evaluator {
        Evaluator {
            expr,
            index: HashMap::new(),
            loaded: Vec::new(),
            bare_distinct: Vec::new(),
            start,
            end,
            touched: Cell::new(0),
            interned: RefCell::new(HashMap::new()),
            hasher: foldhash::fast::RandomState::default(),
            budget,
        }
    }

    /// Takes the query and loads every selector of it for evaluation at `start`, and then
    /// every `step` up to `end` (ms; a `step` of 0 evaluates at `start` only), within
    /// `budget`.
    pub async fn load(
        state: &ApiState,
        expr: Expr,
        (start, end, step): (i64, i64, i64),
        budget: Budget,
    ) -> Result<Evaluator, PromError> {
        let expr = Box::new(expr);
        let mut sels = Vec::new();
        selectors(&expr, &mut sels)?;
        if sels.is_empty() {
            return Ok(Evaluator::new(expr, start, end, budget));
        }
        // One window for all, so every scan chooses sources over the same window. It starts
        // at 00:00 UTC of the first day a selector reads in: a counter's samples there
        // follow from its calls since then (see `data`).
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for (vs, range, _) in &sels {
            // The first and last time the selector reads at, `@` and `offset` applied.
            let (a, b) = (
                read_time(vs, start, start, end),
                read_time(vs, end, start, end),
            );
            let from = a.saturating_sub(*range).saturating_sub(LOOKBACK_MS);
            lo = lo.min(data::day_start(from));
            hi = hi.max(b);
        }
        if hi.saturating_sub(lo) > MAX_WINDOW_MS {
            return Err(PromError::unsupported(
                "the query reads more than 400 days of data; narrow its ranges, offsets or time range",
            ));
        }
        let minute = |ms: i64| ms.div_euclid(60_000) * 60;
        let window = Window {
            start_minute: minute(lo) - 60,
            end_minute: minute(hi).max(minute(lo) - 60),
        };
        // A selector read only by `rate`/`increase` needs, at each step, its counters'
        // totals at the two ends of its range and whether they had calls since 00:00 UTC
        // of the range's first day ([`Series::present`]): it loads them in parts of the
        // window cut at those times (whole hours and days from hour and day rows) instead
        // of every minute, with the same answers. One whose sample values are read
        // anywhere loads every minute.
        let steps = if step > 0 { (end - start) / step } else { 0 };
        let mut cuts: HashMap<String, Option<Vec<i64>>> = HashMap::new();
        for (vs, range, raw) in &sels {
            let entry = cuts
                .entry(vs.to_string())
                .or_insert_with(|| Some(Vec::new()));
            match entry {
                Some(_) if *raw => *entry = None,
                Some(c) => {
                    for i in 0..=steps {
                        // i·step ≤ end − start: no overflow.
                        let at = read_time(vs, start + i * step, start, end);
                        let from = at.saturating_sub(*range);
                        let day = from.div_euclid(data::DAY_MS) * data::DAY_MS;
                        c.extend([minute(at), minute(from), minute(day)]);
                    }
                }
                None => {}
            }
        }
        // Series depend only on the matchers (the window is the query's): equal selectors
        // share one load. The rows loaded count as samples against the query's budget
        // (api.query_max_samples), and a scan stops reading past it.
        let loads = budget.clone();
        let meter = SampleMeter(&loads);
        let mut fetcher = Fetcher::new(state.reader(window).metered(&meter));
        let mut by_text: HashMap<String, usize> = HashMap::new();
        let mut index = HashMap::new();
        let mut loaded = Vec::new();
        for (vs, _, _) in &sels {
            let text = vs.to_string();
            let at = match by_text.get(&text) {
                Some(at) => *at,
                None => {
                    let cuts = cuts.get(&text).and_then(|c| c.as_deref());
                    loaded.push(fetcher.select(vs, cuts).await?);
                    by_text.insert(text, loaded.len() - 1);
                    loaded.len() - 1
                }
            };
            index.insert(address(vs), at);
        }
        drop(sels);
        let mut ev = Evaluator::new(expr, start, end, budget);
        ev.bare_distinct = loaded.iter().map(|series| unique_bare(series)).collect();
        ev.index = index;
        ev.loaded = loaded;
        Ok(ev)
    }

    fn at(&self, vs: &VectorSelector, t: i64) -> i64 {
        read_time(vs, t, self.start, self.end)
    }

    fn series(&self, vs: &VectorSelector) -> &[Series] {
        self.index
            .get(&address(vs))
            .and_then(|i| self.loaded.get(*i))
            .map_or(&[], Vec::as_slice)
    }

    /// The label set of `pairs` (in label order), built once per query: the same `Arc`
    /// at every step, which a range query's result recognises without comparing labels.
    fn intern(&self, pairs: &[(&str, &str)]) -> Arc<Labels> {
        let hash = self.hasher.hash_one(pairs);
        let mut interned = self.interned.borrow_mut();
        let same = interned.entry(hash).or_default();
        let equal = |l: &Arc<Labels>| {
            l.len() == pairs.len()
                && l.iter()
                    .zip(pairs)
                    .all(|((k, v), (pk, pv))| k == pk && v == pv)
        };
        if let Some(l) = same.iter().find(|l| equal(l)) {
            return l.clone();
        }
        let labels = Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        same.push(Arc::clone(&labels));
        labels
    }

    /// Whether the series of `vs` stay distinct without `__name__`.
    fn bare_distinct(&self, vs: &VectorSelector) -> bool {
        self.index
            .get(&address(vs))
            .and_then(|i| self.bare_distinct.get(*i))
            .copied()
            .unwrap_or(false)
    }

    fn touch(&self, n: usize) -> Result<(), PromError> {
        let total = self.touched.get().saturating_add(n);
        self.touched.set(total);
        if total > MAX_SAMPLES {
            return Err(PromError::unsupported(format!(
                "the query reads more than {MAX_SAMPLES} samples at one step; use shorter ranges"
            )));
        }
        self.spend(n)
    }

    /// Spends `n` samples of the whole query's budget.
    fn spend(&self, n: usize) -> Result<(), PromError> {
        self.budget
            .spend(n)
            .map_err(|stop| PromError::stopped(&self.budget, stop))
    }

    /// Evaluates the query at `t` (ms).
    pub fn eval_at(&self, t: i64) -> Result<Value, PromError> {
        self.touched.set(0);
        self.eval(&self.expr, t)
    }

    fn eval(&self, e: &Expr, t: i64) -> Result<Value, PromError> {
        // Every node checks the deadline and cancellation: a query stops within one
        // node's work of either.
        self.budget
            .check()
            .map_err(|stop| PromError::stopped(&self.budget, stop))?;
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(_) => {
                Err(PromError::unsupported("string results are not supported"))
            }
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(unique(map_values(v, |x| -x))?)),
                Value::Matrix(_) => Err(PromError::bad("unary minus needs a scalar or vector")),
            },
            Expr::VectorSelector(vs) => {
                let at = self.at(vs, t);
                let series = self.series(vs);
                self.spend(series.len())?;
                Ok(Value::Vector(
                    series
                        .iter()
                        .filter_map(|s| {
                            s.latest(at).map(|value| Sample {
                                labels: s.labels.clone(),
                                value,
                            })
                        })
                        .collect(),
                ))
            }
            Expr::MatrixSelector(ms) => self.matrix(ms, t),
            Expr::Call(c) => self.call(c, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::Subquery(_) | Expr::Extension(_) => Err(PromError::unsupported(
                "subqueries are not supported by meshscope",
            )),
        }
    }

    fn matrix(&self, ms: &MatrixSelector, t: i64) -> Result<Value, PromError> {
        let at = self.at(&ms.vs, t);
        let range = millis(&ms.range);
        let mut out = Vec::new();
        for s in self.series(&ms.vs) {
            let from = at.saturating_sub(range);
            self.touch(s.sample_count(from, at))?;
            let points = s.samples(from, at);
            if !points.is_empty() {
                out.push((s.labels.clone(), points));
            }
        }
        Ok(Value::Matrix(out))
    }

    fn scalar_arg(&self, e: &Expr, t: i64) -> Result<f64, PromError> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(PromError::bad("expected a scalar argument")),
        }
    }

    fn vector_arg(&self, e: &Expr, t: i64) -> Result<Vec<Sample>, PromError> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            _ => Err(PromError::bad("expected an instant vector argument")),
        }
    }
}

/// Whether `series` (distinct label sets) stay distinct without `__name__`: always when
/// they share one name.
fn unique_bare(series: &[Series]) -> bool {
    fn name(s: &Series) -> Option<&String> {
        s.labels.get("__name__")
    }
    match series.first() {
        None => true,
        Some(first) if series.iter().all(|s| name(s) == name(first)) => true,
        Some(_) => {
            let mut seen = std::collections::BTreeSet::new();
            series.iter().all(|s| seen.insert(&s.bare))
        }
    }
}

#[cfg(test)]
mod test_support {
    //! Samples and constant expressions the evaluator's tests share.

    use super::*;

    pub fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: std::sync::Arc::new(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            value,
        }
    }

    pub fn constant(q: &str) -> Result<Value, PromError> {
        let e = promql_parser::parser::parse(q).expect("parses");
        let mut sels = Vec::new();
        selectors(&e, &mut sels)?;
        assert!(sels.is_empty());
        Evaluator::new(Box::new(e), 0, 0, Budget::with_samples(usize::MAX)).eval_at(60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{constant, sample};
    use super::*;

    #[test]
    fn expressions_without_series_evaluate() {
        let scalar = |q: &str| match constant(q) {
            Ok(Value::Scalar(v)) => v,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(scalar("1+1"), 2.0);
        assert_eq!(scalar("-(2 * 3) ^ 2"), -36.0);
        assert_eq!(scalar("7 % 4 + 10 / 4"), 5.5);
        assert_eq!(scalar("1 < bool 2"), 1.0);
        assert_eq!(scalar("2 == bool 3"), 0.0);
        assert_eq!(scalar("time()"), 60.0);
        assert_eq!(
            constant("vector(2) * 3").ok(),
            Some(Value::Vector(vec![sample(&[], 6.0)]))
        );
        assert_eq!(
            constant("sum(vector(1) or vector(2))").ok(),
            Some(Value::Vector(vec![sample(&[], 1.0)]))
        );
        assert_eq!(
            constant("round(vector(2.5))").ok(),
            Some(Value::Vector(vec![sample(&[], 3.0)]))
        );
        match constant("clamp_max(vector(0) / vector(0), 1)") {
            Ok(Value::Vector(v)) => assert!(v[0].value.is_nan(), "NaN stays NaN"),
            other => panic!("{other:?}"),
        }
        for refused in [
            "quantile(0.5, vector(1))",
            "stddev(vector(1))",
            "label_replace(vector(1), \"a\", \"b\", \"c\", \"d\")",
            "\"text\"",
            "max_over_time(vector(1)[5m:1m])",
        ] {
            let e = constant(refused).expect_err(refused);
            assert_eq!(
                e.status,
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "{refused}"
            );
        }
    }
}
