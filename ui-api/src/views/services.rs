//! `GET /api/v1/services`, `…/services/{service}/instances`, `…/services/{service}/endpoints`.

use std::collections::BTreeMap;

use aggregator::metrics::{Metrics, Summary};
use aggregator::query::{Entity, Reader};
use aggregator::schema::{FLAG_CLIENT_REAL, FLAG_SERVER_REAL, Key, Table};
use axum::Json;
use axum::extract::{Extension, State};
use proto::Protocol;
use serde::Serialize;

use super::{NodeKind, minutes, namespace_of};
use crate::error::ApiError;
use crate::limits::Budget;
use crate::params::{self, ApiPath, ApiQuery, Params};
use crate::state::ApiState;

#[derive(Serialize)]
pub struct ServiceView {
    name: String,
    namespace: Option<String>,
    real: bool,
    kind: NodeKind,
    #[serde(flatten)]
    metrics: Summary,
}

#[derive(Serialize)]
pub struct Services {
    services: Vec<ServiceView>,
}

/// A node of the window: whether a proxy or SDK reported it, whether it is called as a
/// database, and its inbound figures.
#[derive(Default)]
pub(super) struct Node {
    pub(super) real: bool,
    database: bool,
    pub(super) metrics: Metrics,
}

impl Node {
    pub(super) fn kind(&self, name: &str) -> NodeKind {
        NodeKind::of(name, self.real, self.database)
    }
}

/// Every node known in the window: services with inbound metrics, plus callers seen only
/// in `edges` (the window's service relations), with zero metrics.
pub(super) async fn nodes(
    reader: &Reader<'_>,
    edges: &[Entity],
) -> Result<BTreeMap<String, Node>, ApiError> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for e in reader.entities(Table::Service, &[]).await? {
        nodes.insert(
            e.keys.get(Key::Service).to_string(),
            Node {
                real: e.flags & FLAG_SERVER_REAL != 0,
                database: false,
                metrics: e.metrics,
            },
        );
    }
    for e in edges {
        let client = nodes
            .entry(e.keys.get(Key::Client).to_string())
            .or_default();
        client.real |= e.flags & FLAG_CLIENT_REAL != 0;
        let server = nodes
            .entry(e.keys.get(Key::Server).to_string())
            .or_default();
        server.real |= e.flags & FLAG_SERVER_REAL != 0;
        server.database |= e.keys.get(Key::Protocol) == Protocol::Database.as_str();
    }
    Ok(nodes)
}

/// `GET /api/v1/services`.
pub async fn services(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Services>, ApiError> {
    let w = params::window(&p)?;
    let reader = state.reader(w).metered(&budget);
    let edges = reader.entities(Table::ServiceRelation, &[]).await?;
    let services = nodes(&reader, &edges)
        .await?
        .into_iter()
        .map(|(name, n)| ServiceView {
            namespace: namespace_of(&name, n.real),
            kind: n.kind(&name),
            real: n.real,
            metrics: n.metrics.summary(minutes(&w)),
            name,
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

/// The instances or endpoints (`table`, whose `name` key is `child`) of one service.
async fn children(
    state: &ApiState,
    budget: &Budget,
    table: Table,
    child: Key,
    service: &str,
    p: &Params,
) -> Result<Vec<Named>, ApiError> {
    let service = params::check_name("service", service)?;
    let w = params::window(p)?;
    let list = state
        .reader(w)
        .metered(budget)
        .entities(table, &[(Key::Service, service)])
        .await?;
    Ok(list
        .into_iter()
        .map(|e| Named {
            name: e.keys.get(child).to_string(),
            metrics: e.metrics.summary(minutes(&w)),
        })
        .collect())
}

/// `GET /api/v1/services/{service}/instances`.
pub async fn instances(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiPath(service): ApiPath,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Instances>, ApiError> {
    let instances = children(
        &state,
        &budget,
        Table::Instance,
        Key::Instance,
        &service,
        &p,
    )
    .await?;
    Ok(Json(Instances { instances }))
}

/// `GET /api/v1/services/{service}/endpoints`.
pub async fn endpoints(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiPath(service): ApiPath,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Endpoints>, ApiError> {
    let endpoints = children(
        &state,
        &budget,
        Table::Endpoint,
        Key::Endpoint,
        &service,
        &p,
    )
    .await?;
    Ok(Json(Endpoints { endpoints }))
}
