//! `GET /api/v1/timeseries`: one entity's figure per step over the window (`metric=`), or
//! several figures as columns over every step (`metrics=a,b,…`, what a chart plots).

use std::collections::BTreeMap;

use aggregator::metrics::{Metrics, Summary};
use aggregator::schema::{Key, Table};
use axum::Json;
use axum::extract::{Extension, State};
use proto::Side;
use serde::Serialize;

use crate::error::{ApiError, bad};
use crate::limits::Budget;
use crate::params::{self, ApiQuery};
use crate::state::ApiState;

/// `metric=`: the steps with a value.
#[derive(Serialize)]
pub struct Points {
    points: Vec<(i64, f64)>,
}

/// `metrics=`: every step of the window, and each figure's value at each (`null`: none).
#[derive(Serialize)]
pub struct Columns {
    step: i64,
    times: Vec<i64>,
    series: Vec<Column>,
}

#[derive(Serialize)]
pub struct Column {
    metric: &'static str,
    values: Vec<Option<f64>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Answer {
    Points(Points),
    Columns(Columns),
}

/// The metric names asked for: `metric=one` or `metrics=a,b,…` (each known, at most 14).
fn asked_metrics(p: &crate::params::Params) -> Result<(Vec<&'static str>, bool), ApiError> {
    let (list, columns) = match (p.get("metric"), p.get("metrics")) {
        (Some(_), Some(_)) => return Err(bad("give metric or metrics, not both")),
        (Some(one), None) => (one.as_str(), false),
        (None, Some(many)) => (many.as_str(), true),
        (None, None) => return Err(bad("missing parameter metric (or metrics)")),
    };
    let mut out = Vec::new();
    for name in list.split(',') {
        let known = SERIES_METRICS.iter().find(|m| **m == name).ok_or_else(|| {
            bad(format!(
                "unknown metric {:?}; one of {}",
                params::clip(name),
                SERIES_METRICS.join(", ")
            ))
        })?;
        if out.contains(known) {
            return Err(bad(format!("metric {known} is asked twice")));
        }
        out.push(*known);
    }
    if !columns && out.len() != 1 {
        return Err(bad("metric takes one name; use metrics=a,b for several"));
    }
    Ok((out, columns))
}

/// Metric names `timeseries` accepts.
const SERIES_METRICS: [&str; 14] = [
    "calls",
    "errors",
    "cpm",
    "success_rate",
    "avg_ms",
    "p50_ms",
    "p75_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "apdex",
    "mtls_calls",
    "bytes_sent",
    "bytes_received",
];

fn pick(s: &Summary, metric: &str) -> Option<f64> {
    match metric {
        "calls" => Some(s.calls as f64),
        "errors" => Some(s.errors as f64),
        "cpm" => Some(s.cpm),
        "success_rate" => s.success_rate,
        "avg_ms" => s.avg_ms,
        "p50_ms" => s.p50_ms,
        "p75_ms" => s.p75_ms,
        "p90_ms" => s.p90_ms,
        "p95_ms" => s.p95_ms,
        "p99_ms" => s.p99_ms,
        "apdex" => s.apdex,
        "mtls_calls" => Some(s.mtls_calls as f64),
        "bytes_sent" => Some(s.bytes_sent as f64),
        "bytes_received" => Some(s.bytes_received as f64),
        _ => None,
    }
}

/// `GET /api/v1/timeseries?entity=…&metric=…&step=…` (or `metrics=a,b,…`).
pub async fn timeseries(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Answer>, ApiError> {
    let w = params::window(&p)?;
    let (metrics, columns) = asked_metrics(&p)?;
    // Which side's reports an edge's series counts (`None`: the side rule's).
    let side = match p.get("side").map(String::as_str) {
        None | Some("chosen") => None,
        Some("client") => Some(Side::Client),
        Some("server") => Some(Side::Server),
        Some(other) => {
            return Err(bad(format!(
                "side must be chosen, client or server, not {:?}",
                params::clip(other)
            )));
        }
    };
    if side.is_some() && p.get("entity").map(String::as_str) != Some("edge") {
        return Err(bad("side is for entity=edge"));
    }
    let step = params::int(&p, "step", 60, 60, 86_400)?;
    if step % 60 != 0 {
        return Err(bad("step must be a multiple of 60 seconds"));
    }
    if (w.end_minute - w.start_minute) / step > 11_000 {
        return Err(bad("too many points; raise step or shorten the window"));
    }
    let entity = p
        .get("entity")
        .ok_or_else(|| bad("missing parameter entity (service, instance, endpoint or edge)"))?;
    let (table, filters) = match entity.as_str() {
        "service" => (
            Table::Service,
            vec![(Key::Service, params::name(&p, "service")?)],
        ),
        "instance" => (
            Table::Instance,
            vec![
                (Key::Service, params::name(&p, "service")?),
                (Key::Instance, params::name(&p, "instance")?),
            ],
        ),
        "endpoint" => (
            Table::Endpoint,
            vec![
                (Key::Service, params::name(&p, "service")?),
                (Key::Endpoint, params::name(&p, "endpoint")?),
            ],
        ),
        "edge" => {
            let mut f = vec![
                (Key::Client, params::name(&p, "client")?),
                (Key::Server, params::name(&p, "server")?),
            ];
            if let Some(proto) = params::opt_name(&p, "protocol")? {
                f.push((Key::Protocol, proto));
            }
            (Table::ServiceRelation, f)
        }
        other => {
            return Err(bad(format!(
                "entity must be service, instance, endpoint or edge, got {:?}",
                params::clip(other)
            )));
        }
    };
    let series = state
        .reader(w)
        .metered(&budget)
        .series(table, &filters, side)
        .await?;
    let mut buckets: BTreeMap<i64, Metrics> = BTreeMap::new();
    let mut t = w.start_minute;
    while t < w.end_minute {
        buckets.insert(t, Metrics::default());
        t += step;
    }
    for (minute, m) in series {
        let bucket = w.start_minute + (minute - w.start_minute).div_euclid(step) * step;
        buckets.entry(bucket).or_default().merge(&m);
    }
    let step_minutes = step as f64 / 60.0;
    let summaries: Vec<(i64, Summary)> = buckets
        .into_iter()
        .map(|(t, m)| (t, m.summary(step_minutes)))
        .collect();
    if !columns {
        let metric = metrics[0];
        let points = summaries
            .iter()
            .filter_map(|(t, s)| pick(s, metric).map(|v| (*t, v)))
            .collect();
        return Ok(Json(Answer::Points(Points { points })));
    }
    let series = metrics
        .into_iter()
        .map(|metric| Column {
            metric,
            values: summaries.iter().map(|(_, s)| pick(s, metric)).collect(),
        })
        .collect();
    Ok(Json(Answer::Columns(Columns {
        step,
        times: summaries.into_iter().map(|(t, _)| t).collect(),
        series,
    })))
}
