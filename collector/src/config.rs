//! Collector settings (`[collector]` in the config file).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Collector settings (`[collector]` in the config file).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
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
    /// What all messages being decoded at once may take in memory, estimated from their
    /// wire shape before decoding. An access-log stream that finds it spent waits; an
    /// OTLP export is answered `UNAVAILABLE` (gRPC) or 503 (HTTP), which exporters retry.
    pub max_decoding_bytes: usize,
    /// Most access-log entries or spans one message may hold.
    pub max_items_per_message: usize,
    /// Most concurrent gRPC streams per connection (HTTP/2 `MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Most connections open on the gRPC listener; further ones are closed at once.
    pub max_connections: usize,
    /// Most access-log streams open at once (about 10 KiB each while quiet); further
    /// ones are refused `UNAVAILABLE`, which Envoy retries.
    pub max_als_streams: usize,
    /// A gRPC connection must send the HTTP/2 preface within this, or it is closed.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: std::time::Duration,
    /// HTTP/2 pings on idle gRPC connections at this interval; a peer that does not
    /// answer within `keepalive_timeout` is disconnected. `0s` turns pings off.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: std::time::Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            max_message_bytes: 4 * 1024 * 1024,
            addresses: Default::default(),
            max_connection_age: std::time::Duration::ZERO,
            max_connection_age_grace: std::time::Duration::from_secs(30),
            max_decoding_bytes: 64 * 1024 * 1024,
            max_items_per_message: 65_536,
            max_concurrent_streams: 256,
            max_connections: 10_000,
            max_als_streams: 20_000,
            handshake_timeout: std::time::Duration::from_secs(10),
            keepalive_interval: std::time::Duration::from_secs(60),
            keepalive_timeout: std::time::Duration::from_secs(20),
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
        if self.max_message_bytes > 256 * 1024 * 1024 {
            return Err(Error::Config(
                "collector.max_message_bytes must be at most 256 MiB".into(),
            ));
        }
        // A message's estimate is its bytes plus the structs they become: a budget of a few
        // messages' size is the least that lets a large one through.
        if self.max_decoding_bytes < 4 * self.max_message_bytes {
            return Err(Error::Config(format!(
                "collector.max_decoding_bytes ({}) must be at least 4 × collector.max_message_bytes ({})",
                self.max_decoding_bytes, self.max_message_bytes
            )));
        }
        if self.max_decoding_bytes > (1 << 40) {
            return Err(Error::Config(
                "collector.max_decoding_bytes must be at most 1 TiB".into(),
            ));
        }
        if self.max_connections == 0
            || self.max_als_streams == 0
            || self.handshake_timeout.is_zero()
        {
            return Err(Error::Config(
                "collector.max_connections, collector.max_als_streams and collector.handshake_timeout must be above zero"
                    .into(),
            ));
        }
        if self.max_items_per_message == 0 || self.max_concurrent_streams == 0 {
            return Err(Error::Config(
                "collector.max_items_per_message and collector.max_concurrent_streams must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
