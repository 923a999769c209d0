//! `GET /api/v1/topology` (the service graph, optionally focused on one service within a
//! depth) and `GET /api/v1/topology/instances` (one edge's pods).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use aggregator::metrics::Metrics;
use aggregator::query::Entity;
use aggregator::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Key, Table};
use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};

use super::graph::{NodeView, Topology, edge_view};
use super::nodegraph::NodeGraph;
use super::services::nodes;
use super::{NodeKind, minutes, namespace_of};
use crate::error::{ApiError, bad};
use crate::limits::Budget;
use crate::params::{self, ApiQuery, Params};
use crate::state::ApiState;

/// Edges reached within `depth` hops of `focus` (either direction).
fn focus_edges(edges: Vec<Entity>, focus: &str, depth: i64) -> Vec<Entity> {
    let mut adjacent: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &edges {
        let (client, server) = (e.keys.get(Key::Client), e.keys.get(Key::Server));
        adjacent.entry(client).or_default().push(server);
        adjacent.entry(server).or_default().push(client);
    }
    let mut dist: HashMap<String, i64> = HashMap::new();
    let mut queue = VecDeque::from([(focus.to_string(), 0i64)]);
    dist.insert(focus.to_string(), 0);
    while let Some((n, d)) = queue.pop_front() {
        if d >= depth {
            continue;
        }
        for m in adjacent.get(n.as_str()).into_iter().flatten() {
            if !dist.contains_key(*m) {
                dist.insert(m.to_string(), d + 1);
                queue.push_back((m.to_string(), d + 1));
            }
        }
    }
    edges
        .into_iter()
        .filter(|e| {
            let a = dist.get(e.keys.get(Key::Client)).copied();
            let b = dist.get(e.keys.get(Key::Server)).copied();
            matches!((a, b), (Some(a), Some(b)) if a.min(b) < depth)
        })
        .collect()
}

/// `GET /api/v1/topology`: JSON by default, Grafana Node Graph fields with
/// `format=nodegraph`.
pub async fn topology(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Response, ApiError> {
    let nodegraph = match p.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("nodegraph") => true,
        Some(other) => {
            return Err(bad(format!(
                "format must be json or nodegraph, not {:?}",
                params::clip(other)
            )));
        }
    };
    let Json(topology) = service_topology(&state, &p, &budget).await?;
    Ok(if nodegraph {
        Json(NodeGraph::from(topology)).into_response()
    } else {
        Json(topology).into_response()
    })
}

async fn service_topology(
    state: &ApiState,
    p: &Params,
    budget: &Budget,
) -> Result<Json<Topology>, ApiError> {
    let w = params::window(p)?;
    let focus = params::opt_name(p, "service")?;
    let depth = params::int(p, "depth", 1, 1, 10)?;
    if p.contains_key("depth") && focus.is_none() {
        return Err(bad("depth needs service"));
    }
    let reader = state.reader(w).metered(budget);
    let mut edges = reader.entities(Table::ServiceRelation, &[]).await?;
    let all_nodes = nodes(&reader, &edges).await?;
    let mut keep: BTreeSet<String> = all_nodes.keys().cloned().collect();
    if let Some(focus) = &focus {
        if !all_nodes.contains_key(focus) {
            return Err(ApiError::NotFound(format!(
                "no service {:?} in this window",
                params::clip(focus)
            )));
        }
        edges = focus_edges(edges, focus, depth);
        keep = edges
            .iter()
            .flat_map(|e| [Key::Client, Key::Server].map(|k| e.keys.get(k).to_string()))
            .chain([focus.clone()])
            .collect();
    }
    let nodes = all_nodes
        .into_iter()
        .filter(|(name, _)| keep.contains(name))
        .map(|(name, n)| NodeView {
            id: name.clone(),
            kind: n.kind(&name),
            namespace: namespace_of(&name, n.real),
            real: n.real,
            metrics: n.metrics.summary(minutes(&w)),
            name,
        })
        .collect();
    let edges = edges
        .iter()
        .map(|e| {
            let [client, server, protocol] =
                [Key::Client, Key::Server, Key::Protocol].map(|k| e.keys.get(k).to_string());
            edge_view(e, client, server, protocol, &w)
        })
        .collect();
    Ok(Json(Topology { nodes, edges }))
}

/// A pod is a service's instance when its proxy reported it, else unknown.
fn instance_kind(real: bool) -> NodeKind {
    if real {
        NodeKind::Service
    } else {
        NodeKind::Unknown
    }
}

fn instance_label(service: &str, instance: &str) -> String {
    if instance.is_empty() {
        format!("{service}/unknown")
    } else {
        format!("{service}/{instance}")
    }
}

/// `GET /api/v1/topology/instances?client=S1&server=S2`: the pods of one edge.
pub async fn topology_instances(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Topology>, ApiError> {
    let w = params::window(&p)?;
    let client = params::name(&p, "client")?;
    let server = params::name(&p, "server")?;
    let reader = state.reader(w).metered(&budget);
    let edges = reader
        .entities(
            Table::InstanceRelation,
            &[(Key::Client, client.clone()), (Key::Server, server.clone())],
        )
        .await?;
    let server_metrics: HashMap<String, Metrics> = reader
        .entities(Table::Instance, &[(Key::Service, server.clone())])
        .await?
        .into_iter()
        .map(|e| (e.keys.get(Key::Instance).to_string(), e.metrics))
        .collect();
    let mut nodes: BTreeMap<String, NodeView> = BTreeMap::new();
    let mut edge_views = Vec::new();
    for e in &edges {
        let (ci, si) = (
            e.keys.get(Key::ClientInstance),
            e.keys.get(Key::ServerInstance),
        );
        let source = instance_label(&client, ci);
        let target = instance_label(&server, si);
        nodes.entry(source.clone()).or_insert_with(|| NodeView {
            id: source.clone(),
            name: if ci.is_empty() {
                "unknown".into()
            } else {
                ci.to_string()
            },
            real: e.flags & FLAG_CLIENT_REAL != 0 && !ci.is_empty(),
            kind: instance_kind(e.flags & FLAG_CLIENT_REAL != 0 && !ci.is_empty()),
            namespace: None,
            metrics: Metrics::default().summary(minutes(&w)),
        });
        nodes.entry(target.clone()).or_insert_with(|| NodeView {
            id: target.clone(),
            name: if si.is_empty() {
                "unknown".into()
            } else {
                si.to_string()
            },
            real: e.flags & FLAG_SERVER_REAL != 0 && !si.is_empty(),
            kind: instance_kind(e.flags & FLAG_SERVER_REAL != 0 && !si.is_empty()),
            namespace: None,
            metrics: server_metrics
                .get(si)
                .cloned()
                .unwrap_or_default()
                .summary(minutes(&w)),
        });
        let protocol = e.keys.get(Key::Protocol).to_string();
        edge_views.push(edge_view(e, source, target, protocol, &w));
    }
    Ok(Json(Topology {
        nodes: nodes.into_values().collect(),
        edges: edge_views,
    }))
}
