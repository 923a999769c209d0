//! `GET /api/v1/edge?client=…&server=…[&protocol=…]`: one edge's figures over the window as
//! each side reported them (the caller's proxy or span, and the callee's), beside each
//! other, one entry per protocol. The topology counts the server's side when it reported
//! (the side rule); this shows both, so a gap between them (timeouts, retries, calls lost
//! on the way) can be seen.

use aggregator::metrics::{Metrics, Summary};
use aggregator::query::Read;
use aggregator::schema::{Key, Table};
use axum::Json;
use axum::extract::{Extension, State};
use serde::Serialize;

use super::minutes;
use crate::error::ApiError;
use crate::limits::Budget;
use crate::params::{self, ApiQuery};
use crate::state::ApiState;

/// One protocol of the edge, each side apart (`null`: that side did not report).
#[derive(Serialize)]
pub struct EdgeSides {
    id: String,
    source: String,
    target: String,
    protocol: String,
    /// `mesh` or `trace`: the telemetry the figures come from.
    telemetry: &'static str,
    client: Option<Summary>,
    server: Option<Summary>,
}

#[derive(Serialize)]
pub struct Edges {
    edges: Vec<EdgeSides>,
}

fn merged(minutes: &[(i64, Metrics)]) -> Option<Metrics> {
    let mut it = minutes.iter();
    let (_, first) = it.next()?;
    let mut m = first.clone();
    for (_, more) in it {
        m.merge(more);
    }
    Some(m)
}

/// `GET /api/v1/edge`.
pub async fn edge(
    State(state): State<ApiState>,
    Extension(budget): Extension<Budget>,
    ApiQuery(p): ApiQuery,
) -> Result<Json<Edges>, ApiError> {
    let w = params::window(&p)?;
    let client = params::name(&p, "client")?;
    let server = params::name(&p, "server")?;
    let mut filters = vec![(Key::Client, client), (Key::Server, server)];
    if let Some(protocol) = params::opt_name(&p, "protocol")? {
        filters.push((Key::Protocol, protocol));
    }
    let keys = state
        .reader(w)
        .metered(&budget)
        .key_parts(Table::ServiceRelation, &filters, &Read::merged(true))
        .await?;
    let per_minute = minutes(&w);
    let edges = keys
        .into_iter()
        .map(|k| {
            let [source, target, protocol] =
                [Key::Client, Key::Server, Key::Protocol].map(|key| k.keys.get(key).to_string());
            EdgeSides {
                id: format!("{source}|{target}|{protocol}"),
                source,
                target,
                protocol,
                telemetry: k.source.as_str(),
                client: merged(&k.client).map(|m| m.summary(per_minute)),
                server: merged(&k.server).map(|m| m.summary(per_minute)),
            }
        })
        .collect();
    Ok(Json(Edges { edges }))
}
