//! The collector's self-metrics, registered in the registry the binary hands in.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{kind}` (http, tcp).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Label set `{reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Counters and gauges of the receivers. Cheap to clone (shared underneath).
#[derive(Clone, Debug)]
pub struct CollectorMetrics {
    pub streams_open: Gauge,
    pub streams_total: Counter,
    entries_received: Family<KindLabel, Counter>,
    pub entries_decoded: Counter,
    entries_skipped: Family<ReasonLabel, Counter>,
    entries_dropped: Family<ReasonLabel, Counter>,
    messages_rejected: Family<ReasonLabel, Counter>,
    pub calls_emitted: Counter,
    calls_dropped: Family<ReasonLabel, Counter>,
    /// Bytes charged to the decoding budget now.
    pub decoding_bytes: Gauge,
    /// Addresses the ALS address book holds (learned, not configured).
    pub address_book_size: Gauge,
    /// Connections open on the gRPC listener.
    pub grpc_connections_open: Gauge,
    grpc_connections_refused: Family<ReasonLabel, Counter>,
    addresses_refused: Family<ReasonLabel, Counter>,
}

impl CollectorMetrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> CollectorMetrics {
        let m = CollectorMetrics {
            streams_open: Gauge::default(),
            streams_total: Counter::default(),
            entries_received: Family::default(),
            entries_decoded: Counter::default(),
            entries_skipped: Family::default(),
            entries_dropped: Family::default(),
            messages_rejected: Family::default(),
            calls_emitted: Counter::default(),
            calls_dropped: Family::default(),
            decoding_bytes: Gauge::default(),
            address_book_size: Gauge::default(),
            addresses_refused: Family::default(),
            grpc_connections_open: Gauge::default(),
            grpc_connections_refused: Family::default(),
        };
        registry.register(
            "grpc_connections_open",
            "Connections open on the gRPC listener (at most collector.max_connections)",
            m.grpc_connections_open.clone(),
        );
        registry.register(
            "grpc_connections_refused",
            "gRPC connections closed by the listener, by reason (max_connections: none free when it connected; handshake_timeout: no HTTP/2 preface within collector.handshake_timeout)",
            m.grpc_connections_refused.clone(),
        );
        registry.register(
            "als_address_book_addresses",
            "Pod addresses the ALS address book holds, as announced by proxies (at most 200000)",
            m.address_book_size.clone(),
        );
        registry.register(
            "als_addresses_refused",
            "Announced addresses not learned, by reason (not_an_ip; too_many: past 16 in one announcement; full: the book is full and nothing in it is past its TTL)",
            m.addresses_refused.clone(),
        );
        registry.register(
            "decoding_bytes",
            "Estimated bytes of received messages being decoded or turned into calls now (bounded by collector.max_decoding_bytes)",
            m.decoding_bytes.clone(),
        );
        registry.register(
            "als_streams_open",
            "Envoy access-log streams currently open",
            m.streams_open.clone(),
        );
        registry.register(
            "als_streams",
            "Envoy access-log streams accepted",
            m.streams_total.clone(),
        );
        registry.register(
            "als_entries_received",
            "Access-log entries received in well-formed messages, by kind (http, tcp)",
            m.entries_received.clone(),
        );
        registry.register(
            "als_entries_decoded",
            "Access-log entries turned into calls",
            m.entries_decoded.clone(),
        );
        registry.register(
            "als_entries_skipped",
            "Access-log entries deliberately not counted, by reason (intermediate: a final entry follows; not_http: a TCP connection on the HTTP logger; http_on_tcp_logger: an HTTP request on the TCP logger; absurd_duration: an HTTP entry lasting over a day)",
            m.entries_skipped.clone(),
        );
        registry.register(
            "als_entries_dropped",
            "Access-log entries lost, by reason",
            m.entries_dropped.clone(),
        );
        registry.register(
            "als_messages_rejected",
            "Access-log messages rejected with a gRPC error, by reason (malformed, too_large, busy, no_identifier, stream_error, cancelled)",
            m.messages_rejected.clone(),
        );
        registry.register(
            "calls_emitted",
            "Calls sent to the aggregator",
            m.calls_emitted.clone(),
        );
        registry.register(
            "calls_undelivered",
            "Calls the collector could not hand to the aggregator (it had stopped), by reason",
            m.calls_dropped.clone(),
        );
        m
    }

    /// Counts entries of one kind in a well-formed message.
    pub fn entries_received(&self, kind: &'static str, n: u64) {
        self.entries_received
            .get_or_create(&KindLabel { kind })
            .inc_by(n);
    }

    /// Counts an entry deliberately not turned into a call, for `reason`.
    pub fn entries_skipped(&self, reason: &'static str) {
        self.entries_skipped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts entries lost for `reason`.
    pub fn entries_dropped(&self, reason: &'static str, n: u64) {
        self.entries_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n);
    }

    /// Counts a message answered with a gRPC error.
    pub fn messages_rejected(&self, reason: &'static str) {
        self.messages_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a gRPC connection closed by the listener, for `reason`.
    pub fn grpc_connection_refused(&self, reason: &'static str) {
        self.grpc_connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts announced addresses the address book did not learn, for `reason`.
    pub fn addresses_refused(&self, reason: &'static str, n: u64) {
        self.addresses_refused
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n);
    }

    /// The addresses refused so far for `reason` (tests).
    #[cfg(test)]
    pub fn addresses_refused_count(&self, reason: &'static str) -> u64 {
        self.addresses_refused
            .get_or_create(&ReasonLabel { reason })
            .get()
    }

    /// Counts calls that could not be handed to the aggregator.
    pub fn calls_dropped(&self, reason: &'static str, n: u64) {
        self.calls_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc_by(n);
    }
}
