//! Test harness: the whole stack on `127.0.0.1:0` with a temporary data dir, real gRPC
//! clients, real HTTP, and an explicit flush instead of sleeping.

#![allow(dead_code)]

pub mod clickhouse;
pub mod envoy_fixtures;
pub mod otel;
pub mod tls;
pub mod truth;

use std::path::Path;

use meshscope::{App, Config};
use serde_json::Value;

pub struct Stack {
    pub app: App,
    pub grpc: String,
    pub http: String,
    /// OTLP/HTTP base URL.
    pub otlp_http: String,
}

/// `s` percent-encoded for a URL's query (every byte but letters, digits and `.-_`).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.otlp_http_addr = "127.0.0.1:0".into();
    c.store.data_dir = dir.to_path_buf();
    c
}

pub async fn start(config: Config) -> Stack {
    listen::tls::install_default_provider();
    let app = App::start(config).await.expect("start meshscope");
    Stack {
        grpc: format!("http://127.0.0.1:{}", app.grpc_addr.port()),
        http: format!("http://127.0.0.1:{}", app.http_addr.port()),
        otlp_http: format!("http://127.0.0.1:{}", app.otlp_http_addr.port()),
        app,
    }
}

impl Stack {
    pub async fn flush(&self) {
        self.app.flush().await.expect("flush");
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}{}", self.http, path_and_query))
            .await
            .expect("http get");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path_and_query}: not JSON ({e}): {body}"));
        (status, json)
    }

    /// POSTs `form` url-encoded to `path`; the status and the JSON answer.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.http))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        let body = resp.text().await.expect("body");
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        (status, json)
    }

    pub async fn ok(&self, path_and_query: &str) -> Value {
        let (status, json) = self.get(path_and_query).await;
        assert_eq!(status, 200, "{path_and_query}: {json}");
        json
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Waits (10 s at most) until `metric` on `/metrics` satisfies `ok`; the last text.
    pub async fn wait_metric(&self, metric: &str, ok: impl Fn(f64) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = self.metrics().await;
            if ok(metric_value(&text, metric)) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{metric} did not get there: {text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        self.app.shutdown().await.expect("clean shutdown");
    }
}

/// Waits (30 s at most) until a server process answers `GET {http}/healthz`.
pub async fn wait_healthy(http: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    listen::tls::install_default_provider();
    while !reqwest::get(format!("{http}/healthz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{http} did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A port nothing listens on now.
/// Sends SIGTERM to a `meshscope` child process, as a user stopping it does.
pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("a running child").to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// Calls into each real service, from an `/api/v1/services` answer.
pub fn service_calls(list: &Value) -> std::collections::BTreeMap<String, u64> {
    list["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| s["real"].as_bool() != Some(false))
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["calls"].as_u64().expect("calls"),
            )
        })
        .collect()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Sum of the samples of a metric (all label sets) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    testkit::scrape::metric_sum(text, name)
}

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

/// Relative difference.
pub fn rel(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        a.abs()
    } else {
        (a - b).abs() / b.abs()
    }
}

/// The exact quantile with the histogram's rank convention: `⌊q·(n−1)⌋`, 0-based.
pub fn exact_quantile(values: &mut [u64], q: f64) -> f64 {
    values.sort_unstable();
    values[(q * (values.len() - 1) as f64).floor() as usize] as f64
}

/// Checks `calls`, `errors`, the exact mean latency and the p50/p75/p90/p95/p99 (within
/// the histogram's 2 %) of one API entity against values computed from the input.
pub fn check_calls_and_latency(
    what: &str,
    got: &Value,
    calls: u64,
    errors: u64,
    latencies: &[u64],
) {
    assert_eq!(got["calls"].as_u64(), Some(calls), "{what} calls: {got}");
    assert_eq!(got["errors"].as_u64(), Some(errors), "{what} errors: {got}");
    let sum: u64 = latencies.iter().sum();
    let avg = sum as f64 / latencies.len() as f64 / 1e6;
    let got_avg = got["avg_ms"].as_f64().expect("avg_ms");
    assert!(rel(got_avg, avg) < 1e-9, "{what} avg_ms {got_avg} != {avg}");
    let mut sorted = latencies.to_vec();
    for (field, q) in [
        ("p50_ms", 0.5),
        ("p75_ms", 0.75),
        ("p90_ms", 0.9),
        ("p95_ms", 0.95),
        ("p99_ms", 0.99),
    ] {
        let exact = exact_quantile(&mut sorted, q) / 1e6;
        let est = got[field].as_f64().expect(field);
        assert!(
            rel(est, exact) <= 0.02 + 1e-9,
            "{what} {field} {est} vs exact {exact}"
        );
    }
}
