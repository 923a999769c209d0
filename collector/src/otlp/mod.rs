//! OTLP trace receivers: `TraceService/Export` over gRPC and `POST /v1/traces` over HTTP
//! (protobuf or OTLP/JSON, optionally gzip), both feeding one [`OtlpReceiver`].
//!
//! Spans become [`proto::Call`]s with `source = trace` on the same channel as the mesh's
//! calls: [`spans`] turns a span into a caller's or callee's half, [`pairing`] joins the
//! halves. Spans that cannot be used are answered with partial success (`rejected_spans`
//! and a message) and counted; a body that does not decode is rejected whole.
//!
//! - [`grpc`]: `TraceService/Export` (its codec answers undecodable bodies with
//!   `INVALID_ARGUMENT`);
//! - [`http`]: `POST /v1/traces`, protobuf or OTLP/JSON, gzip bounded after decompression;
//! - [`spans`], [`pairing`]: spans into halves, halves into calls;
//! - [`metrics`]: the receivers' self-metrics.

pub mod cost;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod pairing;
mod seen;
pub mod spans;

use crate::budget::{Charged, DecodeBudget};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use proto::CallBatch;
use proto::channel::CallSender;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::debug;

use crate::deliver::deliver;
use crate::metrics::CollectorMetrics;
use crate::reject::Rejection;
use crate::{Error, Result};
use pairing::{Pairing, PairingSettings};

pub use grpc::TraceGrpc;
pub use metrics::OtlpMetrics;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// The gRPC path of `TraceService/Export`.
pub const METHOD_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// OTLP settings (`[otlp]` in the config file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// How long a CLIENT or SERVER span waits for its partner before it is recorded
    /// unpaired. Exporters batch for a few seconds, so keep it above their delay.
    #[serde(with = "humantime_serde")]
    pub pairing_ttl: Duration,
    /// Most spans waiting for a partner; past it the oldest is recorded unpaired early.
    pub pairing_max_spans: usize,
    /// A span sent again within this window (an exporter's retry after a timeout) counts
    /// once.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Most span ids remembered for that; past it the oldest are forgotten.
    pub dedup_max_spans: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            pairing_ttl: Duration::from_secs(10),
            pairing_max_spans: 100_000,
            dedup_window: Duration::from_secs(300),
            dedup_max_spans: 262_144,
        }
    }
}

impl OtlpConfig {
    /// Rejects values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.pairing_ttl.is_zero() || self.pairing_ttl > Duration::from_secs(3600) {
            return Err(Error::Config(
                "otlp.pairing_ttl must be longer than zero and at most 1h".into(),
            ));
        }
        if self.dedup_window > Duration::from_secs(86_400) || self.dedup_max_spans > 16 << 20 {
            return Err(Error::Config(
                "otlp.dedup_window must be at most 1d and otlp.dedup_max_spans at most 16777216"
                    .into(),
            ));
        }
        if self.pairing_max_spans == 0 {
            return Err(Error::Config(
                "otlp.pairing_max_spans must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What one export request came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    pub rejected_spans: i64,
    /// The first rejection's reason, for the partial-success message.
    pub message: String,
}

impl Exported {
    fn response(self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: (self.rejected_spans > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: self.rejected_spans,
                error_message: self.message,
            }),
        }
    }
}

/// The aggregator has stopped; nothing can be accepted.
struct Inner {
    calls: CallSender,
    pairing: Mutex<Pairing>,
    metrics: OtlpMetrics,
    collector: CollectorMetrics,
    max_message_bytes: usize,
    budget: DecodeBudget,
    ttl: Duration,
}

/// Converts OTLP export requests into calls. Cheap to clone; serves both transports.
#[derive(Clone)]
pub struct OtlpReceiver {
    inner: Arc<Inner>,
}

