//! Tokens on the gRPC listener: with `auth.ingest_tokens_file` set, every call (ALS
//! streams and OTLP exports) needs `authorization: Bearer <token>` metadata, as Envoy's
//! `grpc_service.initial_metadata` and OTLP exporters' `headers` send it. A missing or
//! wrong token is answered `UNAUTHENTICATED` before the call's first message is read, and
//! counted in `meshscope_auth_failures_total{listener="grpc", reason}`.

use listen::SecurityMetrics;
use listen::tokens::{Denied, Need, Tokens};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The check, as a tonic interceptor for the whole server.
#[derive(Clone, Debug)]
pub struct IngestAuth {
    /// The token files (open when no ingest file is set).
    pub tokens: Tokens,
    /// Where refusals are counted.
    pub metrics: SecurityMetrics,
}

impl Interceptor for IngestAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        match self
            .tokens
            .admit(Need::Ingest, authorization, "grpc", &self.metrics)
        {
            Ok(()) => Ok(request),
            Err(Denied::Missing) => Err(Status::unauthenticated(
                "a token is needed: authorization: Bearer <token> metadata",
            )),
            Err(_) => Err(Status::unauthenticated(
                "the token is not valid for sending telemetry here",
            )),
        }
    }
}
