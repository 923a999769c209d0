//! Aggregator settings (`[aggregator]` in the config file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn default_flush_interval() -> Duration {
    Duration::from_secs(5)
}

/// Aggregator settings (`[aggregator]` in the config file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Apdex threshold T in milliseconds.
    pub apdex_threshold_ms: u64,
    /// Distinct endpoints kept per service; the rest count under `(overflow)`.
    pub max_endpoints_per_service: usize,
    /// Distinct service names (including virtual nodes such as external hosts) kept; the
    /// rest count under the node `(overflow)`.
    pub max_services: usize,
    /// A service or endpoint name not seen for between one and two of these leaves its
    /// cap, so one-off names cannot hold places until a restart.
    #[serde(with = "humantime_serde")]
    pub cap_forget_after: Duration,
    /// How often partial rows are written to the store (data is queryable after a flush).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Rows accumulated past which the aggregator writes them at once, without waiting for
    /// `flush_interval`: live traffic fills a few minutes' rows per flush, but a backfill of
    /// past hours (many minutes per second) would otherwise hold them all until the tick.
    pub flush_rows: usize,
    /// Calls starting further than this in the future are dropped and counted.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
    /// How often compaction and retention run.
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// Capacity of the collector → aggregator channel, in batches.
    pub channel_capacity: usize,
    /// Calls in flight between collector and aggregator; senders wait beyond it.
    pub max_in_flight_calls: u32,
    /// Rows kept in memory while the store refuses writes; past this, a failed flush's
    /// rows are dropped, counted and logged at ERROR.
    pub max_pending_rows: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        AggregatorConfig {
            apdex_threshold_ms: 500,
            max_endpoints_per_service: 1000,
            max_services: 10_000,
            cap_forget_after: Duration::from_secs(3600),
            flush_interval: default_flush_interval(),
            flush_rows: 100_000,
            max_future: Duration::from_secs(300),
            maintenance_interval: Duration::from_secs(60),
            channel_capacity: 256,
            max_in_flight_calls: 500_000,
            max_pending_rows: 2_000_000,
        }
    }
}

impl AggregatorConfig {
    /// Rejects values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        for (name, d) in [
            ("aggregator.flush_interval", self.flush_interval),
            ("aggregator.maintenance_interval", self.maintenance_interval),
            ("aggregator.cap_forget_after", self.cap_forget_after),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be longer than zero")));
            }
        }
        if self.flush_rows == 0 {
            return Err(Error::Config(
                "aggregator.flush_rows must be at least 1".into(),
            ));
        }
        if self.channel_capacity == 0 {
            return Err(Error::Config(
                "aggregator.channel_capacity must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
