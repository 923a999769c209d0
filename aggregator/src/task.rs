//! The aggregator task: it owns the rollups, applies every call batch from the channel,
//! flushes to the store on a timer and on demand, runs store maintenance, and drains and
//! flushes once more at shutdown. [`Handle`] is how the rest of the process talks to it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use proto::channel::{CallReceiver, CallSender, Received};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::config::AggregatorConfig;
use crate::rollup::{RollupSettings, Rollups};
use crate::row::RowBatch;
use crate::self_metrics::{CapLabel, ReasonLabel, SelfMetrics};
use crate::store::Store;
use crate::{Error, Result};

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

    /// For the end: refuses every later call batch (its sender is told, and counts it
    /// undelivered), then takes every batch already accepted.
    async fn close_and_drain(&mut self) {
        self.calls.close();
        while let Some(batch) = self.calls.recv().await {
            self.apply(batch);
        }
    }

    async fn flush(&mut self) -> Result<()> {
        self.rollups.age_caps();
        let (services, endpoints) = self.rollups.admitted();
        for (cap, n) in [("service", services), ("endpoint", endpoints)] {
            let gauge = self.metrics.capped_names.get_or_create(&CapLabel { cap });
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
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
                // Commands first, then the timers, then calls: a channel that never
                // empties must not delay a flush past its interval.
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
                        self.close_and_drain().await;
                        if let Some(m) = maintenance.take() {
                            let _ = m.await;
                        }
                        let result = self.finish().await;
                        let _ = reply.send(result);
                        return Ok(());
                    }
                    None => {
                        self.close_and_drain().await;
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
                batch = self.calls.recv() => match batch {
                    Some(batch) => {
                        self.apply(batch);
                        // A backfill fills many minutes per second: bounded by rows, not
                        // only by the interval.
                        if self.rollups.len() >= self.config.flush_rows {
                            debug!(rows = self.rollups.len(), "flushing early: aggregator.flush_rows reached");
                            let _ = self.flush().await;
                        }
                    }
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
        cap_forget_after: config.cap_forget_after,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::parquet::{ParquetSettings, ParquetStore};
    use proto::{Call, Node, Protocol, Side, Source};

    fn call(start_unix_nanos: i64) -> Call {
        Call {
            start_unix_nanos,
            side: Side::Server,
            source: Source::Mesh,
            client: Node::real(Arc::from("a.ns"), None),
            server: Node::real(Arc::from("b.ns"), Some(Arc::from("b-0"))),
            endpoint: Some(Arc::from("GET /")),
            protocol: Protocol::Http,
            latency_nanos: Some(1_000_000),
            status_code: 200,
            grpc_status: None,
            error: false,
            mtls: false,
            request_bytes: 1,
            response_bytes: 1,
        }
    }

    fn value(registry: &Registry, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A Parquet store that keeps everything and never compacts (each write stays a file).
    fn uncompacted_store(dir: &std::path::Path) -> ParquetStore {
        ParquetStore::open(
            dir,
            ParquetSettings {
                retention_days: 0,
                hour_retention_days: 0,
                day_retention_days: 0,
                compact_min_files: 1_000_000,
                delete_grace: Duration::ZERO,
            },
        )
        .expect("store")
    }

    /// Calls spread over many minutes (a backfill) are written once `flush_rows` rows have
    /// accumulated, long before the interval, and nothing is lost or doubled.
    #[tokio::test]
    async fn a_backfill_is_written_in_bounded_flushes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = uncompacted_store(dir.path());
        let config = AggregatorConfig {
            flush_interval: Duration::from_secs(3600),
            flush_rows: 500,
            ..AggregatorConfig::default()
        };
        let (tx, rx) = channel(&config);
        let mut registry = Registry::default();
        let store = Arc::new(store);
        let (handle, task) = spawn(config, store.clone(), rx, None, &mut registry);
        // One call in each of 600 past minutes, in batches of 10.
        let n = 600i64;
        let now = now_nanos();
        for chunk in 0..n / 10 {
            let calls = (0..10)
                .map(|i| call(now - (chunk * 10 + i + 1) * 60_000_000_000))
                .collect();
            tx.send(calls).await.expect("queued");
        }
        let mut most_pending = 0.0f64;
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            most_pending = most_pending.max(value(&registry, "pending_rows"));
            if value(&registry, "aggregated_calls_total") == n as f64 {
                break;
            }
        }
        let writes = value(&registry, "flush_duration_seconds_count");
        let written = value(&registry, "rows_written_total");
        // 600 minutes × the rows of one call (one per table it touches) in 500-row flushes.
        assert!(
            written >= 1000.0,
            "{written} rows written before the interval"
        );
        assert!(
            writes >= (written / 550.0).floor(),
            "{writes} writes for {written} rows"
        );
        assert!(most_pending < 600.0, "{most_pending} rows pending at once");
        handle.shutdown().await.expect("shutdown");
        task.await.expect("task").expect("aggregator");
        // Everything counted once: the service table holds 600 calls in 600 minutes.
        let rows = store
            .scan(&crate::store::ScanRequest {
                table: crate::schema::Table::Service,
                start_minute: 0,
                end_minute: i64::MAX / 2,
                filters: vec![],
                resolution: crate::store::Resolution::Minute,
                histograms: true,
                max_rows: None,
                chosen_side: false,
            })
            .await
            .expect("scan");
        let calls: u64 = rows.iter().map(|r| r.metrics.calls).sum();
        assert_eq!(calls, n as u64);
        drop(tx);
    }

    /// The flush timer comes before the calls: with thousands of batches already queued
    /// (the channel is not empty until they are all applied), flushes still happen on
    /// their interval. Were calls taken first, the queue would drain before any flush and
    /// all its rows would go in one write.
    #[tokio::test]
    async fn flushes_keep_their_interval_while_the_channel_is_never_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = uncompacted_store(dir.path());
        let config = AggregatorConfig {
            flush_interval: Duration::from_millis(2),
            channel_capacity: 50_000,
            max_in_flight_calls: 50_000,
            ..AggregatorConfig::default()
        };
        let (tx, rx) = channel(&config);
        let n = 40_000u64;
        let now = now_nanos();
        for i in 0..n {
            tx.send(vec![call(now - (i as i64 % 600) * 1_000_000_000)])
                .await
                .expect("queued");
        }
        let mut registry = Registry::default();
        let (handle, task) = spawn(config, Arc::new(store), rx, None, &mut registry);
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if value(&registry, "aggregated_calls_total") == n as f64
                && value(&registry, "pending_rows") == 0.0
            {
                break;
            }
        }
        let writes = value(&registry, "flush_duration_seconds_count");
        assert!(writes >= 2.0, "{writes} writes for {n} queued calls");
        handle.shutdown().await.expect("shutdown");
        task.await.expect("task").expect("aggregator");
        drop(tx);
    }
}
