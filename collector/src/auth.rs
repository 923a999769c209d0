//! Tokens on the gRPC listener: with `auth.ingest_tokens_file` set, every call (ALS
//! streams and OTLP exports) needs `authorization: Bearer <token>` metadata, as Envoy's
//! `grpc_service.initial_metadata` and OTLP exporters' `headers` send it. A missing or
//! wrong token is answered `UNAUTHENTICATED` before the call's first message is read, and
//! counted in `meshscope_auth_failures_total{listener="grpc", reason}`.

use listen::SecurityMetrics;
use listen::tokens::{Need, Tokens, token_of};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The check, as a tonic interceptor for the whole server.
#[derive(Clone, Debug)]
pub struct IngestAuth {
    pub tokens: Tokens,
    pub metrics: SecurityMetrics,
}

impl Interceptor for IngestAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| token_of(v.as_bytes()));
        match self.tokens.check(Need::Ingest, presented.as_deref()) {
            Ok(()) => Ok(request),
            Err(denied) => {
                self.metrics.failed("grpc", denied.reason());
                Err(Status::unauthenticated(match denied.reason() {
                    "missing" => "a token is needed: authorization: Bearer <token> metadata",
                    _ => "the token is not valid for sending telemetry here",
                }))
            }
        }
    }
}
