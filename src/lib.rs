//! The `meshscope` process: configuration, wiring of collector → aggregator → store → API,
//! and orderly shutdown. `main.rs` is only the command line around this (its `demo` and
//! `bench` traffic comes from the `testkit` crate).

pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

pub use crate::config::Config;
pub use aggregator::store::Backend;

/// A running meshscope: its bound addresses and the means to stop it.
pub struct App {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    /// Flushes pending rollups on demand.
    pub aggregator: aggregator::Handle,
    stop: watch::Sender<bool>,
    grpc: JoinHandle<Result<(), collector::Error>>,
    http: JoinHandle<std::io::Result<()>>,
    otlp_http: JoinHandle<std::io::Result<()>>,
    otlp_expiry: JoinHandle<()>,
    otlp: collector::otlp::OtlpReceiver,
    aggregator_task: JoinHandle<aggregator::Result<()>>,
    grace: Duration,
    /// The runtime the HTTP API (its reads) runs on; `None` once shut down.
    reads: Option<tokio::runtime::Runtime>,
}

/// The HTTP API's own runtime: its queries' CPU-bound work and blocking file reads run on
/// its workers and blocking pool, so a flood of heavy reads cannot delay ingestion,
/// the aggregator or its flushes in the main runtime's queues (the OS still shares the
/// cores between both).
fn reads_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("meshscope-api")
        .enable_all()
        .build()
        .context("starting the HTTP API's runtime")
}

/// What the HTTP API's routes need: `/healthz` and the console's page and files (which
/// hold no data) nothing, the admin endpoints an admin token, everything else (JSON API,
/// Prometheus API, `/metrics`) a read token.
fn api_need(path: &str) -> Option<listen::tokens::Need> {
    use listen::tokens::Need;
    if path == "/healthz" || path == "/" || path.starts_with("/ui/") {
        None
    } else if path.starts_with("/api/v1/admin/") {
        Some(Need::Admin)
    } else {
        Some(Need::Read)
    }
}

/// Says once, at start, in one WARN line, which listeners on a non-loopback address serve
/// plain text or take anyone's requests.
fn warn_if_open(listeners: &[(&str, SocketAddr, bool, bool)]) {
    let open: Vec<String> = listeners
        .iter()
        .filter(|(_, addr, tls, tokens)| !(addr.ip().is_loopback() || *tls && *tokens))
        .map(|(name, addr, tls, tokens)| {
            let what = match (tls, tokens) {
                (false, false) => "plain text, no token",
                (false, true) => "plain text",
                _ => "no token",
            };
            format!("{name} {addr} ({what})")
        })
        .collect();
    if !open.is_empty() {
        warn!(
            listeners = open.join(", "),
            "listeners on non-loopback addresses are not secured; see README \"Securing meshscope\" (--tls-cert, --tls-key, --ingest-tokens-file, --read-tokens-file)"
        );
    }
}

/// The console's address as a browser on this machine reaches it: an unspecified bind
/// address (`0.0.0.0`, `[::]`) is shown as `localhost`.
fn console_url(http_addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if http_addr.ip().is_unspecified() || http_addr.ip().is_loopback() {
        format!("{scheme}://localhost:{}/", http_addr.port())
    } else {
        format!("{scheme}://{http_addr}/")
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids; this does not.
        if let Some(reads) = self.reads.take() {
            reads.shutdown_background();
        }
    }
}

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// Waits for a server task to end until `deadline`, logging how it ended; past the
/// deadline its open connections are cut when `abort`, else it is left to finish.
async fn stop_server<E: std::fmt::Display>(
    name: &str,
    task: &mut JoinHandle<Result<(), E>>,
    deadline: tokio::time::Instant,
    abort: bool,
) {
    match tokio::time::timeout_at(deadline, &mut *task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!(error = %e, "{name} ended with an error"),
        Ok(Err(e)) => warn!(error = %e, "{name} task failed"),
        Err(_) if abort => {
            warn!("{name} still had open connections after the grace period; closing them");
            task.abort();
        }
        Err(_) => warn!("{name} did not stop within the grace period"),
    }
}

