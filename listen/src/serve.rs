//! The accept loop of one HTTP listener: each accepted socket takes a slot among
//! `http.max_connections` (none free: the socket is closed at once and counted) and is
//! served by hyper's HTTP/1.1 connection with a header-read timeout; each request runs
//! within `http.request_timeout`. With TLS, the handshake comes first and must end within
//! the header-read timeout; a failed one (a plain-text client, a refused client
//! certificate) is counted as an auth failure with reason `tls`. At shutdown the loop
//! stops accepting, open connections finish their request in flight and close.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;
use tracing::{debug, warn};

use crate::config::HttpConfig;
use crate::io::{Secured, accept};
use crate::metrics::HttpMetrics;

/// The answer to a request past `http.request_timeout`.
fn timed_out(limit: Duration) -> Response {
    (
        StatusCode::REQUEST_TIMEOUT,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"error\":\"the request took longer than {limit:?} (http.request_timeout)\"}}"),
    )
        .into_response()
}

/// Serves `router` on `listener` (named `name` in logs and metrics) within `config` until
/// `shutdown` completes, then waits for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    router: Router,
    config: &HttpConfig,
    metrics: HttpMetrics,
    tls: Option<Secured>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let open = metrics.open(name);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let limit = config.request_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    warn!(listener = name, error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.refused(name);
            debug!(listener = name, %peer, "connection refused: http.max_connections are open");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, metrics) = (router.clone(), metrics.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let metrics = metrics.clone();
            async move {
                match tokio::time::timeout(limit, router.call(req.map(Body::new))).await {
                    Ok(Ok(response)) => Ok::<_, Infallible>(response),
                    Ok(Err(never)) => match never {},
                    Err(_) => {
                        metrics.timed_out(name);
                        Ok(timed_out(limit))
                    }
                }
            }
        });
        let (open, watcher, builder, tls) = (
            open.clone(),
            graceful.watcher(),
            builder.clone(),
            tls.clone(),
        );
        let handshake = config.header_read_timeout;
        open.inc();
        tokio::spawn(async move {
            match accept(tls.as_ref(), name, stream, handshake).await {
                Ok(io) => {
                    let connection =
                        watcher.watch(builder.serve_connection(TokioIo::new(io), service));
                    if let Err(e) = connection.await {
                        debug!(listener = name, %peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                Err(e) => debug!(listener = name, %peer, error = %e, "TLS handshake failed"),
            }
            open.dec();
            drop(slot);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn start(config: HttpConfig) -> (std::net::SocketAddr, HttpMetrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = Router::new().route("/", get(|| async { "ok" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        );
        let metrics = HttpMetrics::default();
        let m = metrics.clone();
        tokio::spawn(async move {
            serve(
                listener,
                "test",
                router,
                &config,
                m,
                None,
                std::future::pending(),
            )
            .await
        });
        (addr, metrics)
    }

    /// Reads until the server closes the connection; what it sent.
    async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_cut_off() {
        let config = HttpConfig {
            header_read_timeout: Duration::from_millis(200),
            ..HttpConfig::default()
        };
        let (addr, _) = start(config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let closed = tokio::time::timeout(Duration::from_secs(30), until_closed(&mut s)).await;
        assert!(closed.is_ok(), "the connection stayed open");
        // A silent connection is cut off the same way.
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let closed = tokio::time::timeout(Duration::from_secs(30), until_closed(&mut s)).await;
        assert!(closed.is_ok(), "the silent connection stayed open");
    }

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_counted() {
        let config = HttpConfig {
            max_connections: 2,
            ..HttpConfig::default()
        };
        let (addr, metrics) = start(config).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.expect("read");
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            held.push(s);
        }
        let mut third = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(until_closed(&mut third).await, "");
        let refused = metrics
            .refused
            .get_or_create(&crate::metrics::ListenerLabel { listener: "test" })
            .get();
        assert_eq!(refused, 1);
        // A slot frees when a connection closes.
        // The server reads the close a moment later: until then it refuses.
        drop(held.pop());
        let mut tries = 0;
        let answer = loop {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = s
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let answer = until_closed(&mut s).await;
            tries += 1;
            if !answer.is_empty() || tries == 200 {
                break answer;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    }

    #[tokio::test]
    async fn a_request_past_its_timeout_is_answered_408() {
        let config = HttpConfig {
            request_timeout: Duration::from_millis(100),
            ..HttpConfig::default()
        };
        let (addr, _) = start(config).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("http.request_timeout"), "{answer}");
    }
}
