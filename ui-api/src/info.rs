//! What the server says of itself at `GET /api/v1/status`: its version, its listeners'
//! addresses (the console's "how to send data here" page shows them), whether they serve
//! TLS, whether reads need a token, and the Grafana address edges link to.

use serde::Serialize;

/// One listener as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The bound address, e.g. `0.0.0.0:4317` (a client replaces an unspecified host
    /// with the one it reached the API at).
    pub address: String,
    pub tls: bool,
}

/// The server's own description, fixed at start.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: &'static str,
    /// `parquet` or `clickhouse`.
    pub store: &'static str,
    /// Envoy ALS and OTLP/gRPC.
    pub grpc: ListenerInfo,
    pub otlp_http: ListenerInfo,
    pub api: ListenerInfo,
    /// Whether senders must present an ingest token.
    pub ingest_tokens: bool,
    /// Whether the API's reads need a token.
    pub read_tokens: bool,
    /// `api.grafana_url`, without a trailing `/`.
    pub grafana_url: Option<String>,
}

impl ServerInfo {
    /// A description for tests and embedders that bind nothing themselves.
    pub fn unbound(store: &'static str) -> ServerInfo {
        let none = ListenerInfo {
            address: String::new(),
            tls: false,
        };
        ServerInfo {
            version: env!("CARGO_PKG_VERSION"),
            store,
            grpc: none.clone(),
            otlp_http: none.clone(),
            api: none,
            ingest_tokens: false,
            read_tokens: false,
            grafana_url: None,
        }
    }
}
