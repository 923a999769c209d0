//! The OTLP receivers' self-metrics, registered in the registry the binary hands in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{kind, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnpairedLabels {
    kind: &'static str,
    reason: &'static str,
}

/// Label set `{transport, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    transport: &'static str,
    reason: &'static str,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Self-metrics of the OTLP receivers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OtlpMetrics {
    pub(super) received: Counter,
    rejected: Family<Reason, Counter>,
    pub(super) ignored: Counter,
    /// Pairs of a caller's and a callee's span joined.
    pub paired: Counter,
    unpaired: Family<UnpairedLabels, Counter>,
    /// The same caller span received twice while waiting.
    pub duplicates: Counter,
    /// Spans waiting for their partner.
    pub waiting: Gauge,
    requests_rejected: Family<RequestLabels, Counter>,
}

impl OtlpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> OtlpMetrics {
        let m = OtlpMetrics {
            received: Counter::default(),
            rejected: Family::default(),
            ignored: Counter::default(),
            paired: Counter::default(),
            unpaired: Family::default(),
            duplicates: Counter::default(),
            waiting: Gauge::default(),
            requests_rejected: Family::default(),
        };
        registry.register(
            "otlp_spans_received",
            "Spans in OTLP export requests that decoded",
            m.received.clone(),
        );
        registry.register(
            "otlp_spans_rejected",
            "Spans answered as rejected (partial success), by reason",
            m.rejected.clone(),
        );
        registry.register(
            "otlp_spans_ignored",
            "INTERNAL and unspecified-kind spans: they carry no call",
            m.ignored.clone(),
        );
        registry.register(
            "otlp_spans_paired",
            "Callee spans joined with their caller span",
            m.paired.clone(),
        );
        registry.register(
            "otlp_spans_unpaired",
            "Spans recorded without their partner, by kind (client, server) and reason (expired: TTL; evicted: store full; flushed: admin flush or shutdown)",
            m.unpaired.clone(),
        );
        registry.register(
            "otlp_spans_duplicate",
            "Caller spans received again while still waiting (counted once)",
            m.duplicates.clone(),
        );
        registry.register(
            "otlp_pairing_waiting",
            "Spans waiting for their partner",
            m.waiting.clone(),
        );
        registry.register(
            "otlp_requests_rejected",
            "OTLP export requests rejected whole, by transport and reason",
            m.requests_rejected.clone(),
        );
        m
    }

    pub(super) fn unpaired(&self, kind: &'static str, reason: &'static str, n: u64) {
        self.unpaired
            .get_or_create(&UnpairedLabels { kind, reason })
            .inc_by(n);
    }

    pub(super) fn request_rejected(&self, transport: &'static str, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&RequestLabels { transport, reason })
            .inc();
    }

    #[cfg(test)]
    pub(super) fn unpaired_count(&self, kind: &'static str, reason: &'static str) -> u64 {
        self.unpaired
            .get_or_create(&UnpairedLabels { kind, reason })
            .get()
    }
}

impl OtlpMetrics {
    /// Counts `n` spans answered as rejected for `reason`.
    pub(super) fn spans_rejected(&self, reason: &'static str, n: u64) {
        self.rejected.get_or_create(&Reason { reason }).inc_by(n);
    }
}