impl App {
    /// Binds every listener and starts every task.
    pub async fn start(config: Config) -> anyhow::Result<App> {
        listen::tls::install_default_provider();
        let grpc_listener = bind("gRPC", &config.server.grpc_addr).await?;
        let http_listener = bind("HTTP API", &config.server.http_addr).await?;
        let otlp_listener = bind("OTLP/HTTP", &config.server.otlp_http_addr).await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_addr = http_listener.local_addr()?;
        let otlp_http_addr = otlp_listener.local_addr()?;

        let mut registry = Registry::with_prefix("meshscope");
        let store = aggregator::store::open(&config.store, &config.clickhouse, &mut registry)
            .await
            .with_context(|| match config.store.backend {
                Backend::Parquet => {
                    format!("opening the store in {}", config.store.data_dir.display())
                }
                Backend::Clickhouse => format!(
                    "opening the ClickHouse store at {} (database {})",
                    config.clickhouse.url, config.clickhouse.database
                ),
            })?;

        let collector_metrics = collector::CollectorMetrics::register(&mut registry);
        let otlp_metrics = collector::otlp::OtlpMetrics::register(&mut registry);
        let (calls_tx, calls_rx) = aggregator::channel(&config.aggregator);
        let retention = config.store.retention();
        let budget = collector::DecodeBudget::new(
            config.collector.max_decoding_bytes,
            config.collector.max_items_per_message,
            collector_metrics.decoding_bytes.clone(),
        );
        let otlp = collector::otlp::OtlpReceiver::new(
            &config.otlp,
            config.collector.max_message_bytes,
            calls_tx.clone(),
            collector_metrics.clone(),
            otlp_metrics,
            budget.clone(),
        );
        let limits = Arc::new(ui_api::Limits::new(&config.api, &mut registry));
        let admin = Arc::new(ui_api::Admin::new(&config.api, &mut registry));
        let (handle, aggregator_task) = aggregator::spawn(
            config.aggregator.clone(),
            store.clone(),
            calls_rx,
            retention,
            &mut registry,
        );
        let http_metrics = listen::HttpMetrics::register(&mut registry);
        let security = listen::SecurityMetrics::register(&mut registry);
        let registry = Arc::new(registry);
        let tokens = listen::Tokens::load(&config.auth).context("reading the token files")?;
        tokens.watch(config.auth.reload_interval);
        let secured = |listener: listen::Listener, alpn: &[&[u8]]| -> anyhow::Result<_> {
            let Some(files) = config.tls.files(listener) else {
                return Ok(None);
            };
            let tls = listen::ServerTls::load(listener.as_str(), files, alpn)
                .with_context(|| format!("TLS of the {} listener", listener.as_str()))?;
            tls.watch(config.tls.reload_interval, security.clone());
            Ok(Some(listen::io::Secured {
                tls,
                metrics: security.clone(),
            }))
        };
        let grpc_tls = secured(listen::Listener::Grpc, &[b"h2"])?;
        let otlp_http_tls = secured(listen::Listener::OtlpHttp, &[b"http/1.1"])?;
        let api_tls = secured(listen::Listener::Api, &[b"http/1.1"])?;
        let grpc_serves_tls = grpc_tls.is_some();
        warn_if_open(&[
            (
                "gRPC",
                grpc_addr,
                grpc_tls.is_some(),
                tokens.guards_ingest(),
            ),
            (
                "OTLP/HTTP",
                otlp_http_addr,
                otlp_http_tls.is_some(),
                tokens.guards_ingest(),
            ),
            (
                "HTTP API",
                http_addr,
                api_tls.is_some(),
                tokens.guards_reads(),
            ),
        ]);

        let (stop, stopped) = watch::channel(false);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let grpc = tokio::spawn(collector::serve_grpc(
            grpc_listener,
            collector::Deps {
                config: config.collector.clone(),
                calls: calls_tx,
                metrics: collector_metrics,
                stop_streams: stopped.clone(),
                otlp: otlp.clone(),
                budget,
                tls: grpc_tls,
                auth: collector::auth::IngestAuth {
                    tokens: tokens.clone(),
                    metrics: security.clone(),
                },
            },
            wait(stopped.clone()),
        ));
        let otlp_expiry = tokio::spawn(otlp.clone().run_expiry(stopped.clone()));
        let before_flush: ui_api::FlushHook = {
            let otlp = otlp.clone();
            Arc::new(move || {
                let otlp = otlp.clone();
                Box::pin(async move {
                    // An error means the aggregator stopped; the flush reports that.
                    let _ = otlp.flush().await;
                })
            })
        };
        let api_auth = listen::auth::HttpAuth {
            tokens: tokens.clone(),
            listener: listen::Listener::Api,
            metrics: security.clone(),
            need: api_need,
            shape: listen::auth::Shape::Api,
        };
        let listener_info = |addr: SocketAddr, tls: bool| ui_api::ListenerInfo {
            address: addr.to_string(),
            tls,
        };
        let info = ui_api::ServerInfo {
            version: env!("CARGO_PKG_VERSION"),
            store: config.store.backend.as_str(),
            grpc: listener_info(grpc_addr, grpc_serves_tls),
            otlp_http: listener_info(otlp_http_addr, otlp_http_tls.is_some()),
            api: listener_info(http_addr, api_tls.is_some()),
            ingest_tokens: tokens.guards_ingest(),
            read_tokens: tokens.guards_reads(),
            grafana_url: config
                .api
                .grafana_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
        };
        let console = console_url(http_addr, api_tls.is_some());
        let api = ui_api::router(ui_api::ApiState {
            store,
            registry,
            aggregator: Some(handle.clone()),
            before_flush: Some(before_flush),
            dedup: Arc::new(config.dedup.clone()),
            limits,
            admin,
            info: Arc::new(info),
        });
        let api = listen::auth::guard(api, api_auth);
        let otlp_router = listen::auth::guard(
            otlp.http_router(),
            listen::auth::HttpAuth {
                tokens: tokens.clone(),
                listener: listen::Listener::OtlpHttp,
                metrics: security.clone(),
                need: |_| Some(listen::tokens::Need::Ingest),
                shape: listen::auth::Shape::Otlp,
            },
        );
        // Each HTTP listener is registered again with the reactor of the runtime that
        // serves it, inside that runtime.
        let serve_http = |listener: TcpListener, name, router, tls| -> anyhow::Result<_> {
            let (shutdown, http, metrics) = (
                wait(stopped.clone()),
                config.http.clone(),
                http_metrics.clone(),
            );
            let listener = listener.into_std()?;
            Ok(async move {
                let listener = TcpListener::from_std(listener)?;
                listen::serve(listener, name, router, &http, metrics, tls, shutdown).await
            })
        };
        let reads = reads_runtime()?;
        let http = reads.spawn(serve_http(http_listener, "api", api, api_tls)?);
        let otlp_http = tokio::spawn(serve_http(
            otlp_listener,
            "otlp_http",
            otlp_router,
            otlp_http_tls,
        )?);
        info!(grpc = %grpc_addr, http = %http_addr, otlp_http = %otlp_http_addr,
            store = config.store.backend.as_str(),
            data_dir = %config.store.data_dir.display(),
            "meshscope is serving; open the console at {console}");
        Ok(App {
            grpc_addr,
            http_addr,
            otlp_http_addr,
            aggregator: handle,
            stop,
            grpc,
            http,
            otlp_http,
            otlp_expiry,
            otlp,
            aggregator_task,
            grace: config.server.shutdown_grace,
            reads: Some(reads),
        })
    }

