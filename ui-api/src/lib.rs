//! The HTTP API: health, self-metrics, and JSON views of the rollups (services, instances,
//! endpoints, topology, time series).
//!
//! In: an [`ApiState`] holding the store, the self-metrics registry and, optionally, the
//! aggregator handle. Out: an [`axum::Router`] ([`router`]) that tests call in memory and
//! the binary serves on its HTTP listener. Field names follow DESIGN § 6.

mod error;
mod params;
pub mod prom;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aggregator::Handle;
use aggregator::query::Dedup;
use aggregator::store::Store;
use axum::Router;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

pub use crate::error::ApiError;

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
}

/// Work run before an admin flush.
pub type FlushHook =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync>;

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(views::healthz))
        .route("/metrics", get(views::metrics))
        .route("/api/v1/services", get(views::services))
        .route(
            "/api/v1/services/{service}/instances",
            get(views::instances),
        )
        .route(
            "/api/v1/services/{service}/endpoints",
            get(views::endpoints),
        )
        .route("/api/v1/topology", get(views::topology))
        .route("/api/v1/topology/instances", get(views::topology_instances))
        .route("/api/v1/timeseries", get(views::timeseries))
        .route("/api/v1/admin/flush", post(views::flush))
        .nest("/prometheus", prom::router())
        .fallback(views::not_found)
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
