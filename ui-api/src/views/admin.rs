//! `POST /api/v1/admin/flush`, off unless `api.enable_admin_api` (`--enable-admin-api`):
//! off, it answers 503 as Prometheus' admin endpoints do. Requests coalesce through
//! [`crate::admin::Admin`].

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::ApiState;

/// The admin flush's answer: `{"flushed": true}`.
#[derive(Serialize)]
pub struct Flushed {
    flushed: bool,
}

/// `POST /api/v1/admin/flush`: everything received before the request becomes queryable.
pub async fn flush(State(state): State<ApiState>) -> Result<Json<Flushed>, ApiError> {
    if !state.admin.enabled() {
        return Err(ApiError::AdminDisabled);
    }
    let handle = state.aggregator.clone().ok_or(ApiError::NoAggregator)?;
    let hook = state.before_flush.clone();
    state
        .admin
        .coalesced(|| async move {
            if let Some(hook) = &hook {
                hook().await;
            }
            handle.flush().await.map_err(ApiError::from)
        })
        .await?;
    Ok(Json(Flushed { flushed: true }))
}
