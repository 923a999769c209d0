//! A Prometheus-compatible HTTP API under `/prometheus`, so Grafana's stock Prometheus
//! data source works against meshscope (`http://host:8080/prometheus`).
//!
//! The metadata endpoints ([`metadata`]) list the series of [`catalog`]; `query` and
//! `query_range` ([`query`]) evaluate PromQL with [`eval`] over series built from the
//! rollups by [`data`]. GET and form-encoded POST are both accepted, with `match[]` where
//! Prometheus takes it ([`params`]); queries are parsed within bounds ([`parse`]). Answers
//! are typed ([`response`]), failures are [`PromError`]s. Label values reach the store only
//! as bound filter values, never as query text.

pub mod catalog;
mod data;
mod error;
mod eval;
mod metadata;
mod params;
mod parse;
mod query;
mod response;

use axum::Router;
use axum::routing::get;

pub use error::PromError;
pub use metadata::PROMETHEUS_VERSION;
pub use parse::{PARSE_STACK_BYTES, parse_query_text, parse_selector};

use crate::state::ApiState;
use metadata::{
    buildinfo, label_values, labels, metadata, no_alerts, no_exemplars, no_rules, series,
};
use query::{instant_query, range_query};

/// The router, to be nested under `/prometheus`.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/status/buildinfo", get(buildinfo).post(buildinfo))
        .route("/api/v1/metadata", get(metadata).post(metadata))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/query", get(instant_query).post(instant_query))
        .route("/api/v1/query_range", get(range_query).post(range_query))
        // Grafana asks for these; meshscope keeps no exemplars, rules or alerts.
        .route(
            "/api/v1/query_exemplars",
            get(no_exemplars).post(no_exemplars),
        )
        .route("/api/v1/rules", get(no_rules))
        .route("/api/v1/alerts", get(no_alerts))
        .fallback(|| async { PromError::not_found("no such Prometheus API endpoint") })
}
