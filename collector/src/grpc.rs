//! The shared gRPC listener: Envoy's access-log service and OTLP's trace service on one
//! port, with connection ageing (GOAWAY) so long-lived ALS streams spread over collectors,
//! and the connection bounds of [`crate::connections`].

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Result;
use crate::als::{AddressBook, AlsServer};
use crate::config::CollectorConfig;
use crate::connections::limited;
use crate::metrics::CollectorMetrics;
use crate::otlp::OtlpReceiver;

/// What the gRPC server needs from the rest of the process.
pub struct Deps {
    pub config: CollectorConfig,
    pub calls: proto::channel::CallSender,
    pub metrics: CollectorMetrics,
    /// Turns true when open streams should end (they end with OK; Envoy reconnects).
    pub stop_streams: watch::Receiver<bool>,
    /// The OTLP receiver, shared with the OTLP/HTTP listener.
    pub otlp: OtlpReceiver,
    /// The decoding budget every listener shares.
    pub budget: crate::budget::DecodeBudget,
    /// TLS for the listener, when configured.
    pub tls: Option<listen::io::Secured>,
    /// The ingest tokens (open when no file is set).
    pub auth: crate::auth::IngestAuth,
}

/// Serves the gRPC listener until `shutdown` completes.
pub async fn serve_grpc(
    listener: TcpListener,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let book = Arc::new(AddressBook::new(
        &deps.config.addresses,
        deps.metrics.clone(),
    ));
    let metrics = deps.metrics.clone();
    let als = AlsServer::new(
        deps.calls,
        book,
        deps.metrics,
        deps.stop_streams,
        deps.config.max_message_bytes,
        deps.budget,
        deps.config.max_als_streams,
    );
    let c = &deps.config;
    let keepalive = (!c.keepalive_interval.is_zero()).then_some(c.keepalive_interval);
    let tls = deps.tls.clone();
    let mut server = tonic::transport::Server::builder()
        .max_concurrent_streams(c.max_concurrent_streams)
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(c.keepalive_timeout))
        // Bounds the streams a client may open and reset at once (rapid reset).
        .http2_max_pending_accept_reset_streams(Some(64));
    if !deps.config.max_connection_age.is_zero() {
        server = server
            .max_connection_age(deps.config.max_connection_age)
            .max_connection_age_grace(deps.config.max_connection_age_grace);
    }
    server
        .layer(tonic::service::InterceptorLayer::new(deps.auth.clone()))
        .add_service(als)
        .add_service(deps.otlp.grpc_service())
        .serve_with_incoming_shutdown(
            limited(
                tonic::transport::server::TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(keepalive),
                c.max_connections,
                c.handshake_timeout,
                metrics,
                tls,
            ),
            shutdown,
        )
        .await?;
    Ok(())
}
