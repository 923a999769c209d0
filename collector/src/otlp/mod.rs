//! OTLP trace receivers: `TraceService/Export` over gRPC and `POST /v1/traces` over HTTP
//! (protobuf or OTLP/JSON, optionally gzip), both feeding one [`OtlpReceiver`].
//!
//! Spans become [`proto::Call`]s with `source = trace` on the same channel as the mesh's
//! calls: [`spans`] turns a span into a caller's or callee's half, [`pairing`] joins the
//! halves. Spans that cannot be used are answered with partial success (`rejected_spans`
//! and a message) and counted; a body that does not decode is rejected whole.

pub mod pairing;
pub mod spans;

use std::convert::Infallible;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use prost::Message;
use proto::CallBatch;
use proto::channel::CallSender;
use serde::Deserialize;
use tokio::sync::watch;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder};
use tracing::{debug, warn};

use crate::CollectorMetrics;
use pairing::{Pairing, PairingSettings};

/// The gRPC service name.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The gRPC path of `TraceService/Export`.
pub const METHOD_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// OTLP settings (`[otlp]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// How long a CLIENT or SERVER span waits for its partner before it is recorded
    /// unpaired. Exporters batch for a few seconds, so keep it above their delay.
    #[serde(with = "humantime_serde")]
    pub pairing_ttl: Duration,
    /// Most spans waiting for a partner; past it the oldest is recorded unpaired early.
    pub pairing_max_spans: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            pairing_ttl: Duration::from_secs(10),
            pairing_max_spans: 100_000,
        }
    }
}

/// Label set `{kind, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnpairedLabels {
    kind: &'static str,
    reason: &'static str,
}

/// Label set `{transport, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    reason: &'static str,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Self-metrics of the OTLP receivers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OtlpMetrics {
    received: Counter,
    rejected: Family<Reason, Counter>,
    ignored: Counter,
    /// Pairs of a caller's and a callee's span joined.
    pub paired: Counter,
    unpaired: Family<UnpairedLabels, Counter>,
    /// The same caller span received twice while waiting.
    pub duplicates: Counter,
    /// Spans waiting for their partner.
    pub waiting: Gauge,
    requests_rejected: Family<RequestLabels, Counter>,
}

impl OtlpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> OtlpMetrics {
        let m = OtlpMetrics {
            received: Counter::default(),
            rejected: Family::default(),
            ignored: Counter::default(),
            paired: Counter::default(),
            unpaired: Family::default(),
            duplicates: Counter::default(),
            waiting: Gauge::default(),
            requests_rejected: Family::default(),
        };
        registry.register(
            "otlp_spans_received",
            "Spans in OTLP export requests that decoded",
            m.received.clone(),
        );
        registry.register(
            "otlp_spans_rejected",
            "Spans answered as rejected (partial success), by reason",
            m.rejected.clone(),
        );
        registry.register(
            "otlp_spans_ignored",
            "INTERNAL and unspecified-kind spans: they carry no call",
            m.ignored.clone(),
        );
        registry.register(
            "otlp_spans_paired",
            "Callee spans joined with their caller span",
            m.paired.clone(),
        );
        registry.register(
            "otlp_spans_unpaired",
            "Spans recorded without their partner, by kind (client, server) and reason (expired: TTL; evicted: store full; flushed: admin flush or shutdown)",
            m.unpaired.clone(),
        );
        registry.register(
            "otlp_spans_duplicate",
            "Caller spans received again while still waiting (counted once)",
            m.duplicates.clone(),
        );
        registry.register(
            "otlp_pairing_waiting",
            "Spans waiting for their partner",
            m.waiting.clone(),
        );
        registry.register(
            "otlp_requests_rejected",
            "OTLP export requests rejected whole, by transport and reason",
            m.requests_rejected.clone(),
        );
        m
    }

    fn unpaired(&self, kind: &'static str, reason: &'static str, n: u64) {
        self.unpaired
            .get_or_create(&UnpairedLabels { kind, reason })
            .inc_by(n);
    }

    fn request_rejected(&self, transport: &'static str, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&RequestLabels { transport, reason })
            .inc();
    }

    #[cfg(test)]
    fn unpaired_count(&self, kind: &'static str, reason: &'static str) -> u64 {
        self.unpaired
            .get_or_create(&UnpairedLabels { kind, reason })
            .get()
    }
}

