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

use self::tiers::TierPlan;
use crate::Result;
use crate::row::{Row, RowBatch};
use crate::schema::{Key, Table};

pub use config::{Backend, ClickHouseConfig, StoreConfig};
pub use open::open;

/// What to read: one table, a half-open minute range, equality filters on key columns, how
/// finely to keep minutes apart and whether latency histograms are needed.
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
    /// Which minutes are merged into one row (see [`Resolution`]).
    pub resolution: Resolution,
    /// Whether the rows need their latency histograms; without, a store may leave them
    /// empty and read less.
    pub histograms: bool,
    /// Most rows the answer may hold: a store that would return more stops reading and
    /// fails with [`crate::Error::TooManyRows`] (the read's memory stays bounded). A store
    /// may count rows it would leave out later (the other side, with `chosen_side`).
    pub max_rows: Option<usize>,
    /// The caller reads each key's side as the side rule chooses it (the server's reports
    /// when there are any in the window, else the client's): a store may then leave out
    /// the client rows of a key and source that has server rows in the window. (It may
    /// also return them; the caller applies the rule either way.)
    pub chosen_side: bool,
}

/// How finely a scan keeps the minutes of its window apart. Each row it returns sums the
/// stored rows of one key (and side and source) in one part of the window, and carries the
/// start of that part as its `minute`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// One part: the whole window.
    Window,
    /// Every minute apart (read from minute rows only).
    Minute,
    /// The window split at these minutes (see [`Resolution::parts`]); each part read from
    /// the coarsest tier that covers it, as a merged read is.
    Parts(Arc<[i64]>),
}

impl Resolution {
    /// The window `[start, end)` split at `cuts` (unix seconds): each is taken down to its
    /// minute, and those outside `(start, end)` are dropped; no cut left is [`Window`].
    ///
    /// [`Window`]: Resolution::Window
    pub fn parts(start: i64, end: i64, cuts: impl IntoIterator<Item = i64>) -> Resolution {
        let mut cuts: Vec<i64> = cuts
            .into_iter()
            .map(|c| c.div_euclid(60) * 60)
            .filter(|c| *c > start && *c < end)
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        if cuts.is_empty() {
            Resolution::Window
        } else {
            Resolution::Parts(cuts.into())
        }
    }

    /// The start of the part of the window beginning at `start` that holds `minute`.
    pub fn place(&self, start: i64, minute: i64) -> i64 {
        match self {
            Resolution::Window => start,
            Resolution::Minute => minute,
            Resolution::Parts(cuts) => match cuts.partition_point(|c| *c <= minute) {
                0 => start,
                i => cuts[i - 1],
            },
        }
    }

    /// The end of the part starting at `part` of a window ending at `end` (the minute
    /// after it for [`Resolution::Minute`]).
    pub fn part_end(&self, part: i64, end: i64) -> i64 {
        match self {
            Resolution::Window => end,
            Resolution::Minute => part.saturating_add(60),
            Resolution::Parts(cuts) => cuts
                .get(cuts.partition_point(|c| *c <= part))
                .copied()
                .unwrap_or(end),
        }
    }

    /// Which tier answers which minutes of `[start, end)`: minute rows only for
    /// [`Resolution::Minute`], else each part's [`TierPlan`].
    pub fn plan(&self, start: i64, end: i64) -> TierPlan {
        match self {
            Resolution::Window => TierPlan::of(start, end),
            Resolution::Minute => TierPlan::minutes(start, end),
            Resolution::Parts(cuts) => {
                let inside = cuts.iter().copied().filter(|c| *c > start && *c < end);
                let bounds: Vec<i64> = std::iter::once(start)
                    .chain(inside)
                    .chain(std::iter::once(end))
                    .collect();
                TierPlan::of_parts(bounds.windows(2).map(|w| (w[0], w[1])))
            }
        }
    }
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

    /// Rows matching the request, merged per `(keys, side, source)` and part of the window
    /// ([`Resolution`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn parts_split_the_window_where_asked() {
        let (start, end) = (10 * DAY, 11 * DAY);
        // Cuts are taken down to their minute; those outside the window, on its edges or
        // repeated are dropped; none left is the whole window.
        let r = Resolution::parts(start, end, [start + 3630, start - 60, end, start + 3600, 9]);
        assert_eq!(r, Resolution::Parts(Arc::from([start + 3600])));
        assert_eq!(
            Resolution::parts(start, end, [start, end]),
            Resolution::Window
        );
        // A row goes to the part holding its minute, at the part's start.
        assert_eq!(r.place(start, start + 3540), start);
        assert_eq!(r.place(start, start + 3600), start + 3600);
        assert_eq!(r.place(start, end - 60), start + 3600);
        assert_eq!(r.part_end(start, end), start + 3600);
        assert_eq!(r.part_end(start + 3600, end), end);
        assert_eq!(Resolution::Minute.part_end(start, end), start + 60);
        assert_eq!(Resolution::Window.part_end(start, end), end);
        // The plan reads the first hour and the rest of the day from hour rows, nothing
        // from minutes or days (the day is split).
        let plan = r.plan(start, end);
        assert_eq!(plan.hour, vec![(start, end)]);
        assert!(plan.minute.is_empty() && plan.day.is_empty());
        // Parts off the hour read their ragged ends from minutes, joined where they meet.
        let r = Resolution::parts(start, end, [start + 600, start + 1200, start + 7800]);
        let plan = r.plan(start, end);
        assert_eq!(
            plan.minute,
            vec![(start, start + 3600), (start + 7200, start + 10_800)]
        );
        assert_eq!(
            plan.hour,
            vec![(start + 3600, start + 7200), (start + 10_800, end)]
        );
        // Per minute reads minute rows only.
        assert_eq!(
            Resolution::Minute.plan(start, end).minute,
            vec![(start, end)]
        );
        assert!(Resolution::Minute.plan(start, end).hour.is_empty());
    }
}
