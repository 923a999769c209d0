//! The [`Store`] trait every backend implements, its request type, its configuration
//! ([`config`]), the resolutions both backends keep ([`tiers`]) and [`open`], which builds
//! the configured backend.

pub mod clickhouse;
pub mod config;
mod open;
pub mod parquet;
pub mod tiers;

use std::sync::Arc;

use async_trait::async_trait;

use crate::Result;
use crate::row::{Row, RowBatch};
use crate::schema::{Key, Table};

pub use config::{Backend, ClickHouseConfig, StoreConfig};
pub use open::open;

/// What to read: one table, a half-open minute range, equality filters on key columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub table: Table,
    /// Unix seconds, inclusive, aligned to a minute.
    pub start_minute: i64,
    /// Unix seconds, exclusive, aligned to a minute.
    pub end_minute: i64,
    /// `(key, value)` pairs that must all match; every key is one of the table's. Values
    /// are data, never query text: backends bind or escape them.
    pub filters: Vec<(Key, String)>,
    /// Keep minutes apart (time series) or merge the whole range (`minute` is then the
    /// range start).
    pub by_minute: bool,
}

/// Seconds per UTC day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// Unix seconds of the start of the UTC day holding `t`.
pub fn day_start(t: i64) -> i64 {
    t.div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY
}

/// The first UTC day (unix seconds) that retention keeps: today and the `retention_days`
/// days before it. `None` keeps everything (`retention_days = 0`).
pub fn retention_cutoff(retention_days: u32) -> Option<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (retention_days > 0).then(|| day_start(now) - i64::from(retention_days) * SECONDS_PER_DAY)
}

/// Persistent storage of rollup rows.
///
/// Writes are deltas: the same key may be written many times and reads return the sum.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Takes a batch of partial rows. The Parquet store has it durably on disk when this
    /// returns; the ClickHouse store has it queued (in memory or spooled to disk) for
    /// ClickHouse ([`Store::sync`] waits until it is there). On error nothing of the batch
    /// is kept, and the caller may retry with the same batch.
    async fn write(&self, batch: Arc<RowBatch>) -> Result<()>;

    /// Rows matching the request, merged per `(keys, side, source)` (and per minute when
    /// `by_minute`).
    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>>;

    /// Housekeeping: compaction and retention. Called periodically.
    async fn maintain(&self) -> Result<()>;

    /// Waits until everything written so far is visible to [`Store::scan`] (a backend
    /// that queues writes drains its queue), or fails after the backend's bound.
    async fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Called once at shutdown after the last write: a backend that buffers writes gets
    /// them to their destination or somewhere durable.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
