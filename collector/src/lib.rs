//! Receivers: gRPC and HTTP servers that turn telemetry into [`proto::Call`] batches.
//!
//! In: Envoy access-log streams (`envoy.service.accesslog.v3.AccessLogService`) and OTLP
//! trace exports (`opentelemetry.proto.collector.trace.v1.TraceService` on the same gRPC
//! listener, `POST /v1/traces` on the OTLP/HTTP one). Out: `Vec<Call>` batches on a
//! bounded channel to the aggregator ([`deliver`]). A full channel slows the senders down
//! (backpressure); a closed one answers `UNAVAILABLE`.
//!
//! - [`grpc`]: the shared gRPC listener, bounded by `connections` (a connection limit
//!   and a handshake timeout);
//! - [`als`]: the access-log service, reporters and peers, entries into calls;
//! - [`otlp`]: the trace receivers (gRPC, HTTP), spans into halves, halves into calls;
//! - [`naming`]: service, instance and endpoint names both receivers share;
//! - [`reject`]: the one refusal type, with its gRPC code, HTTP status and reason;
//! - [`budget`]: what decoding may cost in memory, estimated from the wire before
//!   decoding (by `wire`, through the gRPC `codec`);
//! - [`metrics`]: the receivers' self-metrics.

pub mod als;
pub mod auth;
pub mod budget;
mod codec;
pub mod config;
mod connections;
mod deliver;
mod error;
pub mod grpc;
pub mod metrics;
pub mod naming;
pub mod otlp;
pub mod reject;
mod wire;

pub use budget::DecodeBudget;
pub use config::CollectorConfig;
pub use error::{Error, Result};
pub use grpc::{Deps, serve_grpc};
pub use metrics::CollectorMetrics;
pub use reject::Rejection;
