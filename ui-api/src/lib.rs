//! The HTTP API: health, self-metrics, JSON views of the rollups (services, instances,
//! endpoints, topology, time series) and a Prometheus-compatible API under `/prometheus`.
//!
//! In: an [`ApiState`] holding the store, the self-metrics registry and, optionally, the
//! aggregator handle. Out: an [`axum::Router`] ([`router`]) that tests call in memory and
//! the binary serves on its HTTP listener. Every request reads its window through one
//! [`Reader`] ([`ApiState::reader`]); every failure is an [`ApiError`] (or, under
//! `/prometheus`, a [`prom::PromError`]) that maps to HTTP once.

mod bounded;
mod config;
mod error;
mod limits;
mod params;
pub mod prom;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aggregator::Handle;
use aggregator::query::{Dedup, Reader, Window};
use aggregator::store::Store;
use axum::Router;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

pub use crate::config::ApiConfig;
pub use crate::error::ApiError;
pub use crate::limits::Limits;
pub use crate::views::admin::Admin;
use crate::views::{admin, health, services, timeseries, topology};

/// Everything the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// When set, `POST /api/v1/admin/flush` makes pending data queryable at once.
    pub aggregator: Option<Handle>,
    /// Runs before an admin flush: receivers hand over what they buffer (spans still
    /// waiting for their pair are recorded as unpaired).
    pub before_flush: Option<FlushHook>,
    /// Which source counts when the mesh and traces both report a service.
    pub dedup: Arc<Dedup>,
    /// The bounds every read runs within.
    pub limits: Arc<Limits>,
    /// The admin endpoints' switch and flush coalescing.
    pub admin: Arc<Admin>,
}

impl ApiState {
    /// A reader of `window` for one request.
    pub fn reader(&self, window: Window) -> Reader<'_> {
        Reader::new(self.store.as_ref(), &self.dedup, window)
    }
}

/// Work run before an admin flush.
pub type FlushHook =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync>;

/// The API router. Every read route runs within [`Limits`] (a slot, a deadline, a
/// budget); health, self-metrics and admin do not.
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
        .nest("/prometheus", prom::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bounded::bounded,
        ));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/api/v1/admin/flush", post(admin::flush))
        .merge(reads)
        .fallback(health::not_found)
        .with_state(state)
}
