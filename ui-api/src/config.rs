//! The API's settings (`[api]` in the config file): the bounds every query runs within, and
//! whether the admin endpoints answer. The names and defaults follow Prometheus' own
//! flags (`--query.timeout`, `--query.max-samples`, `--query.max-concurrency`,
//! `--web.enable-admin-api`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[api]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Longest one read (a PromQL query, a metadata listing, a JSON view) may take,
    /// waiting for a slot included; past it the request is answered 503 and its work is
    /// stopped.
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Most samples one PromQL query may load (each row its reads return) and touch over
    /// all its evaluation steps.
    pub query_max_samples: usize,
    /// Most stored rows one JSON view may read (its scans together); a scan stops reading
    /// past it.
    pub query_max_rows: usize,
    /// Most reads evaluated at once; further ones wait for a slot within their timeout.
    pub query_max_concurrency: usize,
    /// Whether `POST /api/v1/admin/…` answers (off: 503, as Prometheus does).
    pub enable_admin_api: bool,
    /// Least time between two admin flushes: requests in between share the next one.
    #[serde(with = "humantime_serde")]
    pub admin_flush_interval: Duration,
    /// Grafana's address (`http(s)://host[:port][/path]`): the console links an edge to
    /// its edge dashboard there. Unset: no links.
    pub grafana_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            query_timeout: Duration::from_secs(120),
            query_max_samples: 50_000_000,
            query_max_rows: 1_000_000,
            query_max_concurrency: 20,
            enable_admin_api: false,
            admin_flush_interval: Duration::from_secs(1),
            grafana_url: None,
        }
    }
}

impl ApiConfig {
    /// Checks the settings; the message names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.query_timeout < Duration::from_millis(1)
            || self.query_timeout > Duration::from_secs(3600)
        {
            return Err("api.query_timeout must be between 1ms and 1h".into());
        }
        if self.query_max_samples == 0 {
            return Err("api.query_max_samples must be at least 1".into());
        }
        if self.query_max_rows == 0 {
            return Err("api.query_max_rows must be at least 1".into());
        }
        if !(1..=1024).contains(&self.query_max_concurrency) {
            return Err("api.query_max_concurrency must be between 1 and 1024".into());
        }
        if self.admin_flush_interval > Duration::from_secs(3600) {
            return Err("api.admin_flush_interval must be at most 1h".into());
        }
        if let Some(url) = &self.grafana_url {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
            if !host_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "api.grafana_url must be an http:// or https:// address with a host, not {url:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_grafana(url: &str) -> Result<(), String> {
        ApiConfig {
            grafana_url: Some(url.into()),
            ..ApiConfig::default()
        }
        .validate()
    }

    /// The console puts `api.grafana_url` in links: only an http(s) address with a host.
    #[test]
    fn grafana_url_is_an_http_address_with_a_host() {
        for good in [
            "http://grafana:3000",
            "https://grafana.example.com/",
            "https://example.com/grafana",
        ] {
            assert_eq!(with_grafana(good), Ok(()), "{good}");
        }
        for bad in [
            "javascript:alert(1)",
            "ftp://grafana",
            "https://",
            "https:///path",
            "grafana.example.com",
            "https://grafana example.com",
            "https://grafana\n.example.com",
        ] {
            let err = with_grafana(bad).expect_err(bad);
            assert!(err.contains("api.grafana_url"), "{err}");
        }
    }
}