impl OtlpReceiver {
    /// A receiver sending calls into `calls`.
    pub fn new(
        config: &OtlpConfig,
        max_message_bytes: usize,
        calls: CallSender,
        collector: CollectorMetrics,
        metrics: OtlpMetrics,
        budget: DecodeBudget,
    ) -> OtlpReceiver {
        let settings = PairingSettings {
            ttl: config.pairing_ttl,
            max_waiting: config.pairing_max_spans,
            dedup_window: config.dedup_window,
            dedup_max_spans: config.dedup_max_spans,
        };
        OtlpReceiver {
            inner: Arc::new(Inner {
                calls,
                pairing: Mutex::new(Pairing::new(settings, metrics.clone())),
                metrics,
                collector,
                max_message_bytes,
                budget,
                ttl: config.pairing_ttl,
            }),
        }
    }

    fn pairing(&self) -> std::sync::MutexGuard<'_, Pairing> {
        self.inner.pairing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands calls to the aggregator. The send runs in its own task: the calls may
    /// complete pairs from earlier requests, so they must arrive even if the exporter
    /// that caused them gives up (times out, disconnects) while backpressure holds it.
    async fn send(&self, batch: CallBatch) -> Result<(), Rejection> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        let task =
            tokio::spawn(async move { deliver(&inner.calls, &inner.collector, batch).await });
        task.await.unwrap_or(Err(Rejection::ShuttingDown))
    }

    /// Converts one decoded request and hands the calls it completes to the aggregator.
    pub async fn export(
        &self,
        request: Charged<ExportTraceServiceRequest>,
    ) -> Result<Exported, Rejection> {
        let (request, charge) = request.into_parts();
        let m = &self.inner.metrics;
        let mut exported = Exported::default();
        let mut first: Option<&'static str> = None;
        let mut reject = |n: usize, r: spans::Reject| {
            m.spans_rejected(r.reason(), n as u64);
            first.get_or_insert(r.message());
            exported.rejected_spans += n as i64;
        };
        // Convert outside the lock; take it only to pair.
        let mut halves = Vec::new();
        for rs in &request.resource_spans {
            let count: usize = rs.scope_spans.iter().map(|s| s.spans.len()).sum();
            m.received.inc_by(count as u64);
            let node = match spans::resource_node(rs.resource.as_ref()) {
                Ok(n) => n,
                Err(r) => {
                    reject(count, r);
                    continue;
                }
            };
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                match spans::half(&node, span) {
                    Ok(Some(half)) => halves.push(half),
                    Ok(None) => {
                        m.ignored.inc();
                    }
                    Err(r) => reject(1, r),
                }
            }
        }
        // The halves own what they need: free the request and its share of the decoding
        // budget before pairing and waiting for the channel.
        drop(request);
        drop(charge);
        if let Some(first) = first {
            exported.message = format!(
                "{} span(s) rejected; the first because {first}",
                exported.rejected_spans
            );
            debug!(rejected = exported.rejected_spans, message = %exported.message, "spans rejected");
        }
        let mut out = CallBatch::new();
        let now = Instant::now();
        {
            let mut pairing = self.pairing();
            for half in halves {
                pairing.offer(half, now, &mut out);
            }
        }
        self.send(out).await?;
        Ok(exported)
    }

    /// Records every span whose partner did not arrive in time.
    pub async fn expire(&self) -> Result<(), Rejection> {
        let mut out = CallBatch::new();
        self.pairing().expire(Instant::now(), &mut out);
        self.send(out).await
    }

    /// Records every waiting span unpaired now (admin flush, shutdown).
    pub async fn flush(&self) -> Result<(), Rejection> {
        let mut out = CallBatch::new();
        self.pairing().flush(&mut out);
        self.send(out).await
    }

    /// Runs the expiry clock until `stop` turns true.
    pub async fn run_expiry(self, mut stop: watch::Receiver<bool>) {
        let tick = (self.inner.ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let stopped = *stop.borrow();
            if stopped || self.expire().await.is_err() {
                return;
            }
        }
    }
}
