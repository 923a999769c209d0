//! The series meshscope exposes to PromQL, and which rollup table each comes from.
//!
//! Two families of names: the Tempo / OpenTelemetry service-graph names (labels `client`,
//! `server`, `connection_type`), so Grafana's service-graph view and existing dashboards
//! work, and meshscope's own RED series per service, instance and endpoint.

use aggregator::schema::{Key, Table};

/// The Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
    /// A value per minute, not a running total (the quantile series).
    Gauge,
}

impl Kind {
    /// The name `api/v1/metadata` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
            Kind::Gauge => "gauge",
        }
    }
}

/// Which reports a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reports {
    /// One report per call: the destination's chosen source, and within it the server's
    /// side when it reported, else the client's (see `aggregator::query`).
    Chosen,
    /// Only the callee's reports (`…_server_seconds`).
    Server,
    /// Only the caller's reports (`…_client_seconds`).
    Client,
}

/// What a family's samples measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Calls,
    Errors,
    /// Latency in seconds: `_bucket{le}`, `_sum`, `_count`.
    Latency,
    /// Latency quantiles in seconds of each minute's calls, per `quantile` label, from the
    /// histogram (within [`aggregator::histogram::RELATIVE_ERROR`]).
    Quantile,
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The family name (for histograms, without `_bucket`/`_sum`/`_count`).
    pub name: &'static str,
    /// The Prometheus type (`api/v1/metadata`).
    pub kind: Kind,
    /// The `api/v1/metadata` help text.
    pub help: &'static str,
    /// The rollup table the series read.
    pub table: Table,
    /// Label names and the key of `table` each reads.
    pub labels: &'static [(&'static str, Key)],
    /// Which reports count.
    pub reports: Reports,
    /// What the samples measure.
    pub measure: Measure,
}

/// Upper bounds (seconds) of the `le` buckets every latency histogram exposes, besides
/// `+Inf`: Prometheus' default buckets.
pub const LE_SECONDS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const EDGE: &[(&str, Key)] = &[
    ("client", Key::Client),
    ("server", Key::Server),
    ("connection_type", Key::Protocol),
];
const SERVICE: &[(&str, Key)] = &[("service", Key::Service)];
const INSTANCE: &[(&str, Key)] = &[("service", Key::Service), ("instance", Key::Instance)];
const ENDPOINT: &[(&str, Key)] = &[("service", Key::Service), ("endpoint", Key::Endpoint)];

/// Every family, in the order `api/v1/metadata` lists them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "traces_service_graph_request_total",
        kind: Kind::Counter,
        help: "Calls from client to server (one per call; server-side report when the server reports)",
        table: Table::ServiceRelation,
        labels: EDGE,
        reports: Reports::Chosen,
        measure: Measure::Calls,
    },
    Family {
        name: "traces_service_graph_request_failed_total",
        kind: Kind::Counter,
        help: "Failed calls from client to server",
        table: Table::ServiceRelation,
        labels: EDGE,
        reports: Reports::Chosen,
        measure: Measure::Errors,
    },
    Family {
        name: "traces_service_graph_request_server_seconds",
        kind: Kind::Histogram,
        help: "Call latency as the server measured it",
        table: Table::ServiceRelation,
        labels: EDGE,
        reports: Reports::Server,
        measure: Measure::Latency,
    },
    Family {
        name: "traces_service_graph_request_client_seconds",
        kind: Kind::Histogram,
        help: "Call latency as the client measured it",
        table: Table::ServiceRelation,
        labels: EDGE,
        reports: Reports::Client,
        measure: Measure::Latency,
    },
    Family {
        name: "meshscope_edge_latency_quantile_seconds",
        kind: Kind::Gauge,
        help: "Latency quantiles of each minute's calls from client to server (2 % relative error)",
        table: Table::ServiceRelation,
        labels: EDGE,
        reports: Reports::Chosen,
        measure: Measure::Quantile,
    },
    Family {
        name: "meshscope_service_calls_total",
        kind: Kind::Counter,
        help: "Calls received by a service",
        table: Table::Service,
        labels: SERVICE,
        reports: Reports::Chosen,
        measure: Measure::Calls,
    },
    Family {
        name: "meshscope_service_errors_total",
        kind: Kind::Counter,
        help: "Failed calls received by a service",
        table: Table::Service,
        labels: SERVICE,
        reports: Reports::Chosen,
        measure: Measure::Errors,
    },
    Family {
        name: "meshscope_service_latency_seconds",
        kind: Kind::Histogram,
        help: "Latency of calls received by a service",
        table: Table::Service,
        labels: SERVICE,
        reports: Reports::Chosen,
        measure: Measure::Latency,
    },
    Family {
        name: "meshscope_service_latency_quantile_seconds",
        kind: Kind::Gauge,
        help: "Latency quantiles of the calls a service received in each minute (2 % relative error)",
        table: Table::Service,
        labels: SERVICE,
        reports: Reports::Chosen,
        measure: Measure::Quantile,
    },
    Family {
        name: "meshscope_instance_calls_total",
        kind: Kind::Counter,
        help: "Calls received by an instance",
        table: Table::Instance,
        labels: INSTANCE,
        reports: Reports::Chosen,
        measure: Measure::Calls,
    },
    Family {
        name: "meshscope_instance_errors_total",
        kind: Kind::Counter,
        help: "Failed calls received by an instance",
        table: Table::Instance,
        labels: INSTANCE,
        reports: Reports::Chosen,
        measure: Measure::Errors,
    },
    Family {
        name: "meshscope_instance_latency_seconds",
        kind: Kind::Histogram,
        help: "Latency of calls received by an instance",
        table: Table::Instance,
        labels: INSTANCE,
        reports: Reports::Chosen,
        measure: Measure::Latency,
    },
    Family {
        name: "meshscope_instance_latency_quantile_seconds",
        kind: Kind::Gauge,
        help: "Latency quantiles of the calls an instance received in each minute (2 % relative error)",
        table: Table::Instance,
        labels: INSTANCE,
        reports: Reports::Chosen,
        measure: Measure::Quantile,
    },
    Family {
        name: "meshscope_endpoint_calls_total",
        kind: Kind::Counter,
        help: "Calls received by an endpoint",
        table: Table::Endpoint,
        labels: ENDPOINT,
        reports: Reports::Chosen,
        measure: Measure::Calls,
    },
    Family {
        name: "meshscope_endpoint_errors_total",
        kind: Kind::Counter,
        help: "Failed calls received by an endpoint",
        table: Table::Endpoint,
        labels: ENDPOINT,
        reports: Reports::Chosen,
        measure: Measure::Errors,
    },
    Family {
        name: "meshscope_endpoint_latency_seconds",
        kind: Kind::Histogram,
        help: "Latency of calls received by an endpoint",
        table: Table::Endpoint,
        labels: ENDPOINT,
        reports: Reports::Chosen,
        measure: Measure::Latency,
    },
    Family {
        name: "meshscope_endpoint_latency_quantile_seconds",
        kind: Kind::Gauge,
        help: "Latency quantiles of the calls an endpoint received in each minute (2 % relative error)",
        table: Table::Endpoint,
        labels: ENDPOINT,
        reports: Reports::Chosen,
        measure: Measure::Quantile,
    },
];

