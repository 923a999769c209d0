//! The HTTP middleware that asks for tokens: each request's route needs a kind of token
//! (or none), given by the listener; a missing or wrong token gets 401 with
//! `WWW-Authenticate`, a valid token of the wrong kind 403, each counted in
//! `meshscope_auth_failures_total{listener, reason}`. The token comes as `Bearer T` or as
//! the password of HTTP Basic auth.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::config::Listener;
use crate::security_metrics::SecurityMetrics;
use crate::tokens::{Denied, Need, Tokens};

/// The shape refusals are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error": "…"}` (the JSON API), or Prometheus' error shape under `/prometheus`.
    Api,
    /// `google.rpc.Status` as JSON (`{"code": 16, "message": "…"}`), as OTLP/HTTP answers.
    Otlp,
}

/// One listener's token check.
#[derive(Clone)]
pub struct HttpAuth {
    /// The token files.
    pub tokens: Tokens,
    /// The listener it guards (the counters' label).
    pub listener: Listener,
    /// Where refusals are counted.
    pub metrics: SecurityMetrics,
    /// What a path needs; `None`: open (`/healthz`).
    pub need: fn(&str) -> Option<Need>,
    /// The shape of its refusals.
    pub shape: Shape,
}

/// `router` with every request checked by `auth`.
pub fn guard(router: Router, auth: HttpAuth) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, check))
}

#[derive(Serialize)]
struct ApiBody<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct PromBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

#[derive(Serialize)]
struct OtlpBody<'a> {
    code: u16,
    message: &'a str,
}

async fn check(State(auth): State<HttpAuth>, req: Request, next: Next) -> Response {
    let Some(need) = (auth.need)(req.uri().path()) else {
        return next.run(req).await;
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let denied = match auth
        .tokens
        .admit(need, authorization, auth.listener.as_str(), &auth.metrics)
    {
        Ok(()) => return next.run(req).await,
        Err(denied) => denied,
    };
    let (status, message, code) = match denied {
        Denied::Missing => (
            StatusCode::UNAUTHORIZED,
            "a token is needed: Authorization: Bearer <token>, or HTTP Basic auth with the token as password",
            16,
        ),
        Denied::Invalid => (StatusCode::UNAUTHORIZED, "the token is not valid here", 16),
        Denied::Forbidden => (
            StatusCode::FORBIDDEN,
            "this token may read but not use the admin endpoints",
            7,
        ),
    };
    let prometheus = req.uri().path().starts_with("/prometheus");
    let mut response = match auth.shape {
        Shape::Otlp => (status, axum::Json(OtlpBody { code, message })).into_response(),
        Shape::Api if prometheus => (
            status,
            axum::Json(PromBody {
                status: "error",
                error_type: if status == StatusCode::FORBIDDEN {
                    "forbidden"
                } else {
                    "unauthorized"
                },
                error: message,
            }),
        )
            .into_response(),
        Shape::Api => (status, axum::Json(ApiBody { error: message })).into_response(),
    };
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"meshscope\", Basic realm=\"meshscope\""),
        );
    }
    response
}
