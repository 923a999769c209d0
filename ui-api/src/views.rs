//! Handlers: each reads parameters, asks [`aggregator::query`], and shapes JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use aggregator::metrics::{Metrics, Summary};
use aggregator::query::{self, Entity, Window};
use aggregator::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Table};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ApiState;
use crate::error::{ApiError, bad};
use crate::params::{self, ApiPath, ApiQuery, Params};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

#[derive(Serialize)]
pub struct Flushed {
    flushed: bool,
}

pub async fn flush(State(state): State<ApiState>) -> ApiResult<Flushed> {
    let handle = state.aggregator.ok_or(ApiError::NoAggregator)?;
    if let Some(hook) = &state.before_flush {
        hook().await;
    }
    handle.flush().await?;
    Ok(Json(Flushed { flushed: true }))
}

fn namespace_of(name: &str, real: bool) -> Option<String> {
    if !real {
        return None;
    }
    name.split_once('.').map(|(_, ns)| ns.to_string())
}

fn minutes(w: &Window) -> f64 {
    w.minutes() as f64
}

#[derive(Serialize)]
pub struct ServiceView {
    name: String,
    namespace: Option<String>,
    real: bool,
    #[serde(flatten)]
    metrics: Summary,
}

#[derive(Serialize)]
pub struct Services {
    services: Vec<ServiceView>,
}

/// Every node known in the window: services with inbound metrics, plus callers seen only
/// in `edges` (the window's service relations), with zero metrics.
async fn nodes(
    state: &ApiState,
    w: Window,
    edges: &[Entity],
) -> Result<BTreeMap<String, (bool, Metrics)>, ApiError> {
    let store = state.store.as_ref();
    let mut nodes: BTreeMap<String, (bool, Metrics)> = BTreeMap::new();
    for e in query::entities(store, &state.dedup, Table::Service, w, vec![]).await? {
        nodes.insert(
            e.keys[0].to_string(),
            (e.flags & FLAG_SERVER_REAL != 0, e.metrics),
        );
    }
    for e in edges {
        let client = nodes.entry(e.keys[0].to_string()).or_default();
        client.0 |= e.flags & FLAG_CLIENT_REAL != 0;
        let server = nodes.entry(e.keys[1].to_string()).or_default();
        server.0 |= e.flags & FLAG_SERVER_REAL != 0;
    }
    Ok(nodes)
}

pub async fn services(State(state): State<ApiState>, ApiQuery(p): ApiQuery) -> ApiResult<Services> {
    let w = params::window(&p)?;
    let edges = query::entities(
        state.store.as_ref(),
        &state.dedup,
        Table::ServiceRelation,
        w,
        vec![],
    )
    .await?;
    let services = nodes(&state, w, &edges)
        .await?
        .into_iter()
        .map(|(name, (real, m))| ServiceView {
            namespace: namespace_of(&name, real),
            name,
            real,
            metrics: m.summary(minutes(&w)),
        })
        .collect();
    Ok(Json(Services { services }))
}

#[derive(Serialize)]
pub struct Named {
    name: String,
    #[serde(flatten)]
    metrics: Summary,
}

#[derive(Serialize)]
pub struct Instances {
    instances: Vec<Named>,
}

#[derive(Serialize)]
pub struct Endpoints {
    endpoints: Vec<Named>,
}

async fn children(
    state: &ApiState,
    table: Table,
    service: &str,
    p: &Params,
) -> Result<Vec<Named>, ApiError> {
    let service = params::check_name("service", service)?;
    let w = params::window(p)?;
    let list = query::entities(
        state.store.as_ref(),
        &state.dedup,
        table,
        w,
        vec![(0, service)],
    )
    .await?;
    Ok(list
        .into_iter()
        .map(|e| Named {
            name: e.keys[1].to_string(),
            metrics: e.metrics.summary(minutes(&w)),
        })
        .collect())
}

pub async fn instances(
    State(state): State<ApiState>,
    ApiPath(service): ApiPath,
    ApiQuery(p): ApiQuery,
) -> ApiResult<Instances> {
    let instances = children(&state, Table::Instance, &service, &p).await?;
    Ok(Json(Instances { instances }))
}

