//! The Prometheus API's parameters: from the URL and, for a form-encoded POST, the body
//! (repeated keys such as `match[]` kept), and the times, windows and steps in them.

use aggregator::query::Window;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};

use super::error::PromError;
use crate::params;

/// Largest form body accepted on POST.
const MAX_FORM_BYTES: usize = 1 << 20;

/// Request parameters from the URL and, for a form-encoded POST, the body; repeated keys
/// (`match[]`) kept.
pub struct PromParams(Vec<(String, String)>);

impl PromParams {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for PromParams {
    type Rejection = PromError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let decode = |s: &str| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(s)
                .map_err(|e| PromError::bad(format!("malformed parameters: {e}")))
        };
        let mut pairs = decode(req.uri().query().unwrap_or(""))?;
        if req.method() == Method::POST {
            let form = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let body = Bytes::from_request(req, state)
                .await
                .map_err(|e| PromError::bad(format!("reading the body: {e}")))?;
            if body.len() > MAX_FORM_BYTES {
                return Err(PromError::bad("form body over 1 MiB"));
            }
            if form {
                let text = std::str::from_utf8(&body)
                    .map_err(|_| PromError::bad("form body is not UTF-8"))?;
                pairs.extend(decode(text)?);
            } else if !body.is_empty() {
                return Err(PromError::bad(
                    "POST bodies must be application/x-www-form-urlencoded",
                ));
            }
        }
        Ok(PromParams(pairs))
    }
}

/// A Prometheus time: unix seconds (fractions allowed) or RFC 3339.
pub fn time_param(p: &PromParams, key: &str) -> Result<Option<f64>, PromError> {
    let Some(v) = p.get(key) else {
        return Ok(None);
    };
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        if !(0.0..=params::MAX_TIME as f64).contains(&f) {
            return Err(PromError::bad(format!(
                "{key} must be between 1970 and the year 9999"
            )));
        }
        return Ok(Some(f));
    }
    Ok(Some(params::parse_time(key, v)? as f64))
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The `start`/`end` window of the metadata endpoints (default: the last hour).
pub fn metadata_window(p: &PromParams) -> Result<Window, PromError> {
    let end = time_param(p, "end")?.unwrap_or_else(now);
    let start = time_param(p, "start")?.unwrap_or(end - 3600.0);
    if start > end {
        return Err(PromError::bad("start must not be after end"));
    }
    if end - start > params::MAX_WINDOW_SECONDS as f64 {
        return Err(PromError::bad(format!(
            "window is longer than {} days",
            params::MAX_WINDOW_SECONDS / 86_400
        )));
    }
    // Minutes that start inside [start, end], the end minute included.
    Ok(Window::from_seconds(
        start.floor() as i64,
        end.floor() as i64 + 1,
    ))
}

/// A Prometheus duration or float seconds, for `step`.
pub fn step_param(p: &PromParams) -> Result<f64, PromError> {
    let v = p
        .get("step")
        .ok_or_else(|| PromError::bad("missing step parameter"))?;
    let secs = match v.parse::<f64>() {
        Ok(f) => f,
        Err(_) => promql_parser::util::parse_duration(v)
            .map_err(|_| PromError::bad(format!("invalid step {:?}", params::clip(v))))?
            .as_secs_f64(),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(PromError::bad(
            "zero or negative query resolution step widths are not accepted",
        ));
    }
    Ok(secs)
}
