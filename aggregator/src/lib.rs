//! Rolls calls up into exact per-minute metrics and keeps them in a [`Store`].
//!
//! In: batches of [`proto::Call`] from a bounded channel (the collector's backpressure).
//! Out: partial rows ([`row`]) written to the store every flush interval (Parquet files by
//! default, or ClickHouse), and the [`query::Reader`] the API reads them back with. A
//! [`Handle`] asks the running aggregator ([`task`]) to flush now or to drain and stop.
//!
//! - [`rollup`]: calls into per-minute rows, under interned name ids;
//! - [`row`], [`schema`]: the rows, their [`schema::Key`]s and tables;
//! - [`metrics`], [`histogram`]: the mergeable figures of a row;
//! - [`store`]: the [`Store`] trait, its configuration and its two backends;
//! - [`query`]: the one-call-once and source rules, read through one reader per request.

pub mod config;
mod error;
pub mod histogram;
pub mod metrics;
pub mod query;
pub mod rollup;
pub mod row;
pub mod schema;
mod self_metrics;
pub mod store;
pub mod task;

pub use config::AggregatorConfig;
pub use error::{Error, ErrorKind, Result};
pub use store::Store;
pub use task::{Handle, channel, spawn};
