//! `GET /api/v1/timeseries`: one entity's figure per step over the window.

use std::collections::BTreeMap;

use aggregator::metrics::{Metrics, Summary};
use aggregator::schema::{Key, Table};
use axum::Json;
use axum::extract::{Extension, State};
use serde::Serialize;

use crate::error::{ApiError, bad};
use crate::limits::Budget;
use crate::params::{self, ApiQuery};
use crate::state::ApiState;

#[derive(Serialize)]
pub struct Points {
    points: Vec<(i64, f64)>,
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

/// `GET /api/v1/timeseries?entity=…&metric=…&step=…`.
pub async fn timeseries(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Points>, ApiError> {
    let w = params::window(&p)?;
    let metric = p
        .get("metric")
        .ok_or_else(|| bad("missing parameter metric"))?;
    if !SERIES_METRICS.contains(&metric.as_str()) {
        return Err(bad(format!(
            "unknown metric {:?}; one of {}",
            params::clip(metric),
            SERIES_METRICS.join(", ")
        )));
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
        .series(table, &filters)
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
    let points = buckets
        .into_iter()
        .filter_map(|(t, m)| pick(&m.summary(step_minutes), metric).map(|v| (t, v)))
        .collect();
    Ok(Json(Points { points }))
}
