//! Receivers: gRPC and HTTP servers that turn telemetry into [`proto::Call`] batches.
//!
//! In: Envoy access-log streams (`envoy.service.accesslog.v3.AccessLogService`) and OTLP
//! trace exports (`opentelemetry.proto.collector.trace.v1.TraceService` on the same gRPC
//! listener, `POST /v1/traces` on the OTLP/HTTP one). Out: `Vec<Call>` batches on a
//! bounded channel to the aggregator. A full channel slows the senders down
//! (backpressure); a closed one answers `UNAVAILABLE`.

pub mod als;
pub mod flatnode;
pub mod metrics;
pub mod naming;
pub mod otlp;

use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

pub use crate::metrics::CollectorMetrics;

/// Hands a batch of calls to the aggregator and counts it: emitted, or dropped as
/// `aggregator_stopped` when the aggregator has gone (shutdown).
async fn deliver(
    calls: &proto::channel::CallSender,
    metrics: &CollectorMetrics,
    batch: proto::CallBatch,
) -> std::result::Result<(), proto::channel::Closed> {
    let n = batch.len() as u64;
    calls.send(batch).await.inspect_err(|_| {
        metrics.calls_dropped("aggregator_stopped", n);
    })?;
    metrics.calls_emitted.inc_by(n);
    Ok(())
}

/// Errors of the receivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Collector settings (`[collector]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Largest accepted gRPC message, in bytes; larger ones are rejected and counted.
    pub max_message_bytes: usize,
    /// Pod or VM addresses of workloads without a proxy: `"10.0.0.7" = "legacy-db.data"`
    /// (or `"service/instance"`). Names callers that would otherwise be `unknown`.
    pub addresses: std::collections::BTreeMap<String, String>,
    /// gRPC connections older than this are asked to go away (HTTP/2 GOAWAY) so Envoy
    /// reconnects, through the load balancer, possibly to another collector: this is what
    /// spreads long-lived ALS streams over collectors added later. `0s` (the default)
    /// keeps connections for as long as the client does.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: std::time::Duration,
    /// After the GOAWAY, how long open streams get before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: std::time::Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_message_bytes: 4 * 1024 * 1024,
            addresses: Default::default(),
            max_connection_age: std::time::Duration::ZERO,
            max_connection_age_grace: std::time::Duration::from_secs(30),
        }
    }
}

/// What the gRPC server needs from the rest of the process.
pub struct Deps {
    pub config: CollectorConfig,
    pub calls: proto::channel::CallSender,
    pub metrics: CollectorMetrics,
    /// Turns true when open streams should end (they end with OK; Envoy reconnects).
    pub stop_streams: watch::Receiver<bool>,
    /// The OTLP receiver, shared with the OTLP/HTTP listener.
    pub otlp: otlp::OtlpReceiver,
}

/// Serves the gRPC listener until `shutdown` completes.
pub async fn serve_grpc(
    listener: TcpListener,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let book = Arc::new(als::AddressBook::with_static(&deps.config.addresses));
    let als = als::AlsServer::new(
        deps.calls,
        book,
        deps.metrics,
        deps.stop_streams,
        deps.config.max_message_bytes,
    );
    let mut server = tonic::transport::Server::builder();
    if !deps.config.max_connection_age.is_zero() {
        server = server
            .max_connection_age(deps.config.max_connection_age)
            .max_connection_age_grace(deps.config.max_connection_age_grace);
    }
    server
        .add_service(als)
        .add_service(deps.otlp.grpc_service())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
