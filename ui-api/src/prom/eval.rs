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
//! vectors with `on`/`ignoring` one-to-one matching; `and`, `or`, `unless`. Anything else
//! is refused with a 422 naming it, never answered approximately.
//!
//! `rate` and `increase` are exact at minute resolution: `increase(x[r])` at `t` is the
//! sum of the increments of the minutes that ended in `(t−r, t]` (no extrapolation), and
//! `rate` divides it by `r` in seconds.
//!
//! An instant query whose selectors are all read by `rate`/`increase` at one time (the
//! common stat panel: `sum(rate(x[$__range]))`) needs only each range's increase per
//! series: those selectors load merged totals ([`Fetcher::select_increase`]), which a
//! store with hour and day tiers answers without reading every minute. The result is the
//! same as loading every minute (the tests compare both), except that a `_sum` series'
//! increase is rounded once instead of as the difference of two running totals, and that
//! these loads are not bounded by the sample limit (they load no samples).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use aggregator::query::Window;
use promql_parser::label::Labels as LabelList;
use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    VectorMatchCardinality, VectorSelector,
};

use super::PromError;
use super::data::{self, Fetcher, LOOKBACK_MS, Labels, MAX_SAMPLES, Series, SeriesKind};
use crate::ApiState;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The element's labels.
    pub labels: Labels,
    /// Its value at the evaluation time.
    pub value: f64,
}

/// The value of an expression at one time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
    /// A range vector: labels and `(ms, value)` samples (only as an instant query's result
    /// or a function's argument).
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

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
    /// The query's start and end (ms), for `@ start()` / `@ end()`.
    start: i64,
    end: i64,
    /// Samples touched by range selectors so far (bounded by [`MAX_SAMPLES`]).
    touched: Cell<usize>,
}

/// Longest span of data one query may read.
const MAX_WINDOW_MS: i64 = 400 * data::DAY_MS;

/// Deepest expression accepted (the evaluator recurses once per level).
pub const MAX_DEPTH: usize = 100;