/// What one export request came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    pub rejected_spans: i64,
    /// The first rejection's reason, for the partial-success message.
    pub message: String,
}

impl Exported {
    fn response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected_spans > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected_spans,
                error_message: self.message,
            }),
        }
    }
}

/// The aggregator has stopped; nothing can be accepted.
#[derive(Debug)]
pub struct ShuttingDown;

struct Inner {
    calls: CallSender,
    pairing: Mutex<Pairing>,
    metrics: OtlpMetrics,
    collector: CollectorMetrics,
    max_message_bytes: usize,
    ttl: Duration,
}

/// Converts OTLP export requests into calls. Cheap to clone; serves both transports.
#[derive(Clone)]
pub struct OtlpReceiver {
    inner: Arc<Inner>,
}

impl OtlpReceiver {
    /// A receiver sending calls into `calls`.
    pub fn new(
        config: &OtlpConfig,
        max_message_bytes: usize,
        calls: CallSender,
        collector: CollectorMetrics,
        metrics: OtlpMetrics,
    ) -> OtlpReceiver {
        let settings = PairingSettings {
            ttl: config.pairing_ttl,
            max_waiting: config.pairing_max_spans,
        };
        OtlpReceiver {
            inner: Arc::new(Inner {
                calls,
                pairing: Mutex::new(Pairing::new(settings, metrics.clone())),
                metrics,
                collector,
                max_message_bytes,
                ttl: config.pairing_ttl,
            }),
        }
    }

    fn pairing(&self) -> std::sync::MutexGuard<'_, Pairing> {
        self.inner.pairing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands calls to the aggregator. The send runs in its own task: the calls may
    /// complete pairs from earlier requests, so they must arrive even if the exporter
    /// that caused them gives up (times out, disconnects) while backpressure holds it.
    async fn send(&self, batch: CallBatch) -> Result<(), ShuttingDown> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            crate::deliver(&inner.calls, &inner.collector, batch)
                .await
                .map_err(|_| ShuttingDown)
        });
        task.await.unwrap_or(Err(ShuttingDown))
    }

    /// Converts one decoded request and hands the calls it completes to the aggregator.
    pub async fn export(
        &self,
        request: ExportTraceServiceRequest,
    ) -> Result<Exported, ShuttingDown> {
        let m = &self.inner.metrics;
        let mut exported = Exported::default();
        let mut first: Option<&'static str> = None;
        let mut reject = |n: usize, r: spans::Reject| {
            m.rejected
                .get_or_create(&Reason { reason: r.reason() })
                .inc_by(n as u64);
            first.get_or_insert(r.message());
            exported.rejected_spans += n as i64;
        };
        // Convert outside the lock; take it only to pair.
        let mut halves = Vec::new();
        for rs in &request.resource_spans {
            let count: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
            m.received.inc_by(count as u64);
            let node = match spans::resource_node(rs.resource.as_ref()) {
                Ok(n) => n,
                Err(r) => {
                    reject(count, r);
                    continue;
                }
            };
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                match spans::half(&node, span) {
                    Ok(Some(half)) => halves.push(half),
                    Ok(None) => {
                        m.ignored.inc();
                    }
                    Err(r) => reject(1, r),
                }
            }
        }
        if let Some(first) = first {
            exported.message = format!(
                "{} span(s) rejected; the first because {first}",
                exported.rejected_spans
            );
            debug!(rejected = exported.rejected_spans, message = %exported.message, "spans rejected");
        }
        let mut out = CallBatch::new();
        let now = Instant::now();
        {
            let mut pairing = self.pairing();
            for half in halves {
                pairing.offer(half, now, &mut out);
            }
        }
        self.send(out).await?;
        Ok(exported)
    }

    /// Records every span whose partner did not arrive in time.
    pub async fn expire(&self) -> Result<(), ShuttingDown> {
        let mut out = CallBatch::new();
        self.pairing().expire(Instant::now(), &mut out);
        self.send(out).await
    }

    /// Records every waiting span unpaired now (admin flush, shutdown).
    pub async fn flush(&self) -> Result<(), ShuttingDown> {
        let mut out = CallBatch::new();
        self.pairing().flush(&mut out);
        self.send(out).await
    }

    /// Runs the expiry clock until `stop` turns true.
    pub async fn run_expiry(self, mut stop: watch::Receiver<bool>) {
        let tick = (self.inner.ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let stopped = *stop.borrow();
            if stopped || self.expire().await.is_err() {
                return;
            }
        }
    }

    /// The gRPC `TraceService`, for the shared gRPC listener.
    pub fn grpc_service(&self) -> TraceGrpc {
        TraceGrpc(self.clone())
    }

    /// The OTLP/HTTP router: `POST /v1/traces`.
    pub fn http_router(&self) -> Router {
        Router::new()
            .route("/v1/traces", axum::routing::post(http_export))
            .fallback(http_not_found)
            .with_state(self.clone())
    }
}

