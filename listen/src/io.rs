//! A connection that is plain text or TLS, one type for the servers above it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::security_metrics::SecurityMetrics;
use crate::tls::ServerTls;

/// A listener's TLS, and where its failed handshakes are counted.
#[derive(Clone, Debug)]
pub struct Secured {
    /// The server configuration, reloaded from its files.
    pub tls: ServerTls,
    /// Where failed handshakes are counted.
    pub metrics: SecurityMetrics,
}

/// A plain or a TLS connection over `T`.
pub enum MaybeTls<T> {
    /// Plain text.
    Plain(T),
    /// After a TLS handshake.
    Tls(Box<tokio_rustls::server::TlsStream<T>>),
}

impl<T> MaybeTls<T> {
    /// The connection under TLS, if any.
    pub fn get_ref(&self) -> &T {
        match self {
            MaybeTls::Plain(io) => io,
            MaybeTls::Tls(tls) => tls.get_ref().0,
        }
    }
}

/// `io` as `listener` will serve it: through a TLS handshake when `secured` is set, which
/// must end within `timeout`. A failed one (a client that stalls it, speaks plain text to
/// a TLS port or has a refused certificate) is an error, counted as an auth failure with
/// reason `tls`.
pub async fn accept<T>(
    secured: Option<&Secured>,
    listener: &'static str,
    io: T,
    timeout: Duration,
) -> io::Result<MaybeTls<T>>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Some(secured) = secured else {
        return Ok(MaybeTls::Plain(io));
    };
    let handshake = match tokio::time::timeout(timeout, secured.tls.acceptor().accept(io)).await {
        Ok(handshake) => handshake,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake not finished in time",
        )),
    };
    handshake
        .map(|stream| MaybeTls::Tls(Box::new(stream)))
        .inspect_err(|_| secured.metrics.failed(listener, "tls"))
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_read(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write(cx, buf),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(io) => io.is_write_vectored(),
            MaybeTls::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_flush(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(io) => Pin::new(io).poll_shutdown(cx),
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
