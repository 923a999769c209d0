//! The bounds every read runs within ([`crate::ApiConfig`]): a slot among
//! `query_max_concurrency`, a deadline (`query_timeout`) covering the wait for the slot and
//! the work, and a [`Budget`] that CPU-bound evaluation checks as it goes: the deadline, a
//! cancel flag raised when the request goes away (client disconnected, timed out), and
//! the samples touched over the whole query. Every refusal is counted in
//! `meshscope_api_queries_refused_total{reason}`. The read routes' middleware that applies
//! them is [`crate::bounded`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::config::ApiConfig;

/// Why a read was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Past `query_timeout`.
    Timeout,
    /// The request went away before its answer was ready.
    Cancelled,
    /// Over `query_max_samples`.
    Samples,
    /// Over `query_max_rows`.
    Rows,
}

impl Stop {
    fn reason(self) -> &'static str {
        match self {
            Stop::Timeout => "timeout",
            Stop::Cancelled => "cancelled",
            Stop::Samples => "samples",
            Stop::Rows => "rows",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The API's read bounds and their counters; one per process.
#[derive(Debug)]
pub struct Limits {
    config: ApiConfig,
    pub(crate) slots: Arc<Semaphore>,
    /// Reads holding a slot now (`meshscope_api_queries_in_flight`).
    pub(crate) in_flight: Gauge,
    refused: Family<ReasonLabel, Counter>,
}

impl Limits {
    /// The bounds of `config`, with their counter registered in `registry`.
    pub fn new(config: &ApiConfig, registry: &mut Registry) -> Limits {
        let refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "api_queries_refused",
            "Reads stopped by a bound: timeout (api.query_timeout, waiting for a slot included), cancelled (the client went away), samples (api.query_max_samples), rows (api.query_max_rows)",
            refused.clone(),
        );
        let limits = Limits::unregistered(config, refused);
        registry.register(
            "api_queries_in_flight",
            "Reads being evaluated now, each holding one of api.query_max_concurrency slots",
            limits.in_flight.clone(),
        );
        limits
    }

    fn unregistered(config: &ApiConfig, refused: Family<ReasonLabel, Counter>) -> Limits {
        Limits {
            config: config.clone(),
            slots: Arc::new(Semaphore::new(config.query_max_concurrency)),
            in_flight: Gauge::default(),
            refused,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// Reads refused for `reason` so far (tests).
    #[cfg(test)]
    pub(crate) fn refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&ReasonLabel { reason }).get()
    }

    pub(crate) fn count(&self, stop: Stop) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: stop.reason(),
            })
            .inc();
    }
}

impl Default for Limits {
    /// The default bounds, counted nowhere (for routers built in tests).
    fn default() -> Limits {
        Limits::unregistered(&ApiConfig::default(), Family::default())
    }
}

/// What one read may still spend. Cheap to clone; every clone shares the count.
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    deadline: Instant,
    cancelled: AtomicBool,
    stopped: std::sync::Mutex<Option<Stop>>,
    samples: AtomicUsize,
    max_samples: usize,
    rows: AtomicUsize,
    max_rows: usize,
    timeout: Duration,
}

impl Budget {
    pub(crate) fn new(config: &ApiConfig) -> Budget {
        Budget {
            inner: Arc::new(BudgetInner {
                deadline: Instant::now() + config.query_timeout,
                cancelled: AtomicBool::new(false),
                stopped: std::sync::Mutex::new(None),
                samples: AtomicUsize::new(0),
                max_samples: config.query_max_samples,
                rows: AtomicUsize::new(0),
                max_rows: config.query_max_rows,
                timeout: config.query_timeout,
            }),
        }
    }

    /// A budget bounded only by `max_samples` (tests).
    #[cfg(test)]
    pub fn with_samples(max_samples: usize) -> Budget {
        let config = ApiConfig {
            query_max_samples: max_samples,
            ..ApiConfig::default()
        };
        Budget::new(&config)
    }

    /// Records why the read stopped (the first reason sticks) and returns it.
    pub(crate) fn stop(&self, why: Stop) -> Stop {
        let mut s = self.inner.stopped.lock().unwrap_or_else(|e| e.into_inner());
        *s.get_or_insert(why)
    }

