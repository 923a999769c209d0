//! The JSON API's handlers: each reads its parameters ([`crate::params`]), reads the
//! window through one [`aggregator::query::Reader`], and shapes typed JSON.
//!
//! - [`health`]: `/healthz`, `/metrics` and the fallback 404;
//! - [`admin`]: the admin flush, off unless enabled, coalesced;
//! - [`services`]: the service, instance and endpoint lists;
//! - [`topology`]: the service graph (and one edge's instance graph), shaped by
//!   [`graph`];
//! - [`nodegraph`]: the topology in Grafana Node Graph field names;
//! - [`timeseries`]: one entity's figures per step.

pub mod admin;
mod graph;
pub mod health;
mod nodegraph;
pub mod services;
pub mod timeseries;
pub mod topology;

use aggregator::query::Window;

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