// ---- gRPC -------------------------------------------------------------------------

/// Decodes requests with prost and answers undecodable ones with `InvalidArgument`.
struct OtlpCodec;

struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = ExportTraceServiceRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportTraceServiceRequest::decode(buf)
            .map(Some)
            .map_err(|e| {
                Status::invalid_argument(format!("malformed OTLP trace export request: {e}"))
            })
    }
}

impl Codec for OtlpCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = ExportTraceServiceRequest;
    type Encoder = tonic_prost::ProstEncoder<ExportTraceServiceResponse>;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder
    }
}

/// `opentelemetry.proto.collector.trace.v1.TraceService` as a tower service.
#[derive(Clone)]
pub struct TraceGrpc(OtlpReceiver);

impl tonic::server::NamedService for TraceGrpc {
    const NAME: &'static str = SERVICE_NAME;
}

struct ExportSvc(OtlpReceiver);

impl tonic::server::UnaryService<ExportTraceServiceRequest> for ExportSvc {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::Response>, Status>>;

    fn call(&mut self, request: tonic::Request<ExportTraceServiceRequest>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move {
            match receiver.export(request.into_inner()).await {
                Ok(done) => Ok(tonic::Response::new(done.response())),
                Err(ShuttingDown) => Err(Status::unavailable("meshscope is shutting down")),
            }
        })
    }
}

/// Counts a request rejected before it reached the service, and turns tonic's
/// `OutOfRange` for an oversized message into `ResourceExhausted` (what OTLP exporters
/// treat as not retryable).
fn classify_grpc_rejection(
    metrics: &OtlpMetrics,
    response: &mut http::Response<tonic::body::Body>,
) {
    let Some(code) = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // Before the service runs, tonic fails only on what the client sent: a bad frame or
    // compression (`Internal`), an undecodable message (our codec: `InvalidArgument`), a
    // message over the limit (`OutOfRange`), an unsupported encoding (`Unimplemented`).
    let (reason, answer) = match tonic::Code::from_i32(code) {
        tonic::Code::InvalidArgument | tonic::Code::Internal => {
            ("malformed", tonic::Code::InvalidArgument)
        }
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            ("too_large", tonic::Code::ResourceExhausted)
        }
        tonic::Code::Unimplemented => ("bad_encoding", tonic::Code::Unimplemented),
        _ => return,
    };
    metrics.request_rejected("grpc", reason);
    warn!(reason, "OTLP/gRPC export request rejected");
    if answer as i32 != code {
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from(answer as i32));
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
            let mut grpc = tonic::server::Grpc::new(OtlpCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .apply_max_message_size_config(Some(limit), None);
            let mut response = grpc.unary(ExportSvc(receiver), req).await;
            classify_grpc_rejection(&metrics, &mut response);
            Ok(response)
        })
    }
}

// ---- HTTP -------------------------------------------------------------------------

/// `google.rpc.Status`, the body of OTLP/HTTP error responses.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn encoded(encoding: Encoding, status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