pub async fn endpoints(
    State(state): State<ApiState>,
    ApiPath(service): ApiPath,
    ApiQuery(p): ApiQuery,
) -> ApiResult<Endpoints> {
    let endpoints = children(&state, Table::Endpoint, &service, &p).await?;
    Ok(Json(Endpoints { endpoints }))
}

#[derive(Serialize)]
pub struct NodeView {
    id: String,
    name: String,
    real: bool,
    #[serde(flatten)]
    metrics: Summary,
}

#[derive(Serialize)]
pub struct EdgeView {
    id: String,
    source: String,
    target: String,
    protocol: String,
    mtls: bool,
    detect_points: Vec<&'static str>,
    /// `mesh` or `trace`: the telemetry the figures come from.
    telemetry: &'static str,
    #[serde(flatten)]
    metrics: Summary,
}

#[derive(Serialize)]
pub struct Topology {
    nodes: Vec<NodeView>,
    edges: Vec<EdgeView>,
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

fn edge_view(e: &Entity, source: String, target: String, protocol: String, w: &Window) -> EdgeView {
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

/// Edges reached within `depth` hops of `focus` (either direction).
fn focus_edges(edges: Vec<Entity>, focus: &str, depth: i64) -> Vec<Entity> {
    let mut adjacent: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in &edges {
        adjacent.entry(&*e.keys[0]).or_default().push(&*e.keys[1]);
        adjacent.entry(&*e.keys[1]).or_default().push(&*e.keys[0]);
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
            let a = dist.get(&*e.keys[0]).copied();
            let b = dist.get(&*e.keys[1]).copied();
            matches!((a, b), (Some(a), Some(b)) if a.min(b) < depth)
        })
        .collect()
}

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

/// `GET /api/v1/topology`: JSON by default, Grafana Node Graph fields with
/// `format=nodegraph`.
pub async fn topology(
    State(state): State<ApiState>,
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
    let Json(topology) = service_topology(&state, &p).await?;
    Ok(if nodegraph {
        Json(NodeGraph::from(topology)).into_response()
    } else {
        Json(topology).into_response()
    })
}

async fn service_topology(state: &ApiState, p: &Params) -> ApiResult<Topology> {
    let w = params::window(p)?;
    let focus = params::opt_name(p, "service")?;
    let depth = params::int(p, "depth", 1, 1, 10)?;
    if p.contains_key("depth") && focus.is_none() {
        return Err(bad("depth needs service"));
    }
    let mut edges = query::entities(
        state.store.as_ref(),
        &state.dedup,
        Table::ServiceRelation,
        w,
        vec![],
    )
    .await?;
    let all_nodes = nodes(state, w, &edges).await?;
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
            .flat_map(|e| [e.keys[0].to_string(), e.keys[1].to_string()])
            .chain([focus.clone()])
            .collect();
    }
    let nodes = all_nodes
        .into_iter()
        .filter(|(name, _)| keep.contains(name))
        .map(|(name, (real, m))| NodeView {
            id: name.clone(),
            name,
            real,
            metrics: m.summary(minutes(&w)),
        })
        .collect();
    let edges = edges
        .iter()
        .map(|e| {
            edge_view(
                e,
                e.keys[0].to_string(),
                e.keys[1].to_string(),
                e.keys[2].to_string(),
                &w,
            )
        })
        .collect();
    Ok(Json(Topology { nodes, edges }))
}

fn instance_label(service: &str, instance: &str) -> String {
    if instance.is_empty() {
        format!("{service}/unknown")
    } else {
        format!("{service}/{instance}")
    }
}

pub async fn topology_instances(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery,
) -> ApiResult<Topology> {
    let w = params::window(&p)?;
    let client = params::name(&p, "client")?;
    let server = params::name(&p, "server")?;
    let store = state.store.as_ref();
    let edges = query::entities(
        store,
        &state.dedup,
        Table::InstanceRelation,
        w,
        vec![(0, client.clone()), (2, server.clone())],
    )
    .await?;
    let server_metrics: HashMap<String, Metrics> = query::entities(
        store,
        &state.dedup,
        Table::Instance,
        w,
        vec![(0, server.clone())],
    )
    .await?
    .into_iter()
    .map(|e| (e.keys[1].to_string(), e.metrics))
    .collect();
    let mut nodes: BTreeMap<String, NodeView> = BTreeMap::new();
    let mut edge_views = Vec::new();
    for e in &edges {
        let (ci, si) = (&*e.keys[1], &*e.keys[3]);
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
            metrics: server_metrics
                .get(si)
                .cloned()
                .unwrap_or_default()
                .summary(minutes(&w)),
        });
        edge_views.push(edge_view(e, source, target, e.keys[4].to_string(), &w));
    }
    Ok(Json(Topology {
        nodes: nodes.into_values().collect(),
        edges: edge_views,
    }))
}

