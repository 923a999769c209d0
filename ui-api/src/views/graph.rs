//! The shapes of a topology answer: nodes and edges with their figures (the JSON API's
//! field names; [`super::nodegraph`] renames them for Grafana).

use aggregator::metrics::Summary;
use aggregator::query::{Entity, Window};
use serde::Serialize;

use super::{NodeKind, minutes};

/// A node: a service, or one pod in an instance topology.
#[derive(Serialize)]
pub struct NodeView {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) real: bool,
    pub(super) kind: NodeKind,
    /// A real service's namespace (`reviews.default` → `default`).
    pub(super) namespace: Option<String>,
    #[serde(flatten)]
    pub(super) metrics: Summary,
}

/// An edge: calls from `source` to `target` over one protocol.
#[derive(Serialize)]
pub struct EdgeView {
    pub(super) id: String,
    pub(super) source: String,
    pub(super) target: String,
    pub(super) protocol: String,
    mtls: bool,
    detect_points: Vec<&'static str>,
    /// `mesh` or `trace`: the telemetry the figures come from.
    pub(super) telemetry: &'static str,
    #[serde(flatten)]
    pub(super) metrics: Summary,
}

/// The answer of `GET /api/v1/topology`.
#[derive(Serialize)]
pub struct Topology {
    pub(super) nodes: Vec<NodeView>,
    pub(super) edges: Vec<EdgeView>,
}

fn detect_points(e: &Entity) -> Vec<&'static str> {
    let mut v = Vec::new();
    if e.client_seen {
        v.push("client");
    }
    if e.server_seen {
        v.push("server");
    }
    v
}

/// One edge of the answer, with its ends' ids and protocol.
pub(super) fn edge_view(
    e: &Entity,
    source: String,
    target: String,
    protocol: String,
    w: &Window,
) -> EdgeView {
    EdgeView {
        id: format!("{source}|{target}|{protocol}"),
        source,
        target,
        protocol,
        mtls: e.metrics.mtls_calls > 0,
        detect_points: detect_points(e),
        telemetry: e.source.as_str(),
        metrics: e.metrics.summary(minutes(w)),
    }
}
