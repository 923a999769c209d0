//! The JSON API's handlers: each reads its parameters ([`crate::params`]), reads the
//! window through one [`aggregator::query::Reader`], and shapes typed JSON.
//!
//! - [`health`]: `/healthz`, `/metrics` and the fallback 404;
//! - [`admin`]: the admin flush, off unless enabled, coalesced;
//! - [`services`]: the service, instance and endpoint lists;
//! - [`topology`]: the service graph (and one edge's instance graph), shaped by
//!   [`graph`];
//! - [`nodegraph`]: the topology in Grafana Node Graph field names;
//! - [`timeseries`]: one entity's figures per step;
//! - [`edge`]: one edge's figures as each side reported them;
//! - [`status`]: the server's description and clock.

pub mod admin;
pub mod edge;
mod graph;
pub mod health;
mod nodegraph;
pub mod services;
pub mod status;
pub mod timeseries;
pub mod topology;

use aggregator::query::Window;
use serde::Serialize;

/// What a node is, for its shape in the console: a service reported by a proxy or SDK, or a
/// virtual node (see README "How calls are counted").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Service,
    /// The caller of calls whose caller could not be identified.
    Unknown,
    /// The root of traces: the user.
    User,
    /// Called as a database (a client span with `db.system`).
    Database,
    /// Anything else named by its callers only: an external host, a broker, a peer service.
    External,
}

impl NodeKind {
    fn of(name: &str, real: bool, database: bool) -> NodeKind {
        match name {
            _ if real => NodeKind::Service,
            "unknown" => NodeKind::Unknown,
            "user" => NodeKind::User,
            _ if database => NodeKind::Database,
            _ => NodeKind::External,
        }
    }
}

/// The namespace part of a real service's name (`reviews.default` → `default`).
fn namespace_of(name: &str, real: bool) -> Option<String> {
    if !real {
        return None;
    }
    name.split_once('.').map(|(_, ns)| ns.to_string())
}

/// The window's length in minutes, for rates per minute.
fn minutes(w: &Window) -> f64 {
    w.minutes() as f64
}
