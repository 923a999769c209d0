//! `query` and `query_range`: parse, load every selector once through one reader
//! ([`super::eval::Evaluator::load`]), evaluate at each step off the async workers, and
//! answer in Prometheus' result shapes.

use std::sync::Arc;

use foldhash::HashMap;

use axum::Extension;
use axum::extract::State;
use promql_parser::parser::Expr;

use super::data::Labels;
use super::error::PromError;
use super::eval::{self, Evaluator};
use super::params::{PromParams, now, step_param, time_param};
use super::parse::parse_query;
use super::response::{MatrixSeries, Point, PromResult, QueryData, VectorSample, success};
use crate::limits::Budget;
use crate::state::ApiState;

/// Most points a range query returns per series (Prometheus' own limit).
const MAX_POINTS: i64 = 11_000;

/// Most points one range query returns in all (Prometheus bounds loaded samples at 50
/// million; a JSON answer this size is already about 250 MB).
const MAX_RESULT_POINTS: usize = 5_000_000;

/// Runs CPU-bound evaluation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PromError> + Send + 'static,
) -> Result<T, PromError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PromError::internal(format!("evaluating: {e}")))?
}

fn to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// `query`: an instant query at `time` (default: now).
pub async fn instant_query(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    p: PromParams,
) -> PromResult {
    let expr = parse_query(&p).await?;
    let t = to_ms(time_param(&p, "time")?.unwrap_or_else(now));
    let ev = Evaluator::load(&state, expr, (t, t, 0), budget).await?;
    let value = blocking(move || ev.eval_at(t)).await?;
    success(match value {
        eval::Value::Scalar(v) => QueryData::Scalar(Point::at(t, v)),
        eval::Value::Vector(v) => QueryData::Vector(
            v.into_iter()
                .map(|s| VectorSample {
                    metric: Arc::unwrap_or_clone(s.labels),
                    value: Point::at(t, s.value),
                })
                .collect(),
        ),
        eval::Value::Matrix(m) => QueryData::Matrix(
            m.into_iter()
                .map(|(labels, points)| MatrixSeries {
                    metric: Arc::unwrap_or_clone(labels),
                    values: points.into_iter().map(|(ts, v)| Point::at(ts, v)).collect(),
                })
                .collect(),
        ),
    })
}

/// `query_range`: the query at every `step` from `start` to `end`.
pub async fn range_query(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    p: PromParams,
) -> PromResult {
    let expr = parse_query(&p).await?;
    let start = time_param(&p, "start")?.ok_or_else(|| PromError::bad("missing start"))?;
    let end = time_param(&p, "end")?.ok_or_else(|| PromError::bad("missing end"))?;
    if end < start {
        return Err(PromError::bad(
            "end timestamp must not be before start time",
        ));
    }
    let (start, end, step) = (to_ms(start), to_ms(end), to_ms(step_param(&p)?));
    if step <= 0 {
        return Err(PromError::bad("query resolution step under a millisecond"));
    }
    // Times are checked to lie in years 1970..=9999, so this cannot wrap; the steps are
    // counted, never reached by adding `step` (which may be near i64::MAX).
    let steps = (end - start) / step;
    if steps >= MAX_POINTS {
        return Err(PromError::bad(format!(
            "exceeded maximum resolution of {MAX_POINTS} points per timeseries. Try decreasing the query resolution (?step=XX)"
        )));
    }
    if matches!(expr, Expr::MatrixSelector(_)) {
        return Err(PromError::bad(
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
        ));
    }
    let loading = std::time::Instant::now();
    let ev = Evaluator::load(&state, expr, (start, end, step), budget).await?;
    let loaded = loading.elapsed();
    let result = blocking(move || {
        // Each result series' points, found by its labels (hashed: a step's samples come
        // in any order), and sorted by labels once at the end. A sample whose labels are
        // the very `Arc` a series was first seen with (most are: a selector's series and
        // an aggregation's groups keep theirs across steps) is found by address: that
        // `Arc` is kept in `series`, so its address names it alone.
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::default();
        let mut by_address: HashMap<usize, usize> = HashMap::default();
        let mut series: Vec<(Arc<Labels>, Vec<Point>)> = Vec::new();
        let mut points = 0usize;
        for i in 0..=steps {
            // i·step ≤ end − start: no overflow.
            let t = start + i * step;
            let samples = match ev.eval_at(t)? {
                eval::Value::Scalar(v) => vec![eval::Sample {
                    labels: Arc::new(Labels::new()),
                    value: v,
                }],
                eval::Value::Vector(v) => v,
                eval::Value::Matrix(_) => {
                    return Err(PromError::bad(
                        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
                    ));
                }
            };
            points += samples.len();
            if points > MAX_RESULT_POINTS {
                return Err(PromError::unsupported(format!(
                    "the result would hold more than {MAX_RESULT_POINTS} points; narrow the query, the time range or use a larger step"
                )));
            }
            for s in samples {
                let point = Point::at(t, s.value);
                let address = Arc::as_ptr(&s.labels) as usize;
                if let Some(i) = by_address.get(&address) {
                    series[*i].1.push(point);
                    continue;
                }
                match index.get(&s.labels) {
                    Some(i) => series[*i].1.push(point),
                    None => {
                        index.insert(s.labels.clone(), series.len());
                        by_address.insert(address, series.len());
                        series.push((s.labels, vec![point]));
                    }
                }
            }
        }
        let evaluated = loading.elapsed().saturating_sub(loaded);
        tracing::debug!(
            load_ms = loaded.as_millis(),
            eval_ms = evaluated.as_millis(),
            steps = steps + 1,
            points,
            "range query"
        );
        drop((index, by_address));
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(series
            .into_iter()
            .map(|(metric, values)| MatrixSeries {
                metric: Arc::unwrap_or_clone(metric),
                values,
            })
            .collect())
    })
    .await?;
    success(QueryData::Matrix(result))
}
