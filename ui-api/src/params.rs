//! Query-parameter parsing with clear 400s: times, windows, names, numbers.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aggregator::query::Window;

use crate::error::{ApiError, bad};

/// Longest accepted name parameter (service, instance, endpoint), in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest accepted window.
pub const MAX_WINDOW_SECONDS: i64 = 90 * 86_400;
/// Default window: the last 15 minutes.
pub const DEFAULT_WINDOW_SECONDS: i64 = 15 * 60;

/// Raw query parameters.
pub type Params = HashMap<String, String>;

/// Query parameters, with malformed query strings answered as JSON 400s.
pub struct ApiQuery(pub Params);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Params>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| bad(format!("malformed query string: {}", e.body_text())))
    }
}

/// The one path parameter, with malformed encodings answered as JSON 400s.
pub struct ApiPath(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| bad(format!("malformed path: {}", e.body_text())))
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Latest accepted time: 9999-12-31T23:59:59Z.
pub const MAX_TIME: i64 = 253_402_300_799;

/// Parses unix seconds (integer or fractional) or RFC 3339, between 1970 and 9999.
pub fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    let t = if let Ok(secs) = v.parse::<i64>() {
        secs
    } else if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
        && f.abs() < 1e13
    {
        f.floor() as i64
    } else {
        chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp())
            .map_err(|_| {
                bad(format!(
                    "{name} must be unix seconds or RFC 3339, got {:?}",
                    clip(v)
                ))
            })?
    };
    if !(0..=MAX_TIME).contains(&t) {
        return Err(bad(format!(
            "{name} must be between 1970 and the year 9999"
        )));
    }
    Ok(t)
}

/// Shortens a hostile value for an error message.
pub fn clip(v: &str) -> String {
    v.chars().take(64).collect()
}

/// The `start`/`end` window (default: the last 15 minutes).
pub fn window(p: &Params) -> Result<Window, ApiError> {
    let end = match p.get("end") {
        Some(v) => parse_time("end", v)?,
        // Through the current second: the minute holding `now` is in the window even in
        // its first second (an exclusive `now` would drop it at hh:mm:00).
        None => now() + 1,
    };
    let start = match p.get("start") {
        Some(v) => parse_time("start", v)?,
        None => (end - DEFAULT_WINDOW_SECONDS).max(0),
    };
    if start >= end {
        return Err(bad("start must be before end"));
    }
    if end - start > MAX_WINDOW_SECONDS {
        return Err(bad(format!(
            "window is longer than {} days",
            MAX_WINDOW_SECONDS / 86_400
        )));
    }
    Ok(Window::from_seconds(start, end))
}

/// A required name parameter.
pub fn name(p: &Params, key: &str) -> Result<String, ApiError> {
    let v = p
        .get(key)
        .ok_or_else(|| bad(format!("missing parameter {key}")))?;
    check_name(key, v)
}

/// An optional name parameter.
pub fn opt_name(p: &Params, key: &str) -> Result<Option<String>, ApiError> {
    p.get(key).map(|v| check_name(key, v)).transpose()
}

/// Validates a name taken from the path or the query.
pub fn check_name(key: &str, v: &str) -> Result<String, ApiError> {
    if v.is_empty() {
        return Err(bad(format!("{key} must not be empty")));
    }
    if v.len() > MAX_NAME_LEN {
        return Err(bad(format!("{key} is longer than {MAX_NAME_LEN} bytes")));
    }
    if v.chars().any(char::is_control) {
        return Err(bad(format!("{key} contains control characters")));
    }
    Ok(v.to_string())
}

/// An optional integer in a range.
pub fn int(p: &Params, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    match p.get(key) {
        None => Ok(default),
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| bad(format!("{key} must be an integer, got {:?}", clip(v))))?;
            if n < min || n > max {
                return Err(bad(format!("{key} must be between {min} and {max}")));
            }
            Ok(n)
        }
    }
}
