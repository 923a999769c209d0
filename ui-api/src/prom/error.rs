//! [`PromError`]: a failed Prometheus API request, answered in Prometheus' error shape
//! `{"status":"error","errorType":…,"error":…}` with the status Prometheus uses for it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ApiError;
use crate::error::store_status;

/// An error in Prometheus' shape.
#[derive(Debug)]
pub struct PromError {
    pub(super) status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    /// A malformed request (`400 bad_data`).
    pub fn bad(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    /// A fault of meshscope (`500 internal`).
    pub fn internal(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: message.into(),
        }
    }

    /// A well-formed query meshscope does not evaluate (`422 execution`).
    pub fn unsupported(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "execution",
            message: message.into(),
        }
    }

    /// Past the query's deadline (`503 timeout`).
    pub fn timeout(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "timeout",
            message: message.into(),
        }
    }

    /// Stopped by a bound of the query's budget (see [`crate::limits::Budget`]).
    pub fn stopped(budget: &crate::limits::Budget, stop: crate::limits::Stop) -> PromError {
        match stop {
            crate::limits::Stop::Samples => PromError::unsupported(budget.message(stop)),
            _ => PromError::timeout(budget.message(stop)),
        }
    }

    /// No such endpoint (`404 bad_data`).
    pub fn not_found(message: impl Into<String>) -> PromError {
        PromError {
            status: StatusCode::NOT_FOUND,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl From<ApiError> for PromError {
    fn from(e: ApiError) -> PromError {
        match e {
            ApiError::BadRequest(m) | ApiError::NotFound(m) => PromError::bad(m),
            ApiError::Store(e) => PromError::from(e),
            ApiError::Timeout(m) => PromError::timeout(m),
            other => PromError::internal(other.to_string()),
        }
    }
}

impl From<aggregator::Error> for PromError {
    fn from(e: aggregator::Error) -> PromError {
        let status = store_status(&e);
        let kind = match status {
            StatusCode::BAD_REQUEST => "bad_data",
            StatusCode::UNPROCESSABLE_ENTITY => "execution",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            _ => "internal",
        };
        PromError {
            status,
            kind,
            message: ApiError::Store(e).to_string(),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let body = Body {
            status: "error",
            error_type: self.kind,
            error: &self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}