#[derive(Serialize)]
pub struct Points {
    points: Vec<(i64, f64)>,
}

/// Metric names `timeseries` accepts.
const SERIES_METRICS: [&str; 14] = [
    "calls",
    "errors",
    "cpm",
    "success_rate",
    "avg_ms",
    "p50_ms",
    "p75_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "apdex",
    "mtls_calls",
    "bytes_sent",
    "bytes_received",
];

fn pick(s: &Summary, metric: &str) -> Option<f64> {
    match metric {
        "calls" => Some(s.calls as f64),
        "errors" => Some(s.errors as f64),
        "cpm" => Some(s.cpm),
        "success_rate" => s.success_rate,
        "avg_ms" => s.avg_ms,
        "p50_ms" => s.p50_ms,
        "p75_ms" => s.p75_ms,
        "p90_ms" => s.p90_ms,
        "p95_ms" => s.p95_ms,
        "p99_ms" => s.p99_ms,
        "apdex" => s.apdex,
        "mtls_calls" => Some(s.mtls_calls as f64),
        "bytes_sent" => Some(s.bytes_sent as f64),
        "bytes_received" => Some(s.bytes_received as f64),
        _ => None,
    }
}

pub async fn timeseries(State(state): State<ApiState>, ApiQuery(p): ApiQuery) -> ApiResult<Points> {
    let w = params::window(&p)?;
    let metric = p
        .get("metric")
        .ok_or_else(|| bad("missing parameter metric"))?;
    if !SERIES_METRICS.contains(&metric.as_str()) {
        return Err(bad(format!(
            "unknown metric {:?}; one of {}",
            params::clip(metric),
            SERIES_METRICS.join(", ")
        )));
    }
    let step = params::int(&p, "step", 60, 60, 86_400)?;
    if step % 60 != 0 {
        return Err(bad("step must be a multiple of 60 seconds"));
    }
    if (w.end_minute - w.start_minute) / step > 11_000 {
        return Err(bad("too many points; raise step or shorten the window"));
    }
    let entity = p
        .get("entity")
        .ok_or_else(|| bad("missing parameter entity (service, instance, endpoint or edge)"))?;
    let (table, filters) = match entity.as_str() {
        "service" => (Table::Service, vec![(0, params::name(&p, "service")?)]),
        "instance" => (
            Table::Instance,
            vec![
                (0, params::name(&p, "service")?),
                (1, params::name(&p, "instance")?),
            ],
        ),
        "endpoint" => (
            Table::Endpoint,
            vec![
                (0, params::name(&p, "service")?),
                (1, params::name(&p, "endpoint")?),
            ],
        ),
        "edge" => {
            let mut f = vec![
                (0, params::name(&p, "client")?),
                (1, params::name(&p, "server")?),
            ];
            if let Some(proto) = params::opt_name(&p, "protocol")? {
                f.push((2, proto));
            }
            (Table::ServiceRelation, f)
        }
        other => {
            return Err(bad(format!(
                "entity must be service, instance, endpoint or edge, got {:?}",
                params::clip(other)
            )));
        }
    };
    let series = query::series(state.store.as_ref(), &state.dedup, table, w, filters).await?;
    let mut buckets: BTreeMap<i64, Metrics> = BTreeMap::new();
    let mut t = w.start_minute;
    while t < w.end_minute {
        buckets.insert(t, Metrics::default());
        t += step;
    }
    for (minute, m) in series {
        let bucket = w.start_minute + (minute - w.start_minute).div_euclid(step) * step;
        buckets.entry(bucket).or_default().merge(&m);
    }
    let step_minutes = step as f64 / 60.0;
    let points = buckets
        .into_iter()
        .filter_map(|(t, m)| pick(&m.summary(step_minutes), metric).map(|v| (t, v)))
        .collect();
    Ok(Json(Points { points }))
}
