//! `opentelemetry.proto.collector.trace.v1.TraceService/Export` as a tower service for the
//! shared gRPC listener, with a codec that answers undecodable requests with
//! `INVALID_ARGUMENT`, and refusals before the service runs classified as [`Rejection`]s.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderValue;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::Status;
use tonic::codec::CompressionEncoding;
use tracing::warn;

use super::cost::request_cost;
use super::metrics::OtlpMetrics;
use super::{METHOD_PATH, OtlpReceiver, SERVICE_NAME};
use crate::budget::DecodeBudget;
use crate::codec::{Measured, MeasuringCodec};
use crate::reject::Rejection;

/// `opentelemetry.proto.collector.trace.v1.TraceService` as a tower service.
#[derive(Clone)]
pub struct TraceGrpc(OtlpReceiver);

impl OtlpReceiver {
    /// The gRPC `TraceService`, for the shared gRPC listener.
    pub fn grpc_service(&self) -> TraceGrpc {
        TraceGrpc(self.clone())
    }
}

impl tonic::server::NamedService for TraceGrpc {
    const NAME: &'static str = SERVICE_NAME;
}

struct ExportSvc(OtlpReceiver);

/// Export is unary on the wire; it is served as a client stream whose first message is
/// the request, so the answer does not wait for the client to end its stream (tonic's
/// unary handling would hold the decoded request until then).
impl tonic::server::ClientStreamingService<Measured> for ExportSvc {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<Measured>>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            let mut stream = request.into_inner();
            let measured = match stream.message().await? {
                Some(m) => m,
                None => {
                    return Err(Status::invalid_argument(
                        "malformed OTLP trace export request: no message",
                    ));
                }
            };
            drop(stream);
            let charge = receiver
                .inner
                .budget
                .charge(measured.cost, "the OTLP trace export request")
                .map_err(|r| r.status())?;
            let request = ExportTraceServiceRequest::decode(measured.bytes).map_err(|e| {
                Status::invalid_argument(format!("malformed OTLP trace export request: {e}"))
            })?;
            match receiver.export(DecodeBudget::attach(request, charge)).await {
                Ok(done) => Ok(tonic::Response::new(done.response())),
                Err(rejection) => Err(rejection.status()),
            }
        })
    }
}

/// Counts a request rejected before it reached the service, and answers it with the
/// rejection's code: tonic's `OutOfRange` for an oversized message becomes
/// `ResourceExhausted` (what OTLP exporters treat as not retryable).
fn classify_grpc_rejection(
    metrics: &OtlpMetrics,
    response: &mut http::Response<tonic::body::Body>,
) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Some(code) = header("grpc-status").and_then(|v| v.parse::<i32>().ok()) else {
        return;
    };
    let message = header("grpc-message").unwrap_or_default();
    let code = tonic::Code::from_i32(code);
    // The codec's busy refusal is `UNAVAILABLE`, like the service's shutting down (which
    // the service counts itself): told apart by the setting the message names.
    let busy = (code == tonic::Code::Unavailable && message.contains("max_decoding_bytes"))
        .then(|| Rejection::Busy(message.clone()));
    let Some(rejection) = busy.or_else(|| Rejection::before_service(code, &message)) else {
        return;
    };
    metrics.request_rejected("grpc", rejection.reason());
    warn!(
        reason = rejection.reason(),
        "OTLP/gRPC export request rejected"
    );
    let answer = rejection.code() as i32;
    if answer != code as i32 {
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from(answer));
    }
}

impl<B> tower::Service<http::Request<B>> for TraceGrpc
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != METHOD_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented(format!("unknown method of {SERVICE_NAME}")).into_http())
            });
        }
        let receiver = self.0.clone();
        Box::pin(async move {
            let limit = receiver.inner.max_message_bytes;
            let metrics = receiver.inner.metrics.clone();
            let codec = MeasuringCodec::<ExportTraceServiceResponse>::new(
                request_cost,
                "OTLP trace export request",
            );
            let mut grpc = tonic::server::Grpc::new(codec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(limit), None);
            let mut response = grpc.client_streaming(ExportSvc(receiver), req).await;
            classify_grpc_rejection(&metrics, &mut response);
            Ok(response)
        })
    }
}
