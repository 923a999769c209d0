//! The gRPC listener's connection bounds. Each accepted socket takes a slot among
//! `collector.max_connections` (none free: it is closed at once and counted), and must
//! send the HTTP/2 connection preface within `collector.handshake_timeout` (a client that
//! connects and stays silent is closed and counted). With TLS the handshake comes first,
//! within the same timeout, and the preface is awaited inside TLS; a failed handshake is
//! counted in `meshscope_auth_failures_total{listener="grpc", reason="tls"}`. Each
//! handshake runs in a task of its own, holding a connection slot: stalled handshakes
//! cost slots for at most the timeout, never the accepting of others. Open streams are
//! bounded per connection by HTTP/2 `MAX_CONCURRENT_STREAMS`, dead peers by keepalive
//! pings.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use listen::io::{MaybeTls, Secured, accept};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::debug;

use crate::metrics::CollectorMetrics;

/// The HTTP/2 client preface (`PRI * HTTP/2.0…`) is 24 bytes.
const PREFACE_BYTES: usize = 24;

/// An accepted connection holding its slot until it closes.
pub struct Limited {
    io: MaybeTls<TcpStream>,
    _slot: OwnedSemaphorePermit,
    /// Until the preface has arrived: when it must have.
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
    metrics: CollectorMetrics,
    open: Gauge,
}

impl Limited {
    fn new(
        io: MaybeTls<TcpStream>,
        slot: OwnedSemaphorePermit,
        timeout: Duration,
        metrics: CollectorMetrics,
    ) -> Limited {
        let open = metrics.grpc_connections_open.clone();
        open.inc();
        Limited {
            io,
            _slot: slot,
            handshake: Some(Box::pin(tokio::time::sleep(timeout))),
            received: 0,
            metrics,
            open,
        }
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.get_ref().connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(deadline) = this.handshake.as_mut() else {
            return read;
        };
        if let Poll::Ready(Ok(())) = read {
            this.received += buf.filled().len() - before;
            if this.received >= PREFACE_BYTES {
                this.handshake = None;
            }
            return read;
        }
        if read.is_pending() && deadline.as_mut().poll(cx).is_ready() {
            this.handshake = None;
            this.metrics.grpc_connection_refused("handshake_timeout");
            debug!("gRPC connection closed: no HTTP/2 preface within collector.handshake_timeout");
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within collector.handshake_timeout",
            )));
        }
        read
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// `accepted` with each connection bounded as the module says, through TLS when `tls`
/// is set. A task takes the connections from `accepted` and runs each handshake in a task
/// of its own, so slow handshakes never hold up accepting (they hold a connection slot
/// each, within the timeout).
pub fn limited(
    accepted: impl Stream<Item = io::Result<TcpStream>> + Send + 'static,
    max_connections: usize,
    handshake_timeout: Duration,
    metrics: CollectorMetrics,
    tls: Option<Secured>,
) -> impl Stream<Item = io::Result<Limited>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(max_connections));
        let mut accepted = std::pin::pin!(accepted);
        loop {
            // Ends when the server stops taking connections (it drops the receiver).
            let conn = tokio::select! {
                conn = accepted.next() => conn,
                _ = tx.closed() => return,
            };
            let io = match conn {
                None => return,
                Some(Err(e)) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Some(Ok(io)) => io,
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics.grpc_connection_refused("max_connections");
                debug!("gRPC connection refused: collector.max_connections are open");
                continue;
            };
            let (tx, tls, metrics) = (tx.clone(), tls.clone(), metrics.clone());
            tokio::spawn(async move {
                match accept(tls.as_ref(), "grpc", io, handshake_timeout).await {
                    Ok(io) => {
                        let conn = Limited::new(io, slot, handshake_timeout, metrics);
                        // The server stopped: the connection closes.
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(e) => debug!(error = %e, "gRPC connection closed: TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
