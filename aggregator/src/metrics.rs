//! Partial aggregates of calls ([`Metrics`]) and the derived figures the API shows
//! ([`Summary`]). Every field of [`Metrics`] merges by addition, so partial rows from
//! flushes, late data or several processes sum to exactly the one-pass result.

use proto::Call;
use serde::Serialize;

use crate::histogram::{self, Histogram};
use crate::schema::COUNTER_COLUMNS;

/// Exact partial aggregate of a set of calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub calls: u64,
    pub errors: u64,
    /// Calls that carried a latency (the denominator of `avg_ms`).
    pub latency_count: u64,
    pub latency_sum_nanos: u64,
    /// Non-error calls with latency ≤ T (apdex).
    pub apdex_satisfied: u64,
    /// Non-error calls with T < latency ≤ 4T (apdex).
    pub apdex_tolerating: u64,
    /// Calls over mutual TLS.
    pub mtls_calls: u64,
    /// Bytes the server sent back (response bodies, TCP bytes to the client).
    pub bytes_sent: u64,
    /// Bytes the server received (request bodies, TCP bytes from the client).
    pub bytes_received: u64,
    pub histogram: Histogram,
}

/// What the aggregator needs to know about a call beyond its identity, computed once per
/// call and applied to every entity the call touches.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub error: bool,
    pub latency_nanos: Option<u64>,
    pub bucket: u16,
    pub apdex_satisfied: bool,
    pub apdex_tolerating: bool,
    pub mtls: bool,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl Observation {
    /// Classifies a call against the apdex threshold `apdex_t_nanos`.
    pub fn of(call: &Call, apdex_t_nanos: u64) -> Observation {
        let latency = call.latency_nanos;
        let (sat, tol) = match (call.error, latency) {
            (true, _) => (false, false),
            (false, None) => (false, false),
            (false, Some(l)) if l <= apdex_t_nanos => (true, false),
            (false, Some(l)) => (false, l <= apdex_t_nanos.saturating_mul(4)),
        };
        Observation {
            error: call.error,
            latency_nanos: latency,
            bucket: latency.map_or(0, histogram::bucket_index),
            apdex_satisfied: sat,
            apdex_tolerating: tol,
            mtls: call.mtls,
            request_bytes: call.request_bytes,
            response_bytes: call.response_bytes,
        }
    }
}

impl Metrics {
    /// The scalar counters in [`COUNTER_COLUMNS`] order.
    pub fn counters(&self) -> [u64; COUNTER_COLUMNS.len()] {
        [
            self.calls,
            self.errors,
            self.latency_count,
            self.latency_sum_nanos,
            self.apdex_satisfied,
            self.apdex_tolerating,
            self.mtls_calls,
            self.bytes_sent,
            self.bytes_received,
        ]
    }

    /// The inverse of [`Metrics::counters`], with an empty histogram.
    pub fn from_counters(c: [u64; COUNTER_COLUMNS.len()]) -> Metrics {
        Metrics {
            calls: c[0],
            errors: c[1],
            latency_count: c[2],
            latency_sum_nanos: c[3],
            apdex_satisfied: c[4],
            apdex_tolerating: c[5],
            mtls_calls: c[6],
            bytes_sent: c[7],
            bytes_received: c[8],
            histogram: Histogram::default(),
        }
    }

    /// Adds one observed call.
    pub fn observe(&mut self, o: &Observation) {
        self.calls = self.calls.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(o.error));
        if let Some(l) = o.latency_nanos {
            self.latency_count = self.latency_count.saturating_add(1);
            self.latency_sum_nanos = self.latency_sum_nanos.saturating_add(l);
            self.histogram.add(o.bucket, 1);
        }
        self.apdex_satisfied = self
            .apdex_satisfied
            .saturating_add(u64::from(o.apdex_satisfied));
        self.apdex_tolerating = self
            .apdex_tolerating
            .saturating_add(u64::from(o.apdex_tolerating));
        self.mtls_calls = self.mtls_calls.saturating_add(u64::from(o.mtls));
        self.bytes_sent = self.bytes_sent.saturating_add(o.response_bytes);
        self.bytes_received = self.bytes_received.saturating_add(o.request_bytes);
    }

    /// Adds another partial aggregate: exact.
    pub fn merge(&mut self, other: &Metrics) {
        self.calls = self.calls.saturating_add(other.calls);
        self.errors = self.errors.saturating_add(other.errors);
        self.latency_count = self.latency_count.saturating_add(other.latency_count);
        self.latency_sum_nanos = self
            .latency_sum_nanos
            .saturating_add(other.latency_sum_nanos);
        self.apdex_satisfied = self.apdex_satisfied.saturating_add(other.apdex_satisfied);
        self.apdex_tolerating = self.apdex_tolerating.saturating_add(other.apdex_tolerating);
        self.mtls_calls = self.mtls_calls.saturating_add(other.mtls_calls);
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
        self.histogram.merge(&other.histogram);
    }

    /// The derived figures over a window of `minutes` minutes.
    pub fn summary(&self, minutes: f64) -> Summary {
        let calls = self.calls as f64;
        let ms = |nanos: f64| nanos / 1e6;
        let q = |p: f64| self.histogram.quantile(p).map(ms);
        Summary {
            calls: self.calls,
            errors: self.errors,
            cpm: if minutes > 0.0 { calls / minutes } else { 0.0 },
            success_rate: (self.calls > 0).then(|| 1.0 - self.errors as f64 / calls),
            avg_ms: (self.latency_count > 0)
                .then(|| ms(self.latency_sum_nanos as f64) / self.latency_count as f64),
            p50_ms: q(0.50),
            p75_ms: q(0.75),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            apdex: (self.calls > 0).then(|| {
                (self.apdex_satisfied as f64 + self.apdex_tolerating as f64 / 2.0) / calls
            }),
            mtls_calls: self.mtls_calls,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
        }
    }
}

/// The figures the API shows for an entity over a window (`calls`, `errors`, `cpm`,
/// `success_rate`, `avg_ms`, the percentiles, `apdex`, mTLS calls and bytes). Undefined
/// ratios (no calls, no latency) are `None` and serialise as `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub cpm: f64,
    pub success_rate: Option<f64>,
    pub avg_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p75_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub apdex: Option<f64>,
    pub mtls_calls: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}
