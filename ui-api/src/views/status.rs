//! `GET /api/v1/status`: the server's description ([`ServerInfo`]) and its clock, which the
//! console uses to place relative windows on the server's time rather than the browser's.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::info::ServerInfo;
use crate::params;
use crate::state::ApiState;

#[derive(Serialize)]
pub struct Status {
    #[serde(flatten)]
    info: ServerInfo,
    /// The server's time, unix seconds.
    now: i64,
}

/// `GET /api/v1/status`.
pub async fn status(State(state): State<ApiState>) -> Json<Status> {
    Json(Status {
        info: (*state.info).clone(),
        now: params::now(),
    })
}
