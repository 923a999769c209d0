//! Collector settings (`[collector]` in the config file).

use serde::Deserialize;

use crate::{Error, Result};

/// Collector settings (`[collector]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Largest accepted gRPC message, in bytes; larger ones are rejected and counted.
    pub max_message_bytes: usize,
    /// Pod or VM addresses of workloads without a proxy: `"10.0.0.7" = "legacy-db.data"`
    /// (or `"service/instance"`). Names callers that would otherwise be `unknown`.
    pub addresses: std::collections::BTreeMap<String, String>,
    /// gRPC connections older than this are asked to go away (HTTP/2 GOAWAY) so Envoy
    /// reconnects, through the load balancer, possibly to another collector: this is what
    /// spreads long-lived ALS streams over collectors added later. `0s` (the default)
    /// keeps connections for as long as the client does.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: std::time::Duration,
    /// After the GOAWAY, how long open streams get before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: std::time::Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_message_bytes: 4 * 1024 * 1024,
            addresses: Default::default(),
            max_connection_age: std::time::Duration::ZERO,
            max_connection_age_grace: std::time::Duration::from_secs(30),
        }
    }
}

impl CollectorConfig {
    /// Rejects values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.max_message_bytes < 1024 {
            return Err(Error::Config(
                "collector.max_message_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }
}
