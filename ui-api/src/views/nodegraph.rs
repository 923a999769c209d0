//! The topology in the field names of Grafana's Node Graph panel (`?format=nodegraph`):
//! `mainstat`, `secondarystat`, `arc__*` and `detail__*`.

use aggregator::metrics::Summary;
use serde::Serialize;

use super::graph::Topology;
use super::namespace_of;

/// A Grafana Node Graph node (field names as the panel expects them).
#[derive(Serialize)]
pub struct GraphNode {
    id: String,
    title: String,
    /// `virtual` for virtual nodes, else the namespace part of the name.
    subtitle: String,
    /// Calls per minute into the node.
    mainstat: f64,
    /// p99 latency of calls into the node, ms.
    secondarystat: Option<f64>,
    #[serde(rename = "arc__success")]
    arc_success: f64,
    #[serde(rename = "arc__errors")]
    arc_errors: f64,
    #[serde(rename = "detail__calls")]
    detail_calls: u64,
    #[serde(rename = "detail__errors")]
    detail_errors: u64,
}

/// A Grafana Node Graph edge.
#[derive(Serialize)]
pub struct GraphEdge {
    id: String,
    source: String,
    target: String,
    /// Calls per minute.
    mainstat: f64,
    /// p99 latency, ms.
    secondarystat: Option<f64>,
    #[serde(rename = "detail__protocol")]
    detail_protocol: String,
    #[serde(rename = "detail__telemetry")]
    detail_telemetry: &'static str,
    #[serde(rename = "detail__calls")]
    detail_calls: u64,
    #[serde(rename = "detail__errors")]
    detail_errors: u64,
}

/// The topology in Grafana Node Graph field names (`?format=nodegraph`).
#[derive(Serialize)]
pub struct NodeGraph {
    nodes: Vec<GraphNode>,
    edges: Vec<GraphEdge>,
}

impl From<Topology> for NodeGraph {
    fn from(t: Topology) -> NodeGraph {
        let arcs = |m: &Summary| match m.success_rate {
            Some(ok) => (ok, 1.0 - ok),
            None => (0.0, 0.0),
        };
        NodeGraph {
            nodes: t
                .nodes
                .into_iter()
                .map(|n| {
                    let (arc_success, arc_errors) = arcs(&n.metrics);
                    GraphNode {
                        subtitle: if n.real {
                            namespace_of(&n.name, true).unwrap_or_default()
                        } else {
                            "virtual".into()
                        },
                        title: n.name,
                        id: n.id,
                        mainstat: n.metrics.cpm,
                        secondarystat: n.metrics.p99_ms,
                        arc_success,
                        arc_errors,
                        detail_calls: n.metrics.calls,
                        detail_errors: n.metrics.errors,
                    }
                })
                .collect(),
            edges: t
                .edges
                .into_iter()
                .map(|e| GraphEdge {
                    id: e.id,
                    source: e.source,
                    target: e.target,
                    mainstat: e.metrics.cpm,
                    secondarystat: e.metrics.p99_ms,
                    detail_protocol: e.protocol,
                    detail_telemetry: e.telemetry,
                    detail_calls: e.metrics.calls,
                    detail_errors: e.metrics.errors,
                })
                .collect(),
        }
    }
}
