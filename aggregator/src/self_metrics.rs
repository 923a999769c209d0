//! The aggregator's self-metrics, registered in the registry the binary hands in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Label set `{cap}`: `service` or `endpoint`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapLabel {
    pub cap: &'static str,
}

/// The aggregator's self-metrics.
#[derive(Clone, Debug)]
pub struct SelfMetrics {
    pub calls: Counter,
    pub dropped: Family<ReasonLabel, Counter>,
    pub endpoints_overflowed: Counter,
    pub services_overflowed: Counter,
    pub capped_names: Family<CapLabel, Gauge>,
    pub rows_written: Counter,
    pub flush_seconds: Histogram,
    pub flush_failures: Counter,
    pub pending_rows: Gauge,
}

impl SelfMetrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> SelfMetrics {
        let m = SelfMetrics {
            calls: Counter::default(),
            dropped: Family::default(),
            endpoints_overflowed: Counter::default(),
            services_overflowed: Counter::default(),
            capped_names: Family::default(),
            rows_written: Counter::default(),
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
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
            "capped_names",
            "Names holding a place under a cap (aggregator.max_services, max_endpoints_per_service summed over services); idle names leave after aggregator.cap_forget_after",
            m.capped_names.clone(),
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
