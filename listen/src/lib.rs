//! The HTTP listeners' bounds, shared by the API (8080) and OTLP/HTTP (4318): a connection
//! limit, a header-read timeout that also closes idle keep-alive connections (slowloris),
//! and a whole-request timeout. HTTP/1.1 only, as Prometheus' own server is.
//!
//! - [`config`]: `[http]` in the config file;
//! - [`serve`]: the accept loop, one bounded hyper connection per accepted socket;
//! - [`metrics`]: open and refused connections per listener.

pub mod config;
pub mod metrics;
pub mod serve;

pub use config::HttpConfig;
pub use metrics::HttpMetrics;
pub use serve::serve;
