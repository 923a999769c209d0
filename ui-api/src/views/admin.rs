//! `POST /api/v1/admin/flush`, off unless `api.enable_admin_api` (`--enable-admin-api`):
//! off, it answers 503 as Prometheus' admin endpoints do. Requests coalesce through
//! [`crate::admin::Admin`].
//!
//! Spans waiting for their partner stay waiting unless the request says
//! `waiting_spans=record`: a flush loop must not split pairs that are still to meet.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::error::{ApiError, bad};
use crate::params::ApiQuery;
use crate::state::ApiState;

/// The admin flush's answer: `{"flushed": true, "waiting_spans": "kept"}`.
#[derive(Serialize)]
pub struct Flushed {
    flushed: bool,
    /// `kept` (they go on waiting for their partner) or `recorded` (as unpaired).
    waiting_spans: &'static str,
}

/// `POST /api/v1/admin/flush[?waiting_spans=keep|record]`: everything received before
/// the request becomes queryable; with `record`, spans still waiting for their partner
/// are recorded unpaired first.
pub async fn flush(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery,
) -> Result<Json<Flushed>, ApiError> {
    if !state.admin.enabled() {
        return Err(ApiError::AdminDisabled);
    }
    if let Some(key) = params.keys().find(|k| k.as_str() != "waiting_spans") {
        return Err(bad(format!(
            "unknown parameter {:?}; the flush takes only waiting_spans",
            crate::params::clip(key)
        )));
    }
    let record = match params.get("waiting_spans").map(String::as_str) {
        None | Some("keep") => false,
        Some("record") => true,
        Some(other) => {
            return Err(bad(format!(
                "waiting_spans must be keep or record, not {:?}",
                crate::params::clip(other)
            )));
        }
    };
    let handle = state.aggregator.clone().ok_or(ApiError::NoAggregator)?;
    // Recording is cheap (memory to the call channel) and done for each request that
    // asks, before it joins a flush: the coalesced flush then covers what it recorded.
    if record && let Some(hook) = &state.before_flush {
        hook().await;
    }
    state
        .admin
        .coalesced(|| async move { handle.flush().await.map_err(ApiError::from) })
        .await?;
    Ok(Json(Flushed {
        flushed: true,
        waiting_spans: if record { "recorded" } else { "kept" },
    }))
}
