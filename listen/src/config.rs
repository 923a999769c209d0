//! `[http]`: the bounds of every HTTP listener.

use std::time::Duration;

use serde::Deserialize;

/// `[http]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Most connections open at once on one listener; further ones are closed at once
    /// and counted.
    pub max_connections: usize,
    /// A client must send a request's headers within this time of the connection opening
    /// or of its previous answer; past it the connection is closed. This is also the idle
    /// timeout of keep-alive connections.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest one request may take, its body and the answer included: past it the
    /// answer is `408` and the connection closes. Keep it above `api.query_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
        }
    }
}

impl HttpConfig {
    /// Checks the settings; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err("http.max_connections must be between 1 and 1000000".into());
        }
        let sane = |d: Duration| !d.is_zero() && d <= Duration::from_secs(3600);
        if !sane(self.header_read_timeout) || !sane(self.request_timeout) {
            return Err(
                "http.header_read_timeout and http.request_timeout must be between 1ms and 1h"
                    .into(),
            );
        }
        Ok(())
    }
}
