//! The API's error type and its one mapping to HTTP, including the one mapping of the
//! aggregator's error classes ([`aggregator::ErrorKind`]) that both APIs use.

use aggregator::ErrorKind;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::{error, warn};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{}", store_message(.0))]
    Store(#[from] aggregator::Error),
    #[error("flush is not available in this process")]
    NoAggregator,
    #[error("{0}")]
    Timeout(String),
    #[error("admin APIs disabled; start meshscope with --enable-admin-api")]
    AdminDisabled,
}

#[derive(Serialize)]
struct Body {
    error: String,
}

/// A store error as the client reads it: a bound's own message, else `store: …`.
fn store_message(e: &aggregator::Error) -> String {
    match e {
        aggregator::Error::Bounded { message, .. } => message.clone(),
        other => format!("store: {other}"),
    }
}

/// The HTTP status of an aggregator error, logged once here: at ERROR when it is
/// meshscope's fault, at WARN when something it needs is unavailable.
pub fn store_status(e: &aggregator::Error) -> StatusCode {
    match e.kind() {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => {
            warn!(error = %e, "query refused: the store is unavailable");
            StatusCode::SERVICE_UNAVAILABLE
        }
        ErrorKind::Internal => {
            error!(error = %e, "query failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Store(e) => store_status(e),
            ApiError::NoAggregator | ApiError::Timeout(_) | ApiError::AdminDisabled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (
            status,
            Json(Body {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// Shorthand for a 400.
pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}
