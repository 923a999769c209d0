//! Rolls calls up into exact per-minute metrics and keeps them in a [`Store`].
//!
//! In: batches of [`proto::Call`] from a bounded channel (the collector's backpressure).
//! Out: partial rows written to the store every flush interval (Parquet files by default),
//! and the [`query`] functions the API reads them back with. A [`Handle`] asks the running
//! aggregator to flush now or to drain and stop.

pub mod histogram;
pub mod metrics;
pub mod query;
pub mod rollup;
pub mod schema;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram as PromHistogram, exponential_buckets};
use prometheus_client::registry::Registry;
use proto::channel::{CallReceiver, CallSender, Received};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::rollup::{RollupSettings, Rollups, RowBatch};
use crate::store::Store;

/// Errors of the aggregator and its stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store i/o at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("manifest {path}: {source}")]
    Manifest {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
    #[error("stored data does not match the schema: {0}")]
    Schema(String),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the aggregator has stopped")]
    Stopped,
    #[error("data dir {0} is in use by another meshscope process")]
    Locked(std::path::PathBuf),
    #[error("ClickHouse: {message}")]
    ClickHouse { code: Option<u32>, message: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("write backlog full: {0}")]
    Backlog(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn default_flush_interval() -> Duration {
    Duration::from_secs(5)
}

/// Aggregator settings (`[aggregator]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Apdex threshold T in milliseconds.
    pub apdex_threshold_ms: u64,
    /// Distinct endpoints kept per service; the rest count under `(overflow)`.
    pub max_endpoints_per_service: usize,
    /// Distinct service names (including virtual nodes such as external hosts) kept; the
    /// rest count under the node `(overflow)`.
    pub max_services: usize,
    /// How often partial rows are written to the store (data is queryable after a flush).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Calls starting further than this in the future are dropped and counted.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// How often compaction and retention run.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Capacity of the collector → aggregator channel, in batches.
    pub channel_capacity: usize,
    /// Calls in flight between collector and aggregator; senders wait beyond it.
    pub max_in_flight_calls: u32,
    /// Rows kept in memory while the store refuses writes; past this, a failed flush's
    /// rows are dropped, counted and logged at ERROR.
    pub max_pending_rows: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            apdex_threshold_ms: 500,
            max_endpoints_per_service: 1000,
            max_services: 10_000,
            flush_interval: default_flush_interval(),
            max_future: Duration::from_secs(300),
            maintenance_interval: Duration::from_secs(60),
            channel_capacity: 256,
            max_in_flight_calls: 500_000,
            max_pending_rows: 2_000_000,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The aggregator's self-metrics.
#[derive(Clone, Debug)]
struct SelfMetrics {
    calls: Counter,
    dropped: Family<ReasonLabel, Counter>,
    endpoints_overflowed: Counter,
    services_overflowed: Counter,
    rows_written: Counter,
    flush_seconds: PromHistogram,
    flush_failures: Counter,
    pending_rows: Gauge,
}

impl SelfMetrics {
    fn register(registry: &mut Registry) -> SelfMetrics {
        let m = SelfMetrics {
            calls: Counter::default(),
            dropped: Family::default(),
            endpoints_overflowed: Counter::default(),
            services_overflowed: Counter::default(),
            rows_written: Counter::default(),
            flush_seconds: PromHistogram::new(exponential_buckets(0.001, 2.0, 14)),
            flush_failures: Counter::default(),
            pending_rows: Gauge::default(),
        };
        registry.register(
            "aggregated_calls",
            "Calls rolled up into metrics",
            m.calls.clone(),
        );
        registry.register(
            "dropped_calls",
            "Calls dropped by the aggregator, by reason (future: start time too far ahead; expired: older than retention)",
            m.dropped.clone(),
        );
        registry.register(
            "endpoints_overflowed",
            "Calls recorded under the (overflow) endpoint because the service hit its endpoint cap",
            m.endpoints_overflowed.clone(),
        );
        registry.register(
            "services_overflowed",
            "Calls recorded under the (overflow) node because the service cap was reached",
            m.services_overflowed.clone(),
        );
        registry.register(
            "rows_written",
            "Partial rollup rows written to the store",
            m.rows_written.clone(),
        );
        registry.register(
            "flush_duration_seconds",
            "Time to write one flush to the store",
            m.flush_seconds.clone(),
        );
        registry.register(
            "flush_failures",
            "Flushes the store refused (rows are kept and retried)",
            m.flush_failures.clone(),
        );
        registry.register(
            "pending_rows",
            "Rollup rows held in memory awaiting the next flush",
            m.pending_rows.clone(),
        );
        m
    }
}

enum Command {
    Flush(oneshot::Sender<Result<()>>),
    Maintain(oneshot::Sender<Result<()>>),
    Shutdown(oneshot::Sender<Result<()>>),
}

/// Controls a running aggregator. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    /// Rolls up every batch already in the channel, then writes all rows to the store.
    /// Returns once they are queryable.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Runs store maintenance (compaction, retention) now and waits for it.
    pub async fn maintain(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Maintain(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Drains the channel, flushes, and stops the aggregator.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(tx))
            .await
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// The bounded channel receivers send call batches into.
pub fn channel(config: &AggregatorConfig) -> (CallSender, CallReceiver) {
    proto::channel::call_channel(config.channel_capacity, config.max_in_flight_calls)
}

struct Aggregator {
    config: AggregatorConfig,
    store: Arc<dyn Store>,
    calls: CallReceiver,
    commands: mpsc::Receiver<Command>,
    rollups: Rollups,
    metrics: SelfMetrics,
    retention: Option<Duration>,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Aggregator {
    /// Rolls up a batch; its share of the channel budget is freed when `received` drops.
    fn apply(&mut self, received: Received) {
        let batch = &received.batch;
        let now = now_nanos();
        let max_future = i64::try_from(self.config.max_future.as_nanos()).unwrap_or(i64::MAX);
        let oldest = self
            .retention
            .map(|r| now.saturating_sub(i64::try_from(r.as_nanos()).unwrap_or(i64::MAX)));
        for call in batch {
            if call.start_unix_nanos > now.saturating_add(max_future) {
                self.metrics
                    .dropped
                    .get_or_create(&ReasonLabel { reason: "future" })
                    .inc();
                continue;
            }
            if oldest.is_some_and(|o| call.start_unix_nanos < o) {
                self.metrics
                    .dropped
                    .get_or_create(&ReasonLabel { reason: "expired" })
                    .inc();
                continue;
            }
            let minute = call.start_unix_nanos.div_euclid(60_000_000_000) * 60;
            let applied = self.rollups.apply(call, minute);
            if applied.endpoint_overflowed {
                self.metrics.endpoints_overflowed.inc();
            }
            if applied.service_overflowed {
                self.metrics.services_overflowed.inc();
            }
            self.metrics.calls.inc();
        }
        self.metrics.pending_rows.set(self.rollups.len() as i64);
    }

    fn drain(&mut self) {
        while let Some(batch) = self.calls.try_recv() {
            self.apply(batch);
        }
    }

    async fn flush(&mut self) -> Result<()> {
        if self.rollups.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(self.rollups.take());
        let rows = batch.len();
        let started = Instant::now();
        match self.store.write(batch.clone()).await {
            Ok(()) => {
                self.metrics.rows_written.inc_by(rows as u64);
                self.metrics
                    .flush_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.pending_rows.set(self.rollups.len() as i64);
                debug!(
                    rows,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "flushed"
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.flush_failures.inc();
                let pending = self.rollups.len() + rows;
                if pending > self.config.max_pending_rows {
                    self.metrics
                        .dropped
                        .get_or_create(&ReasonLabel {
                            reason: "store_unavailable",
                        })
                        .inc_by(batch.calls());
                    error!(error = %e, rows, pending, limit = self.config.max_pending_rows,
                        "flush failed and the pending-row limit is reached; these rows are lost");
                } else {
                    let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| RowBatch {
                        tables: shared.tables.clone(),
                    });
                    self.rollups.restore(batch.tables);
                    warn!(error = %e, rows, "flush failed; rows kept for the next attempt");
                }
                self.metrics.pending_rows.set(self.rollups.len() as i64);
                Err(e)
            }
        }
    }

    /// A flush, then waits until the store shows what it wrote (an explicit flush's
    /// promise; periodic flushes do not wait).
    async fn flush_visible(&mut self) -> Result<()> {
        self.flush().await?;
        self.store.sync().await
    }

    /// The last flush, then the store's close.
    async fn finish(&mut self) -> Result<()> {
        let flushed = self.flush().await;
        if let Err(e) = &flushed {
            error!(error = %e, "final flush failed; pending rows are lost");
        }
        let closed = self.store.close().await;
        if let Err(e) = &closed {
            error!(error = %e, "closing the store failed");
        }
        flushed.and(closed)
    }

    async fn run(mut self) -> Result<()> {
        let mut flush_tick = tokio::time::interval(self.config.flush_interval);
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance_tick = tokio::time::interval(self.config.maintenance_interval);
        maintenance_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut maintenance: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Flush(reply)) => {
                        self.drain();
                        let _ = reply.send(self.flush_visible().await);
                    }
                    Some(Command::Maintain(reply)) => {
                        // Runs after any maintenance already under way; ingestion goes on.
                        let previous = maintenance.take();
                        let store = self.store.clone();
                        maintenance = Some(tokio::spawn(async move {
                            if let Some(p) = previous {
                                let _ = p.await;
                            }
                            let _ = reply.send(store.maintain().await);
                        }));
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.drain();
                        if let Some(m) = maintenance.take() {
                            let _ = m.await;
                        }
                        let result = self.finish().await;
                        let _ = reply.send(result);
                        return Ok(());
                    }
                    None => {
                        self.drain();
                        return self.finish().await;
                    }
                },
                batch = self.calls.recv() => match batch {
                    Some(batch) => self.apply(batch),
                    // Every sender is gone: flush, then keep answering commands until
                    // told to stop.
                    None => {
                        let _ = self.flush().await;
                        while let Some(command) = self.commands.recv().await {
                            match command {
                                Command::Flush(reply) => {
                                    let _ = reply.send(self.flush_visible().await);
                                }
                                Command::Maintain(reply) => {
                                    let _ = reply.send(self.store.maintain().await);
                                }
                                Command::Shutdown(reply) => {
                                    let _ = reply.send(self.finish().await);
                                    return Ok(());
                                }
                            }
                        }
                        return self.finish().await;
                    }
                },
                _ = flush_tick.tick() => {
                    let _ = self.flush().await;
                }
                _ = maintenance_tick.tick() => {
                    if maintenance.as_ref().is_none_or(|m| m.is_finished()) {
                        let store = self.store.clone();
                        maintenance = Some(tokio::spawn(async move {
                            if let Err(e) = store.maintain().await {
                                warn!(error = %e, "store maintenance failed; will retry");
                            }
                        }));
                    }
                }
            }
        }
    }
}

/// Starts the aggregator on the current runtime. `retention` drops calls older than it at
/// ingest (they would be removed at the next retention pass anyway).
pub fn spawn(
    config: AggregatorConfig,
    store: Arc<dyn Store>,
    calls: CallReceiver,
    retention: Option<Duration>,
    registry: &mut Registry,
) -> (Handle, tokio::task::JoinHandle<Result<()>>) {
    let (tx, rx) = mpsc::channel(16);
    let metrics = SelfMetrics::register(registry);
    let rollups = Rollups::new(RollupSettings {
        apdex_t_nanos: config.apdex_threshold_ms.saturating_mul(1_000_000),
        max_endpoints_per_service: config.max_endpoints_per_service,
        max_services: config.max_services,
    });
    info!(
        flush_interval = ?config.flush_interval,
        apdex_threshold_ms = config.apdex_threshold_ms,
        "aggregator started"
    );
    let aggregator = Aggregator {
        config,
        store,
        calls,
        commands: rx,
        rollups,
        metrics,
        retention,
    };
    (Handle { commands: tx }, tokio::spawn(aggregator.run()))
}