/// The `quantile` label values of the quantile families, with their numbers.
pub const QUANTILES: [(&str, f64); 5] = [
    ("0.5", 0.5),
    ("0.75", 0.75),
    ("0.9", 0.9),
    ("0.95", 0.95),
    ("0.99", 0.99),
];

/// The series names of a family: itself for a counter; `_bucket`, `_sum`, `_count` for
/// a histogram.
pub fn series_names(f: &Family) -> Vec<String> {
    match f.kind {
        Kind::Counter | Kind::Gauge => vec![f.name.to_string()],
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", f.name))
            .collect(),
    }
}

/// The label a series has besides its family's key labels, with its values and the
/// number each stands for: `le` (seconds) for a histogram's `_bucket`, `quantile` for a
/// quantile family.
pub fn extra_label(f: &Family, series: &str) -> Option<(&'static str, Vec<(String, f64)>)> {
    if f.kind == Kind::Histogram && series.ends_with("_bucket") {
        let bounds = LE_SECONDS.iter().copied().chain([f64::INFINITY]);
        Some(("le", le_values().into_iter().zip(bounds).collect()))
    } else if f.measure == Measure::Quantile {
        Some((
            "quantile",
            QUANTILES.iter().map(|(q, v)| (q.to_string(), *v)).collect(),
        ))
    } else {
        None
    }
}

/// Every label name of a family's series, `__name__` aside.
pub fn label_names(f: &Family) -> impl Iterator<Item = &'static str> {
    let extra = match (f.kind, f.measure) {
        (Kind::Histogram, _) => Some("le"),
        (_, Measure::Quantile) => Some("quantile"),
        _ => None,
    };
    f.labels.iter().map(|(l, _)| *l).chain(extra)
}

/// The `le` label values, as Prometheus formats them.
pub fn le_values() -> Vec<String> {
    LE_SECONDS
        .iter()
        .map(|v| format_le(*v))
        .chain(["+Inf".to_string()])
        .collect()
}

fn format_le(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut all: Vec<String> = FAMILIES.iter().flat_map(series_names).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        for f in FAMILIES {
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert_eq!(f.kind == Kind::Gauge, f.measure == Measure::Quantile);
            for (_, k) in f.labels {
                assert!(f.table.has(*k), "{}", f.name);
            }
        }
        assert_eq!(le_values()[0], "0.005");
        assert_eq!(le_values()[7], "1.0");
        assert_eq!(le_values().last().map(String::as_str), Some("+Inf"));
    }
}
