//! The shared gRPC listener: Envoy's access-log service and OTLP's trace service on one
//! port, with connection ageing (GOAWAY) so long-lived ALS streams spread over collectors.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::Result;
use crate::als::{AddressBook, AlsServer};
use crate::config::CollectorConfig;
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
}

/// Serves the gRPC listener until `shutdown` completes.
pub async fn serve_grpc(
    listener: TcpListener,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let book = Arc::new(AddressBook::with_static(&deps.config.addresses));
    let als = AlsServer::new(
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