/// The `google.rpc.Status` code of an HTTP error status (the OTLP/HTTP mapping).
fn rpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::NOT_FOUND => tonic::Code::NotFound,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        s if s.is_server_error() => tonic::Code::Internal,
        _ => tonic::Code::InvalidArgument,
    }
}

/// An error answer in the request's encoding (JSON when it is unknown), with the
/// `google.rpc.Status` code that goes with `status`.
fn http_error(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let code = rpc_code(status);
    let body = match encoding {
        Encoding::Protobuf => RpcStatus {
            code: code as i32,
            message,
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    encoded(encoding, status, body)
}

async fn http_not_found() -> Response {
    http_error(
        Encoding::Json,
        StatusCode::NOT_FOUND,
        "not found: OTLP/HTTP traces are accepted at POST /v1/traces".into(),
    )
}

/// Reads at most `limit` bytes of the body; `None` when it is longer.
async fn read_limited(body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(Some(b)),
        Err(e) => {
            // `to_bytes` reports an exceeded limit as a `LengthLimitError` source.
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<http_body_util::LengthLimitError>() {
                    return Ok(None);
                }
                source = s.source();
            }
            Err(e)
        }
    }
}

enum Gunzip {
    Done(Vec<u8>),
    TooLarge,
    Corrupt(std::io::Error),
}

fn gunzip(bytes: &[u8], limit: usize) -> Gunzip {
    let mut out = Vec::new();
    let reader = flate2::read::MultiGzDecoder::new(bytes);
    match reader.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Gunzip::TooLarge,
        Ok(_) => Gunzip::Done(out),
        Err(e) => Gunzip::Corrupt(e),
    }
}

async fn http_export(
    State(receiver): State<OtlpReceiver>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let metrics = &receiver.inner.metrics;
    let limit = receiver.inner.max_message_bytes;
    let reject = |encoding, status, reason: &'static str, message: String| {
        metrics.request_rejected("http", reason);
        warn!(reason, %message, "OTLP/HTTP export request rejected");
        http_error(encoding, status, message)
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return reject(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {content_type:?} is not supported: send application/x-protobuf or application/json"
                ),
            );
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            return reject(
                encoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_encoding",
                format!("Content-Encoding {other:?} is not supported: send gzip or no encoding"),
            );
        }
    };
    let too_large = |what: &str| {
        reject(
            encoding,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{what} is larger than the limit of {limit} bytes (collector.max_message_bytes)"
            ),
        )
    };
    let raw = match read_limited(body, limit).await {
        Ok(Some(b)) => b,
        Ok(None) => return too_large("the request body"),
        Err(e) => {
            return reject(
                encoding,
                StatusCode::BAD_REQUEST,
                "read_error",
                format!("reading the request body failed: {e}"),
            );
        }
    };
    let raw = if gzip {
        match gunzip(&raw, limit) {
            Gunzip::Done(v) => Bytes::from(v),
            Gunzip::TooLarge => return too_large("the decompressed request body"),
            Gunzip::Corrupt(e) => {
                return reject(
                    encoding,
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    format!("the gzip body does not decompress: {e}"),
                );
            }
        }
    } else {
        raw
    };
    let request = match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(raw).map_err(|e| e.to_string()),
        Encoding::Json => {
            serde_json::from_slice::<ExportTraceServiceRequest>(&raw).map_err(|e| e.to_string())
        }
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            return reject(
                encoding,
                StatusCode::BAD_REQUEST,
                "malformed",
                format!(
                    "the body is not an OTLP ExportTraceServiceRequest ({}): {e}",
                    encoding.content_type()
                ),
            );
        }
    };
    match receiver.export(request).await {
        Ok(done) => {
            let response = done.response();
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => match serde_json::to_vec(&response) {
                    Ok(b) => b,
                    Err(e) => {
                        return http_error(
                            encoding,
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("encoding the response failed: {e}"),
                        );
                    }
                },
            };
            encoded(encoding, StatusCode::OK, body)
        }
        Err(ShuttingDown) => http_error(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            "meshscope is shutting down".into(),
        ),
    }
}
