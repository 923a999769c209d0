//! The HTTP API: health, self-metrics, JSON views of the rollups (services, instances,
//! endpoints, topology, time series) and a Prometheus-compatible API under `/prometheus`,
//! and the web console (`/`, [`console`]) that reads them.
//!
//! In: an [`ApiState`] holding the store, the self-metrics registry and, optionally, the
//! aggregator handle. Out: an [`axum::Router`] ([`router`]) that tests call in memory and
//! the binary serves on its HTTP listener. Every request reads its window through one
//! [`Reader`](aggregator::query::Reader) ([`ApiState::reader`]); every failure is an [`ApiError`] (or, under
//! `/prometheus`, a [`prom::PromError`]) that maps to HTTP once.

mod admin;
mod bounded;
mod config;
pub mod console;
mod error;
mod info;
mod limits;
mod params;
pub mod prom;
mod state;
mod views;

use axum::Router;
use axum::routing::{get, post};

pub use crate::admin::Admin;
pub use crate::config::ApiConfig;
pub use crate::error::ApiError;
pub use crate::info::{ListenerInfo, ServerInfo};
pub use crate::limits::Limits;
pub use crate::state::{ApiState, FlushHook};
use crate::views::{edge, health, services, status, timeseries, topology};

/// The API router. Every read route runs within [`Limits`] (a slot, a deadline, a
/// budget); health, self-metrics, status, admin and the console do not.
pub fn router(state: ApiState) -> Router {
    let reads = Router::new()
        .route("/api/v1/services", get(services::services))
        .route(
            "/api/v1/services/{service}/instances",
            get(services::instances),
        )
        .route(
            "/api/v1/services/{service}/endpoints",
            get(services::endpoints),
        )
        .route("/api/v1/topology", get(topology::topology))
        .route(
            "/api/v1/topology/instances",
            get(topology::topology_instances),
        )
        .route("/api/v1/timeseries", get(timeseries::timeseries))
        .route("/api/v1/edge", get(edge::edge))
        .nest("/prometheus", prom::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bounded::bounded,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/", get(console::page))
        .route("/ui/{version}/{*path}", get(console::asset))
        .route("/api/v1/status", get(status::status))
        .route("/api/v1/admin/flush", post(views::admin::flush))
        .merge(reads)
        .fallback(health::not_found)
        .with_state(state)
}