    /// Whether the read may go on: `Err` once it is cancelled or past its deadline.
    pub fn check(&self) -> Result<(), Stop> {
        if self.inner.cancelled.load(Ordering::Relaxed) {
            return Err(self.stop(Stop::Cancelled));
        }
        if Instant::now() >= self.inner.deadline {
            return Err(self.stop(Stop::Timeout));
        }
        Ok(())
    }

    /// Spends `n` samples of the query's budget, then checks the deadline.
    pub fn spend(&self, n: usize) -> Result<(), Stop> {
        let before = self.inner.samples.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.inner.max_samples {
            return Err(self.stop(Stop::Samples));
        }
        self.check()
    }

    /// Spends `n` stored rows of a JSON view's budget, then checks the deadline.
    pub fn spend_rows(&self, n: usize) -> Result<(), Stop> {
        let before = self.inner.rows.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.inner.max_rows {
            return Err(self.stop(Stop::Rows));
        }
        self.check()
    }

    /// When the read must end.
    pub(crate) fn deadline(&self) -> Instant {
        self.inner.deadline
    }

    /// Raises the cancel flag: blocking work stops at its next check.
    pub(crate) fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Relaxed);
    }

    /// The setting a stop names, for its message.
    pub fn message(&self, stop: Stop) -> String {
        match stop {
            Stop::Timeout => format!(
                "query timed out after {:?} (api.query_timeout, --query.timeout)",
                self.inner.timeout
            ),
            Stop::Cancelled => "query cancelled: the request went away".into(),
            Stop::Samples => format!(
                "query processing would touch more than {} samples (api.query_max_samples, --query.max-samples); use shorter ranges, fewer series or a larger step",
                self.inner.max_samples
            ),
            Stop::Rows => format!(
                "the view would read more than {} stored rows (api.query_max_rows); use a shorter window or a narrower filter",
                self.inner.max_rows
            ),
        }
    }

    /// A stop as the aggregator's error, for a read that a meter ended: 422 past a bound,
    /// 503 past the deadline.
    fn bounded(&self, stop: Stop) -> aggregator::Error {
        aggregator::Error::Bounded {
            kind: match stop {
                Stop::Rows | Stop::Samples => aggregator::ErrorKind::TooLarge,
                Stop::Timeout | Stop::Cancelled => aggregator::ErrorKind::Unavailable,
            },
            message: self.message(stop),
        }
    }

    /// Why the read stopped, if it did.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        *self.inner.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A JSON view's reader counts its rows here: past the row budget it answers 422, past
/// the deadline 503.
impl aggregator::query::RowMeter for Budget {
    fn spend(&self, rows: usize) -> aggregator::Result<()> {
        self.spend_rows(rows).map_err(|stop| self.bounded(stop))
    }

    fn remaining(&self) -> usize {
        self.inner
            .max_rows
            .saturating_sub(self.inner.rows.load(Ordering::Relaxed))
    }
}

/// A PromQL query's reads count the rows they return as samples loaded into memory,
/// against the query's sample budget (`api.query_max_samples`, as Prometheus'
/// `--query.max-samples` bounds the samples a query loads): past it 422, past the
/// deadline 503.
pub struct SampleMeter<'a>(pub &'a Budget);

impl aggregator::query::RowMeter for SampleMeter<'_> {
    fn spend(&self, rows: usize) -> aggregator::Result<()> {
        self.0.spend(rows).map_err(|stop| self.0.bounded(stop))
    }

    fn remaining(&self) -> usize {
        self.0
            .inner
            .max_samples
            .saturating_sub(self.0.inner.samples.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_budget_counts_over_the_whole_query() {
        let b = Budget::with_samples(10);
        assert!(b.spend(6).is_ok());
        assert!(b.clone().spend(4).is_ok());
        assert_eq!(b.spend(1), Err(Stop::Samples));
        // The first stop sticks, whatever comes next.
        b.inner.cancelled.store(true, Ordering::Relaxed);
        assert_eq!(b.check(), Err(Stop::Samples));
        assert_eq!(b.stopped(), Some(Stop::Samples));
    }
}
