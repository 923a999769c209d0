//! Connections per HTTP listener: open now, and refused at the limit.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set `{listener}` (`api`, `otlp_http`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    pub listener: &'static str,
}

/// The HTTP listeners' connection counters. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    pub(crate) open: Family<ListenerLabel, Gauge>,
    pub(crate) refused: Family<ListenerLabel, Counter>,
    pub(crate) timed_out: Family<ListenerLabel, Counter>,
}

impl HttpMetrics {
    /// Creates the metrics and registers them (names get the registry's prefix).
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let m = HttpMetrics::default();
        registry.register(
            "http_connections_open",
            "HTTP connections open now, by listener",
            m.open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at accept because the listener had http.max_connections open",
            m.refused.clone(),
        );
        registry.register(
            "http_requests_timed_out",
            "HTTP requests answered 408 after http.request_timeout",
            m.timed_out.clone(),
        );
        m
    }

    pub(crate) fn open(&self, listener: &'static str) -> Gauge {
        self.open.get_or_create(&ListenerLabel { listener }).clone()
    }

    pub(crate) fn refused(&self, listener: &'static str) {
        self.refused
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    pub(crate) fn timed_out(&self, listener: &'static str) {
        self.timed_out
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }
}
