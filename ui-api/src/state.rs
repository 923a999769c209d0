//! What every handler reads: the store, the self-metrics registry, the aggregator handle,
//! the dedup rules, the limits, the admin switch and the server's own description.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aggregator::Handle;
use aggregator::query::{Dedup, Reader, Window};
use aggregator::store::Store;
use prometheus_client::registry::Registry;

use crate::admin::Admin;
use crate::info::ServerInfo;
use crate::limits::Limits;

/// Everything the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// When set, `POST /api/v1/admin/flush` makes pending data queryable at once.
    pub aggregator: Option<Handle>,
    /// Runs before an admin flush asked with `waiting_spans=record`: spans still waiting
    /// for their pair are recorded as unpaired.
    pub before_flush: Option<FlushHook>,
    /// Which source counts when the mesh and traces both report a service.
    pub dedup: Arc<Dedup>,
    /// The bounds every read runs within.
    pub limits: Arc<Limits>,
    /// The admin endpoints' switch and flush coalescing.
    pub admin: Arc<Admin>,
    /// What `GET /api/v1/status` says of the server.
    pub info: Arc<ServerInfo>,
}

impl ApiState {
    /// A reader of `window` for one request.
    pub fn reader(&self, window: Window) -> Reader<'_> {
        Reader::new(self.store.as_ref(), &self.dedup, window)
    }
}

/// Work run before an admin flush that records waiting spans.
pub type FlushHook =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> + Send + Sync>;
