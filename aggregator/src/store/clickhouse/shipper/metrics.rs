//! The shipper's self-metrics (`meshscope_clickhouse_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub(super) struct ShipperMetrics {
    pub(super) inserts: Counter,
    pub(super) rows: Counter,
    pub(super) failures: Counter,
    pub(super) duplicates_skipped: Counter,
    pub(super) dropped_rows: Counter,
    pub(super) spilled_batches: Counter,
    pub(super) buffered_bytes: Gauge,
    pub(super) spooled_bytes: Gauge,
}

impl ShipperMetrics {
    pub(super) fn register(registry: &mut Registry) -> ShipperMetrics {
        let m = ShipperMetrics {
            inserts: Counter::default(),
            rows: Counter::default(),
            failures: Counter::default(),
            duplicates_skipped: Counter::default(),
            dropped_rows: Counter::default(),
            spilled_batches: Counter::default(),
            buffered_bytes: Gauge::default(),
            spooled_bytes: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("clickhouse");
        r.register(
            "inserts",
            "Insert chunks (one table, one UTC day) ClickHouse accepted",
            m.inserts.clone(),
        );
        r.register(
            "rows_inserted",
            "Minute rows ClickHouse accepted (hour and day rows not counted)",
            m.rows.clone(),
        );
        r.register(
            "insert_failures",
            "Failed insert attempts (each is retried unless the data is malformed)",
            m.failures.clone(),
        );
        r.register(
            "duplicate_inserts_skipped",
            "Retried chunks found already in ClickHouse by their marker row and not sent again",
            m.duplicates_skipped.clone(),
        );
        r.register(
            "dropped_rows",
            "Minute rows dropped because ClickHouse rejected them as malformed",
            m.dropped_rows.clone(),
        );
        r.register(
            "spilled_batches",
            "Flushes written to the disk spool (memory queue full, or ClickHouse failing)",
            m.spilled_batches.clone(),
        );
        r.register(
            "buffered_bytes",
            "Insert bytes queued in memory",
            m.buffered_bytes.clone(),
        );
        r.register(
            "spooled_bytes",
            "Insert bytes waiting in the disk spool",
            m.spooled_bytes.clone(),
        );
        m
    }
}
