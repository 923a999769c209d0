//! How meshscope listens. The HTTP listeners' bounds, shared by the API (8080) and
//! OTLP/HTTP (4318): a connection limit, a header-read timeout that also closes idle
//! keep-alive connections (slowloris), and a whole-request timeout; HTTP/1.1 only, as
//! Prometheus' own server is. And, for every listener (gRPC too), TLS and tokens.
//!
//! - [`config`]: `[http]`, `[tls]` and `[auth]` in the config file;
//! - [`serve`]: the accept loop, one bounded hyper connection per accepted socket, TLS
//!   when configured;
//! - [`tls`]: rustls server configurations reloaded from their PEM files;
//! - [`tokens`]: token files and the check of a presented token;
//! - [`auth`]: the HTTP middleware that asks for tokens;
//! - [`io`]: a connection that is plain or TLS; `reread`: the timer that re-reads files;
//! - [`metrics`], [`security_metrics`]: connections, refusals, reloads.

pub mod auth;
pub mod config;
mod error;
pub mod io;
pub mod metrics;
mod reread;
pub mod security_metrics;
pub mod serve;
pub mod tls;
pub mod tokens;

pub use config::{AuthConfig, HttpConfig, Listener, TlsConfig};
pub use error::Error;
pub use metrics::HttpMetrics;
pub use security_metrics::SecurityMetrics;
pub use serve::serve;
pub use tls::ServerTls;
pub use tokens::Tokens;