/// The nesting depth of `e` (run on a thread with a stack large for the input).
pub fn depth(e: &Expr) -> usize {
    1 + match e {
        Expr::Aggregate(a) => depth(&a.expr).max(a.param.as_deref().map_or(0, depth)),
        Expr::Unary(u) => depth(&u.expr),
        Expr::Binary(b) => depth(&b.lhs).max(depth(&b.rhs)),
        Expr::Paren(p) => depth(&p.expr),
        Expr::Subquery(q) => depth(&q.expr),
        Expr::Call(c) => c.args.args.iter().map(|a| depth(a)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The time a selector reads at when a query over `[start, end]` is evaluated at `t`:
/// `@` and `offset` applied.
fn read_time(vs: &VectorSelector, t: i64, start: i64, end: i64) -> i64 {
    let base = match &vs.at {
        None => t,
        Some(AtModifier::Start) => start,
        Some(AtModifier::End) => end,
        Some(AtModifier::At(st)) => system_ms(st),
    };
    base.saturating_sub(offset_ms(&vs.offset))
}

fn address(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

fn millis(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

fn system_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => millis(&d),
        Err(e) => -millis(&e.duration()),
    }
}

/// A selector, the range it is read over (0 for instant selectors) and whether sample
/// values are read (anything but `rate`/`increase`, which read differences only).
type Use<'e> = (&'e VectorSelector, i64, bool);

/// Every selector in `e`.
fn selectors<'e>(e: &'e Expr, out: &mut Vec<Use<'e>>) -> Result<(), PromError> {
    let first_matrix = |c: &'e Call| match c.args.args.first().map(|a| a.as_ref()) {
        Some(Expr::MatrixSelector(ms)) if matches!(c.func.name, "rate" | "increase") => Some(ms),
        _ => None,
    };
    match e {
        Expr::VectorSelector(vs) => out.push((vs, 0, true)),
        Expr::MatrixSelector(ms) => out.push((&ms.vs, millis(&ms.range), true)),
        Expr::Call(c) if first_matrix(c).is_some() => {
            if let Some(ms) = first_matrix(c) {
                out.push((&ms.vs, millis(&ms.range), false));
            }
        }
        Expr::Aggregate(a) => {
            selectors(&a.expr, out)?;
            if let Some(p) = &a.param {
                selectors(p, out)?;
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out)?,
        Expr::Binary(b) => {
            selectors(&b.lhs, out)?;
            selectors(&b.rhs, out)?;
        }
        Expr::Paren(p) => selectors(&p.expr, out)?,
        Expr::Call(c) => {
            for a in &c.args.args {
                selectors(a, out)?;
            }
        }
        Expr::Subquery(_) => {
            return Err(PromError::unsupported(
                "subqueries are not supported by meshscope",
            ));
        }
        Expr::Extension(_) => return Err(PromError::unsupported("unsupported expression")),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => {}
    }
    Ok(())
}

impl Evaluator {
    fn new(expr: Box<Expr>, start: i64, end: i64) -> Evaluator {
        Evaluator {
            expr,
            index: HashMap::new(),
            loaded: Vec::new(),
            start,
            end,
            touched: Cell::new(0),
        }
    }

    /// Takes the query and loads every selector of it for evaluation at times in
    /// `[start, end]` (ms).
    pub async fn load(
        state: &ApiState,
        expr: Expr,
        start: i64,
        end: i64,
    ) -> Result<Evaluator, PromError> {
        let expr = Box::new(expr);
        let mut sels = Vec::new();
        selectors(&expr, &mut sels)?;
        if sels.is_empty() {
            return Ok(Evaluator::new(expr, start, end));
        }
        // One window for all, so every scan chooses sources over the same window.
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for (vs, range, raw) in &sels {
            // The first and last time the selector reads at, `@` and `offset` applied.
            let (a, b) = (
                read_time(vs, start, start, end),
                read_time(vs, end, start, end),
            );
            let mut from = a.saturating_sub(*range).saturating_sub(LOOKBACK_MS);
            if *raw {
                // Sample values count from midnight UTC.
                from = data::day_start(from);
            }
            lo = lo.min(from);
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
        // Evaluated at one time only, every selector read by `rate`/`increase` at that one
        // time (the window's end): each needs only its range's increase per series, which
        // merged reads give without loading every minute (see `Fetcher::select_increase`).
        let increases_only = start == end
            && sels
                .iter()
                .all(|(vs, _, raw)| !raw && read_time(vs, start, start, end) == hi);
        // Series depend only on the matchers (the window is the query's), and merged
        // totals on the range too: equal selectors share one load.
        let mut fetcher = Fetcher::new(state, window);
        let mut general: HashMap<String, usize> = HashMap::new();
        let mut merged: HashMap<(String, i64), usize> = HashMap::new();
        let mut index = HashMap::new();
        let mut loaded = Vec::new();
        for (vs, range, _) in &sels {
            let text = vs.to_string();
            let mut at = None;
            // A selector that had to load every minute (it matches a gauge) keeps that.
            if increases_only && !general.contains_key(&text) {
                let key = (text.clone(), *range);
                at = match merged.get(&key) {
                    Some(at) => Some(*at),
                    None => {
                        let from = hi.saturating_sub(*range);
                        match fetcher.select_increase(vs, from, hi).await? {
                            Some(series) => {
                                loaded.push(series);
                                merged.insert(key, loaded.len() - 1);
                                Some(loaded.len() - 1)
                            }
                            None => None,
                        }
                    }
                };
            }
            let at = match at {
                Some(at) => at,
                None => match general.get(&text) {
                    Some(at) => *at,
                    None => {
                        loaded.push(fetcher.select(vs).await?);
                        general.insert(text, loaded.len() - 1);
                        loaded.len() - 1
                    }
                },
            };
            index.insert(address(vs), at);
        }
        drop(sels);
        let mut ev = Evaluator::new(expr, start, end);
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

    fn touch(&self, n: usize) -> Result<(), PromError> {
        let total = self.touched.get().saturating_add(n);
        self.touched.set(total);
        if total > MAX_SAMPLES {
            return Err(PromError::unsupported(format!(
                "the query reads more than {MAX_SAMPLES} samples at one step; use shorter ranges"
            )));
        }
        Ok(())
    }

    /// Evaluates the query at `t` (ms).
    pub fn eval_at(&self, t: i64) -> Result<Value, PromError> {
        self.touched.set(0);
        self.eval(&self.expr, t)
    }

    fn eval(&self, e: &Expr, t: i64) -> Result<Value, PromError> {
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
                Ok(Value::Vector(
                    self.series(vs)
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

    fn call(&self, c: &Call, t: i64) -> Result<Value, PromError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
        let arg = |i: usize| {
            args.get(i)
                .copied()
                .ok_or_else(|| PromError::bad(format!("{name}() is missing an argument")))
        };
        let math = |f: fn(f64) -> f64| -> Result<Value, PromError> {
            Ok(Value::Vector(unique(map_values(
                self.vector_arg(arg(0)?, t)?,
                f,
            ))?))
        };
        match name {
            "rate" | "increase" => {
                let Expr::MatrixSelector(ms) = arg(0)? else {
                    return Err(PromError::unsupported(format!(
                        "{name}() is supported over a range selector only"
                    )));
                };
                let at = self.at(&ms.vs, t);
                let range = millis(&ms.range);
                let from = at.saturating_sub(range);
                let mut out = Vec::new();
                for s in self.series(&ms.vs) {
                    if s.kind != SeriesKind::Counter {
                        return Err(PromError::unsupported(format!(
                            "{name}() needs a counter; {} is a gauge",
                            s.labels.get("__name__").map_or("", String::as_str)
                        )));
                    }
                    if !s.present(from, at) {
                        continue;
                    }
                    let inc = s.total_at(at) - s.total_at(from);
                    let value = if name == "rate" {
                        inc / (range as f64 / 1000.0)
                    } else {
                        inc
                    };
                    out.push(Sample {
                        labels: without_name(&s.labels),
                        value,
                    });
                }
                Ok(Value::Vector(unique(out)?))
            }
            "sum_over_time" | "avg_over_time" | "min_over_time" | "max_over_time"
            | "count_over_time" => {
                let Value::Matrix(m) = self.eval(arg(0)?, t)? else {
                    return Err(PromError::bad(format!("{name}() needs a range vector")));
                };
                let out = m
                    .into_iter()
                    .map(|(labels, points)| {
                        let vals = points.iter().map(|(_, v)| *v);
                        let n = points.len() as f64;
                        let value = match name {
                            "sum_over_time" => vals.sum(),
                            "avg_over_time" => vals.sum::<f64>() / n,
                            "min_over_time" => vals.fold(f64::INFINITY, f64::min),
                            "max_over_time" => vals.fold(f64::NEG_INFINITY, f64::max),
                            _ => n,
                        };
                        Sample {
                            labels: without_name(&labels),
                            value,
                        }
                    })
                    .collect();
                Ok(Value::Vector(unique(out)?))
            }
            "histogram_quantile" => {
                let q = self.scalar_arg(arg(0)?, t)?;
                Ok(Value::Vector(histogram_quantile(
                    q,
                    self.vector_arg(arg(1)?, t)?,
                )))
            }
            "vector" => Ok(Value::Vector(vec![Sample {
                labels: Labels::new(),
                value: self.scalar_arg(arg(0)?, t)?,
            }])),
            "scalar" => {
                let v = self.vector_arg(arg(0)?, t)?;
                Ok(Value::Scalar(match v.as_slice() {
                    [one] => one.value,
                    _ => f64::NAN,
                }))
            }
            "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
            "abs" => math(f64::abs),
            "ceil" => math(f64::ceil),
            "floor" => math(f64::floor),
            "sqrt" => math(f64::sqrt),
            "exp" => math(f64::exp),
            "ln" => math(f64::ln),
            "log2" => math(f64::log2),
            "log10" => math(f64::log10),
            "round" => {
                let to = match args.get(1) {
                    Some(e) => self.scalar_arg(e, t)?,
                    None => 1.0,
                };
                let inv = 1.0 / to;
                let v = self.vector_arg(arg(0)?, t)?;
                Ok(Value::Vector(unique(map_values(v, |x| {
                    (x * inv + 0.5).floor() / inv
                }))?))
            }
            "clamp_min" | "clamp_max" => {
                let bound = self.scalar_arg(arg(1)?, t)?;
                let v = self.vector_arg(arg(0)?, t)?;
                let f = |x: f64| {
                    if x.is_nan() || bound.is_nan() {
                        f64::NAN
                    } else if name == "clamp_min" {
                        x.max(bound)
                    } else {
                        x.min(bound)
                    }
                };
                Ok(Value::Vector(unique(map_values(v, f))?))
            }
            other => Err(PromError::unsupported(format!(
                "function {other}() is not supported by meshscope"
            ))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value, PromError> {
        let op = a.op.id();
        let v = self.vector_arg(&a.expr, t)?;
        let group = |labels: &Labels| group_labels(labels, a.modifier.as_ref());
        if op == token::T_TOPK || op == token::T_BOTTOMK {
            let param = a
                .param
                .as_ref()
                .ok_or_else(|| PromError::bad(format!("{} needs a parameter", a.op)))?;
            let k = self.scalar_arg(param, t)?;
            if k.is_nan() {
                return Err(PromError::bad(format!("parameter of {} is NaN", a.op)));
            }
            if k < 1.0 {
                return Ok(Value::Vector(Vec::new()));
            }
            let k = k.min(usize::MAX as f64) as usize;
            let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
            for s in v {
                groups.entry(group(&s.labels)).or_default().push(s);
            }
            let top = op == token::T_TOPK;
            // NaN ranks below every number for topk and above for bottomk.
            let rank = |x: f64| match (x.is_nan(), top) {
                (true, true) => f64::NEG_INFINITY,
                (true, false) => f64::INFINITY,
                _ => x,
            };
            let mut out = Vec::new();
            for (_, mut members) in groups {
                members.sort_by(|x, y| {
                    let (a, b) = (rank(x.value), rank(y.value));
                    let o = a.total_cmp(&b);
                    if top { o.reverse() } else { o }
                });
                members.truncate(k);
                out.extend(members);
            }
            return Ok(Value::Vector(out));
        }
        #[derive(Default)]
        struct Acc {
            sum: f64,
            n: f64,
            min: Option<f64>,
            max: Option<f64>,
        }
        let mut groups: BTreeMap<Labels, Acc> = BTreeMap::new();
        for s in &v {
            let acc = groups.entry(group(&s.labels)).or_default();
            acc.sum += s.value;
            acc.n += 1.0;
            // NaN only when every value is NaN, as in Prometheus.
            let pick = |cur: Option<f64>, better: fn(f64, f64) -> bool| match cur {
                None => Some(s.value),
                Some(c) if c.is_nan() || better(s.value, c) => Some(s.value),
                keep => keep,
            };
            acc.min = pick(acc.min, |x, c| x < c);
            acc.max = pick(acc.max, |x, c| x > c);
        }
        let value = |acc: &Acc| -> Result<f64, PromError> {
            Ok(match op {
                token::T_SUM => acc.sum,
                token::T_AVG => acc.sum / acc.n,
                token::T_MIN => acc.min.unwrap_or(f64::NAN),
                token::T_MAX => acc.max.unwrap_or(f64::NAN),
                token::T_COUNT => acc.n,
                token::T_GROUP => 1.0,
                _ => {
                    return Err(PromError::unsupported(format!(
                        "aggregation {} is not supported by meshscope",
                        a.op
                    )));
                }
            })
        };
        let mut out = Vec::with_capacity(groups.len());
        for (labels, acc) in &groups {
            out.push(Sample {
                labels: labels.clone(),
                value: value(acc)?,
            });
        }
        if groups.is_empty() {
            // Still refuse an unsupported aggregation on empty input.
            value(&Acc::default())?;
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value, PromError> {
        let op = b.op.id();
        if let Some(m) = &b.modifier {
            if matches!(
                m.card,
                VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
            ) {
                return Err(PromError::unsupported(
                    "group_left / group_right are not supported by meshscope",
                ));
            }
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(PromError::unsupported(
                    "fill modifiers are not supported by meshscope",
                ));
            }
        }
        let return_bool = b.return_bool();
        let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let set = matches!(op, token::T_LAND | token::T_LOR | token::T_LUNLESS);
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => {
                if is_comparison(op) && !return_bool {
                    return Err(PromError::bad(
                        "comparisons between scalars must use BOOL modifier",
                    ));
                }
                Ok(Value::Scalar(apply(op, l, r, return_bool)?.0))
            }
            (Value::Vector(l), Value::Vector(r)) if set => {
                Ok(Value::Vector(set_op(op, l, r, matching)))
            }
            (Value::Vector(v), Value::Scalar(s)) if !set => {
                Ok(Value::Vector(vector_scalar(op, v, s, false, return_bool)?))
            }
            (Value::Scalar(s), Value::Vector(v)) if !set => {
                Ok(Value::Vector(vector_scalar(op, v, s, true, return_bool)?))
            }
            (Value::Vector(l), Value::Vector(r)) => Ok(Value::Vector(vector_vector(
                op,
                l,
                r,
                matching,
                return_bool,
            )?)),
            _ => Err(PromError::bad(format!(
                "operator {} is not defined for these operand types",
                b.op
            ))),
        }
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// `(value, keep)` of `l op r`: arithmetic keeps every result; a comparison keeps `l`
/// when true (or gives 1/0 with `bool`).
fn apply(op: TokenId, l: f64, r: f64, return_bool: bool) -> Result<(f64, bool), PromError> {
    let arith = |v: f64| Ok((v, true));
    let cmp = |c: bool| {
        if return_bool {
            Ok((if c { 1.0 } else { 0.0 }, true))
        } else {
            Ok((l, c))
        }
    };
    match op {
        token::T_ADD => arith(l + r),
        token::T_SUB => arith(l - r),
        token::T_MUL => arith(l * r),
        token::T_DIV => arith(l / r),
        token::T_MOD => arith(l % r),
        token::T_POW => arith(l.powf(r)),
        token::T_ATAN2 => arith(l.atan2(r)),
        token::T_EQLC => cmp(l == r),
        token::T_NEQ => cmp(l != r),
        token::T_GTR => cmp(l > r),
        token::T_LSS => cmp(l < r),
        token::T_GTE => cmp(l >= r),
        token::T_LTE => cmp(l <= r),
        _ => Err(PromError::unsupported(format!(
            "operator {} is not supported by meshscope",
            token::TokenType::new(op)
        ))),
    }
}

fn without_name(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.remove("__name__");
    l
}

fn map_values(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Vec<Sample> {
    v.into_iter()
        .map(|s| Sample {
            labels: without_name(&s.labels),
            value: f(s.value),
        })
        .collect()
}

/// Refuses a vector with two elements of one label set (Prometheus' rule, e.g. after
/// `rate()` drops the names of two metrics).
fn unique(v: Vec<Sample>) -> Result<Vec<Sample>, PromError> {
    let mut seen = BTreeSet::new();
    for s in &v {
        if !seen.insert(&s.labels) {
            return Err(PromError::unsupported(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(v)
}

fn list(l: &LabelList) -> BTreeSet<&str> {
    l.labels.iter().map(String::as_str).collect()
}

fn keep_only(labels: &Labels, names: &LabelList) -> Labels {
    let names = list(names);
    labels
        .iter()
        .filter(|(k, _)| names.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `labels` without `names` and without the metric name.
fn drop_names(labels: &Labels, names: &[String]) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__" && !names.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels an aggregation groups by.
fn group_labels(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        None => Labels::new(),
        Some(LabelModifier::Include(by)) => keep_only(labels, by),
        Some(LabelModifier::Exclude(without)) => drop_names(labels, &without.labels),
    }
}

/// The labels two vectors match on: `on(…)` only those, else all but `ignoring(…)` and
/// the metric name.
fn signature(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        Some(LabelModifier::Include(on)) => keep_only(labels, on),
        Some(LabelModifier::Exclude(ign)) => drop_names(labels, &ign.labels),
        None => drop_names(labels, &[]),
    }
}

fn set_op(op: TokenId, l: Vec<Sample>, r: Vec<Sample>, m: Option<&LabelModifier>) -> Vec<Sample> {
    let rsigs: BTreeSet<Labels> = r.iter().map(|s| signature(&s.labels, m)).collect();
    match op {
        token::T_LAND => l
            .into_iter()
            .filter(|s| rsigs.contains(&signature(&s.labels, m)))
            .collect(),
        token::T_LUNLESS => l
            .into_iter()
            .filter(|s| !rsigs.contains(&signature(&s.labels, m)))
            .collect(),
        _ => {
            let lsigs: BTreeSet<Labels> = l.iter().map(|s| signature(&s.labels, m)).collect();
            let mut out = l;
            out.extend(
                r.into_iter()
                    .filter(|s| !lsigs.contains(&signature(&s.labels, m))),
            );
            out
        }
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    scalar_left: bool,
    return_bool: bool,
) -> Result<Vec<Sample>, PromError> {
    let drop_name = !is_comparison(op) || return_bool;
    let mut out = Vec::with_capacity(v.len());
    for x in v {
        let (l, r) = if scalar_left {
            (s, x.value)
        } else {
            (x.value, s)
        };
        let (mut value, keep) = apply(op, l, r, return_bool)?;
        if !keep {
            continue;
        }
        if is_comparison(op) && !return_bool {
            // A filter keeps the vector's value, whichever side it is on.
            value = x.value;
        }
        out.push(Sample {
            labels: if drop_name {
                without_name(&x.labels)
            } else {
                x.labels
            },
            value,
        });
    }
    if drop_name { unique(out) } else { Ok(out) }
}

fn vector_vector(
    op: TokenId,
    l: Vec<Sample>,
    r: Vec<Sample>,
    m: Option<&LabelModifier>,
    return_bool: bool,
) -> Result<Vec<Sample>, PromError> {
    let mut right: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in &r {
        if right.insert(signature(&s.labels, m), s.value).is_some() {
            return Err(PromError::unsupported(format!(
                "found duplicate series for the match group {:?} on the right hand-side of the operation; many-to-many matching is not supported",
                signature(&s.labels, m)
            )));
        }
    }
    let drop_name = !is_comparison(op) || return_bool;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in l {
        let sig = signature(&s.labels, m);
        let Some(rv) = right.get(&sig) else {
            continue;
        };
        let (value, keep) = apply(op, s.value, *rv, return_bool)?;
        if !keep {
            continue;
        }
        if !seen.insert(sig.clone()) {
            return Err(PromError::unsupported(format!(
                "multiple matches for labels {sig:?}: many-to-one matching must be explicit (group_left/group_right), which meshscope does not support"
            )));
        }
        let mut labels = if drop_name {
            without_name(&s.labels)
        } else {
            s.labels
        };
        match m {
            Some(LabelModifier::Include(on)) => {
                let on = list(on);
                labels.retain(|k, _| on.contains(k.as_str()));
            }
            Some(LabelModifier::Exclude(ign)) => {
                let ign = list(ign);
                labels.retain(|k, _| !ign.contains(k.as_str()));
            }
            None => {}
        }
        out.push(Sample { labels, value });
    }
    unique(out)
}

/// `histogram_quantile` over classic `_bucket{le}` series, as Prometheus computes it:
/// per label set without `le`, linear interpolation inside the bucket holding the rank.
fn histogram_quantile(q: f64, v: Vec<Sample>) -> Vec<Sample> {
    let mut groups: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
            continue;
        };
        let mut labels = without_name(&s.labels);
        labels.remove("le");
        groups.entry(labels).or_default().push((le, s.value));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| Sample {
            labels,
            value: bucket_quantile(q, buckets),
        })
        .collect()
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

fn bucket_quantile(q: f64, mut b: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    if !b.last().is_some_and(|(le, _)| *le == f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets of one bound summed; counts made monotonic.
    b.dedup_by(|later, kept| {
        if later.0 == kept.0 {
            kept.1 += later.1;
            true
        } else {
            false
        }
    });
    let mut max = f64::NEG_INFINITY;
    for x in &mut b {
        max = max.max(x.1);
        x.1 = max;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let total = b[b.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let i = b[..b.len() - 1].partition_point(|(_, c)| *c < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            labels: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    fn constant(q: &str) -> Result<Value, PromError> {
        let e = promql_parser::parser::parse(q).expect("parses");
        let mut sels = Vec::new();
        selectors(&e, &mut sels)?;
        assert!(sels.is_empty());
        Evaluator::new(Box::new(e), 0, 0).eval_at(60_000)
    }

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

    #[test]
    fn bucket_quantile_interpolates_like_prometheus() {
        let b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        // Rank 20 of 40 lies halfway through (0.1, 0.5].
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        // Rank 5 in the first bucket: from 0.
        assert!((bucket_quantile(0.125, b.clone()) - 0.05).abs() < 1e-12);
        // In +Inf: the last finite bound.
        assert_eq!(bucket_quantile(0.99, b.clone()), 0.5);
        assert!(bucket_quantile(0.5, vec![(0.1, 1.0)]).is_nan());
        assert!(bucket_quantile(0.5, vec![(0.1, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, b), f64::INFINITY);
    }

    #[test]
    fn one_to_one_matching_with_on_and_ignoring() {
        let l = vec![
            sample(&[("__name__", "a"), ("svc", "x"), ("pod", "1")], 6.0),
            sample(&[("__name__", "a"), ("svc", "y"), ("pod", "2")], 8.0),
        ];
        let r = vec![
            sample(&[("__name__", "b"), ("svc", "x")], 2.0),
            sample(&[("__name__", "b"), ("svc", "y")], 4.0),
        ];
        let on = LabelModifier::Include(LabelList::new(vec!["svc"]));
        let out =
            vector_vector(token::T_DIV, l.clone(), r.clone(), Some(&on), false).expect("divides");
        assert_eq!(
            out,
            vec![sample(&[("svc", "x")], 3.0), sample(&[("svc", "y")], 2.0)]
        );
        // Without `on`, `pod` keeps them apart: nothing matches.
        assert!(
            vector_vector(token::T_DIV, l.clone(), r.clone(), None, false)
                .expect("ok")
                .is_empty()
        );
        let ign = LabelModifier::Exclude(LabelList::new(vec!["pod"]));
        assert_eq!(
            vector_vector(token::T_GTR, l.clone(), r.clone(), Some(&ign), false)
                .expect("ok")
                .len(),
            2
        );
        // Two left series for one right one: refused, not guessed…
        let one = vec![sample(&[("svc", "x")], 7.0)];
        let twins = vec![
            sample(&[("svc", "x"), ("pod", "1")], 6.0),
            sample(&[("svc", "x"), ("pod", "2")], 8.0),
        ];
        assert!(vector_vector(token::T_ADD, twins.clone(), one.clone(), Some(&on), false).is_err());
        // …unless a comparison filters all but one of them out first, as in Prometheus.
        let kept = vector_vector(token::T_GTR, twins, one, Some(&on), false).expect("ok");
        assert_eq!(kept, vec![sample(&[("svc", "x")], 8.0)]);
        let many = LabelModifier::Include(LabelList::new(vec![]));
        assert!(
            vector_vector(token::T_ADD, l.clone(), r[..1].to_vec(), Some(&many), false).is_err()
        );
        // Set operators.
        let and = set_op(token::T_LAND, l.clone(), r[..1].to_vec(), Some(&on));
        assert_eq!(and.len(), 1);
        let unless = set_op(token::T_LUNLESS, l.clone(), r[..1].to_vec(), Some(&on));
        assert_eq!(unless[0].labels["svc"], "y");
        assert_eq!(set_op(token::T_LOR, l, r, Some(&on)).len(), 2);
    }

    #[test]
    fn scalar_comparisons_filter_and_keep_the_vector_value() {
        let v = vec![sample(&[("__name__", "a"), ("k", "1")], 5.0)];
        let kept = vector_scalar(token::T_LSS, v.clone(), 9.0, true, false).expect("ok");
        // `9 < a` keeps nothing (5 < 9 is the other way round)…
        assert!(kept.is_empty());
        // …`3 < a` keeps a with its own value and name.
        let kept = vector_scalar(token::T_LSS, v.clone(), 3.0, true, false).expect("ok");
        assert_eq!(kept, v);
        let b = vector_scalar(token::T_GTR, v, 3.0, false, true).expect("ok");
        assert_eq!(b, vec![sample(&[("k", "1")], 1.0)]);
    }
}