    /// Makes everything received so far queryable: spans still waiting for their pair
    /// are recorded unpaired, then the aggregator flushes.
    pub async fn flush(&self) -> anyhow::Result<()> {
        if self.otlp.flush().await.is_err() {
            anyhow::bail!("the aggregator has stopped");
        }
        self.aggregator.flush().await.context("flush")?;
        Ok(())
    }

    /// Stops accepting, ends open streams, records spans still waiting for their pair,
    /// rolls up and flushes everything received, and waits for every task. Errors mean
    /// data may not have been written.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        info!("shutting down: ending streams and flushing");
        let _ = self.stop.send(true);
        // Both receivers get the same grace period, together; what is still open after it
        // is cut, so nothing adds spans after the final pairing flush below.
        let deadline = tokio::time::Instant::now() + self.grace;
        stop_server("gRPC server", &mut self.grpc, deadline, true).await;
        stop_server("OTLP/HTTP server", &mut self.otlp_http, deadline, true).await;
        let _ = (&mut self.otlp_expiry).await;
        if self.otlp.flush().await.is_err() {
            warn!("the aggregator stopped before spans waiting for their pair were recorded");
        }
        let flushed = self.aggregator.shutdown().await;
        match (&mut self.aggregator_task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error!(error = %e, "aggregator ended with an error"),
            Err(e) => error!(error = %e, "aggregator task failed"),
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        stop_server("HTTP API server", &mut self.http, deadline, false).await;
        if let Some(reads) = self.reads.take() {
            reads.shutdown_background();
        }
        flushed.context("final flush")?;
        info!("shutdown complete");
        Ok(())
    }
}
