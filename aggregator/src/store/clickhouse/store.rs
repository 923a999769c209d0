//! [`ClickHouseStore`]: the [`Store`] over ClickHouse. A flush becomes insert chunks (one
//! per table and UTC day, with hour and day rows and a marker row: see [`super::chunk`])
//! handed to the [`Shipper`], which gets them into ClickHouse through memory, the disk
//! spool and retries. Reads aggregate in ClickHouse (`sum`, `sumMap` for the histogram,
//! `groupBitOr` for the node flags) grouped by key, side and source (and minute for time
//! series), with the filters as quoted literals; a merged read over a long window takes
//! whole days and hours from the day and hour rows and only the ragged ends from minutes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use proto::{Side, Source};

use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::row::{Keys, Row, RowBatch, RowKey, RowMerger, no_key};
use crate::schema::{COUNTER_COLUMNS, Table};
use crate::store::tiers::{Tier, TierPlan};
use crate::store::{
    ClickHouseConfig, Resolution, SECONDS_PER_DAY, ScanRequest, Store, retention_cutoff,
};
use crate::{Error, Result};

use super::chunk;
use super::client::Client;
use super::schema::Dialect;
use super::shipper::{Shipper, ShipperSettings};
use super::sql::{ident, quote};
use super::target::Target;

/// The ClickHouse backend.
#[derive(Debug)]
pub struct ClickHouseStore {
    target: Arc<Target>,
    shipper: Shipper,
    /// Reads have their own connections, so that the API's runtime, where reads run,
    /// never carries the shipper's inserts (and the other way round).
    reads: Client,
}

fn bad(what: &str, line: &str) -> Error {
    let clipped: String = line.chars().take(200).collect();
    Error::Schema(format!("ClickHouse answer: {what} in {clipped:?}"))
}

/// The inverse, for ClickHouse's TabSeparated output.
fn tsv_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// `1,2,3` (an array's inside) into numbers.
fn parse_numbers(inner: &str) -> Option<Vec<u64>> {
    if inner.is_empty() {
        return Some(Vec::new());
    }
    inner.split(',').map(|n| n.trim().parse().ok()).collect()
}

/// `sumMap`'s `([i, …],[c, …])` into a histogram.
fn parse_histogram(s: &str) -> Option<Histogram> {
    let (idx, cnt) = s
        .strip_prefix("([")?
        .strip_suffix("])")?
        .split_once("],[")?;
    let idx = parse_numbers(idx)?;
    let cnt = parse_numbers(cnt)?;
    let idx: Vec<u16> = idx
        .into_iter()
        .map(|i| u16::try_from(i).ok())
        .collect::<Option<_>>()?;
    (idx.len() == cnt.len()).then(|| Histogram::from_pairs(idx.into_iter().zip(cnt)))
}

impl ClickHouseStore {
    /// Connects, detects the dialect, brings the schema up to date and starts the
    /// shipper (which first sends what an earlier run spooled). A server that does not
    /// answer is not an error: writes are buffered and spooled, and the schema is created
    /// when it answers. Any other failure (bad URL or database name, refused credentials, a
    /// database from a newer meshscope) is.
    /// `retention_days` are the days kept besides today (0: everything); `spool_dir`
    /// holds the inserts ClickHouse has not taken yet.
    pub async fn open(
        config: &ClickHouseConfig,
        retention_days: u32,
        spool_dir: PathBuf,
        registry: &mut Registry,
    ) -> Result<Self> {
        let db_sql = ident(&config.database)?;
        let client = Client::connect(config)?;
        let reads = Client::connect(config)?;
        let target = Arc::new(Target {
            client,
            database: config.database.clone(),
            db_sql,
            retention_days,
            dialect: OnceLock::new(),
            recreated: std::sync::Mutex::new(None),
        });
        match target.prepare().await {
            Ok(_) => {}
            Err(Error::ClickHouse {
                code: None,
                message,
            }) => tracing::warn!(
                url = config.url,
                error = message,
                "ClickHouse does not answer; buffering writes until it does"
            ),
            // A certificate that does not verify is a setting to fix (like refused
            // credentials), not an outage to wait out.
            Err(e) => return Err(e),
        }
        let shipper = Shipper::start(
            target.clone(),
            ShipperSettings {
                buffer_bytes: config.buffer_bytes,
                spool_bytes: config.spool_bytes,
                full_wait: config.full_wait,
            },
            spool_dir,
            registry,
        )?;
        tracing::info!(
            url = config.url,
            database = config.database,
            "ClickHouse store opened"
        );
        Ok(ClickHouseStore {
            target,
            shipper,
            reads,
        })
    }

    /// Bytes waiting for ClickHouse: in memory, and spooled on disk.
    pub fn backlog(&self) -> (u64, u64) {
        self.shipper.backlog()
    }

    fn decode(t: Table, by_minute: bool, start: i64, text: &str) -> Result<Vec<Row>> {
        let nkeys = t.keys().len();
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let base = usize::from(by_minute);
            if f.len() != base + 2 + nkeys + 1 + 2 * COUNTER_COLUMNS.len() + 1 {
                return Err(bad("unexpected column count", line));
            }
            let minute = if by_minute {
                f[0].parse::<i64>().map_err(|_| bad("minute", line))?
            } else {
                start
            };
            let side = Side::parse(f[base]).ok_or_else(|| bad("side", line))?;
            let source = Source::parse(f[base + 1]).ok_or_else(|| bad("source", line))?;
            let keys = Keys::from_columns(
                t,
                f[base + 2..base + 2 + nkeys]
                    .iter()
                    .map(|v| Arc::from(tsv_unescape(v))),
            );
            let at = base + 2 + nkeys;
            let flags: u8 = f[at].parse().map_err(|_| bad("flags", line))?;
            let mut c = [0u64; COUNTER_COLUMNS.len()];
            for (i, v) in c.iter_mut().enumerate() {
                *v = f[at + 1 + i].parse().map_err(|_| bad("counter", line))?;
            }
            let histogram = parse_histogram(f[at + 1 + COUNTER_COLUMNS.len()])
                .ok_or_else(|| bad("histogram", line))?;
            let approx = at + 2 + COUNTER_COLUMNS.len();
            for (i, v) in c.iter_mut().enumerate() {
                let float: f64 = f[approx + i].parse().map_err(|_| bad("counter", line))?;
                *v = settle(*v, float);
            }
            let metrics = Metrics {
                histogram,
                ..Metrics::from_counters(c)
            };
            out.push(Row {
                key: RowKey {
                    minute,
                    side,
                    source,
                    keys,
                },
                flags,
                metrics,
            });
        }
        Ok(out)
    }
}

/// A counter's sum as the embedded store gives it, saturated at `u64::MAX`, from
/// ClickHouse's wrapping `sum` (`exact`) and its `Float64` sum (`approx`, relative error far
/// below 10⁻⁶ for any number of rows a read can sum). Below 2⁶³ the float proves no wrap
/// happened; far above 2⁶⁴ it proves one did; in between, a sum that wrapped once lands
/// below 2⁶³ while one that did not stays above it.
fn settle(exact: u64, approx: f64) -> u64 {
    const HALF: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if approx < HALF * 1.001 {
        exact
    } else if approx >= 3.0 * HALF || exact < 1 << 63 {
        u64::MAX
    } else {
        exact
    }
}

/// Most cuts of a split read that ClickHouse sums into parts itself (a `multiIf` branch
/// per cut, evaluated per row); past it, rows come back per stored row minute and are
/// summed into their parts here.
const MAX_SQL_CUTS: usize = 64;

/// The start of the part of a window starting at `start` and cut at `cuts` that holds a
/// row's minute, as a ClickHouse expression (the numbers are ours, never input text),
/// comparing plain integers as [`Resolution::place`] does (a cut outside `DateTime`'s
/// range cannot wrap).
fn part_expression(start: i64, cuts: &[i64]) -> String {
    let mut branches = Vec::with_capacity(cuts.len() + 1);
    let mut part = start;
    for c in cuts {
        branches.push(format!("toInt64(minute) < {c}, toInt64({part})"));
        part = *c;
    }
    branches.push(format!("toInt64({part})"));
    format!("multiIf({})", branches.join(", "))
}

/// The rows a read takes by `plan` (a merged read over minutes `[start, end)`: whole UTC
/// days from day rows, whole hours from hour rows, the rest from minute rows), as a
/// `WHERE` condition.
fn tier_condition(plan: &TierPlan) -> String {
    let parts: Vec<String> = Tier::ALL
        .into_iter()
        .filter(|t| !plan.ranges(*t).is_empty())
        .map(|t| {
            let ranges: Vec<String> = plan
                .ranges(t)
                .iter()
                .map(|(a, b)| format!("(minute >= toDateTime({a}) AND minute < toDateTime({b}))"))
                .collect();
            format!("(res = {} AND ({}))", t.seconds(), ranges.join(" OR "))
        })
        .collect();
    format!("({})", parts.join(" OR "))
}

#[async_trait]
impl Store for ClickHouseStore {
    /// Queues the batch for ClickHouse (memory, else the disk spool); waits when both are
    /// full and then refuses it (see [`Shipper::enqueue`]). Returning does not mean the
    /// rows are in ClickHouse yet: reads see them once the shipper has sent them,
    /// normally within milliseconds.
    async fn write(&self, batch: Arc<RowBatch>) -> Result<()> {
        let chunks = tokio::task::spawn_blocking(move || chunk::encode(&batch)).await?;
        self.shipper.enqueue(chunks).await
    }

    /// Waits until the queue and the spool are empty (everything written is in
    /// ClickHouse), at most `full_wait`.
    async fn sync(&self) -> Result<()> {
        self.shipper.sync().await
    }

    /// Sends what is queued while ClickHouse answers (up to ten seconds), spools the rest.
    async fn close(&self) -> Result<()> {
        self.shipper.close().await
    }

    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let t = request.table;
        let start = request.start_minute.max(0);
        let end = request.end_minute.min(i64::from(u32::MAX));
        if end <= start {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = t
            .keys()
            .iter()
            .map(|k| format!("`{}`", k.column()))
            .collect();
        // A per-minute read groups by the stored row's minute. A split read with a few
        // cuts groups by the start of each row's part (ClickHouse sums the parts); with
        // many, by the stored row's minute (the start of its minute, hour or day), and
        // the rows are summed into their parts here.
        let by_row_minute = request.resolution != Resolution::Window;
        let summed_parts = match &request.resolution {
            Resolution::Parts(cuts) if cuts.len() <= MAX_SQL_CUTS => Some(cuts.clone()),
            _ => None,
        };
        let mut group: Vec<String> = Vec::new();
        match &summed_parts {
            Some(cuts) => group.push(part_expression(request.start_minute, cuts)),
            None if by_row_minute => group.push("toUInt32(minute)".into()),
            None => {}
        }
        group.extend(["side".to_string(), "source".to_string()]);
        group.extend(keys.iter().cloned());
        let mut select = group.clone();
        select.push("groupBitOr(flags)".into());
        for c in COUNTER_COLUMNS {
            select.push(format!("sum(`{c}`)"));
        }
        select.push("sumMap(histMap.idx, histMap.cnt)".into());
        // ClickHouse's sum of UInt64 wraps where the embedded store saturates; the same
        // sums in Float64 show when it did (see `settle`).
        for c in COUNTER_COLUMNS {
            select.push(format!("sum(toFloat64(`{c}`))"));
        }
        let mut filter = tier_condition(&request.resolution.plan(start, end));
        filter.push_str(" AND side != 'marker'");
        for (k, v) in &request.filters {
            if !t.has(*k) {
                return Err(Error::Request(no_key(t, *k)));
            }
            let _ = write!(filter, " AND `{}` = {}", k.column(), quote(v));
        }
        // A bound on the answer's rows: ClickHouse stops one row past it (rows of a split
        // read summed here are checked once summed into their parts, below).
        let summed_here =
            matches!(request.resolution, Resolution::Parts(_)) && summed_parts.is_none();
        let limit = match request.max_rows {
            Some(max) if !summed_here => format!(" LIMIT {}", max.saturating_add(1)),
            _ => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} GROUP BY {}{limit} FORMAT TabSeparated",
            select.join(", "),
            self.target.table(t),
            group.join(", ")
        );
        let text = self.reads.execute(&sql).await?;
        let rows = Self::decode(
            t,
            by_row_minute,
            request.start_minute,
            &String::from_utf8_lossy(&text),
        )?;
        let rows = if summed_here {
            let mut merged = RowMerger::default();
            for mut row in rows {
                row.key.minute = request
                    .resolution
                    .place(request.start_minute, row.key.minute);
                merged.add(row);
            }
            merged.finish()
        } else {
            rows
        };
        match request.max_rows {
            Some(max) if rows.len() > max => Err(Error::TooManyRows(max)),
            _ => Ok(rows),
        }
    }

    async fn maintain(&self) -> Result<()> {
        // Modern servers drop expired days by TTL; an unready one has nothing to drop.
        if self.target.dialect.get() != Some(&Dialect::Legacy) {
            return Ok(());
        }
        let Some(cutoff) = retention_cutoff(self.target.retention_days) else {
            return Ok(());
        };
        for t in Table::ALL {
            let parts = self
                .target
                .client
                .execute(&format!(
                    "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} AND active FORMAT TabSeparated",
                    quote(&self.target.database),
                    quote(t.name())
                ))
                .await?;
            for p in String::from_utf8_lossy(&parts).lines() {
                let Ok(day) = p.trim().parse::<i64>() else {
                    continue;
                };
                // Partitions are UTC day numbers.
                if day.saturating_mul(SECONDS_PER_DAY) < cutoff {
                    self.target
                        .client
                        .execute(&format!(
                            "ALTER TABLE {} DROP PARTITION {day}",
                            self.target.table(t)
                        ))
                        .await?;
                    tracing::info!(
                        table = t.name(),
                        day,
                        "ClickHouse: dropped a day past retention"
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums as the embedded store makes them (saturating), from what ClickHouse returns.
    #[test]
    fn wrapped_sums_saturate_as_in_the_embedded_store() {
        let cases: [&[u64]; 6] = [
            &[1, 2, 3],
            &[u64::MAX / 2, u64::MAX / 2],
            &[1 << 63, 1 << 63],
            &[u64::MAX, 1],
            &[u64::MAX, u64::MAX, u64::MAX],
            &[(1 << 63) - 5, 4, 1],
        ];
        for values in cases {
            let wrapped = values.iter().fold(0u64, |a, v| a.wrapping_add(*v));
            let float: f64 = values.iter().map(|v| *v as f64).sum();
            let saturated = values.iter().fold(0u64, |a, v| a.saturating_add(*v));
            assert_eq!(settle(wrapped, float), saturated, "{values:?}");
        }
    }

    #[test]
    fn tsv_strings_round_trip() {
        for s in ["plain", "a\tb\nc\\d\re\0f", "ünï 😀", ""] {
            let mut e = String::new();
            chunk::tsv_escape(s, &mut e);
            assert!(!e.contains('\t') && !e.contains('\n'));
            assert_eq!(tsv_unescape(&e), s);
        }
        assert_eq!(parse_numbers("1,2,30"), Some(vec![1, 2, 30]));
        assert_eq!(parse_numbers(""), Some(vec![]));
        assert_eq!(parse_numbers("x"), None);
        let h = parse_histogram("([3,7],[10,2])").expect("histogram");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![(3, 10), (7, 2)]);
        assert!(parse_histogram("([],[])").is_some_and(|h| h.is_empty()));
        assert!(parse_histogram("([70000],[1])").is_none());
        assert!(parse_histogram("([1,2],[1])").is_none());
    }

    #[test]
    fn long_windows_read_days_and_hours_and_minutes_only_at_the_ends() {
        let day = 1_700_006_400; // a UTC midnight
        // Under an hour: minutes only.
        assert_eq!(
            tier_condition(&TierPlan::of(day + 60, day + 600)),
            format!(
                "((res = 60 AND ((minute >= toDateTime({}) AND minute < toDateTime({})))))",
                day + 60,
                day + 600
            )
        );
        // 00:10 to 03:20: minutes 00:10-01:00 and 03:00-03:20, hours 01:00-03:00.
        let c = tier_condition(&TierPlan::of(day + 600, day + 3 * 3600 + 1200));
        assert!(c.contains(&format!("res = 60 AND ((minute >= toDateTime({}) AND minute < toDateTime({})) OR (minute >= toDateTime({}) AND minute < toDateTime({})))", day + 600, day + 3600, day + 3 * 3600, day + 3 * 3600 + 1200)), "{c}");
        assert!(
            c.contains(&format!(
                "res = 3600 AND ((minute >= toDateTime({}) AND minute < toDateTime({})))",
                day + 3600,
                day + 3 * 3600
            )),
            "{c}"
        );
        assert!(!c.contains("86400"), "{c}");
        // 23:00 the day before to 01:30 two days on: one whole day in between.
        let c = tier_condition(&TierPlan::of(day - 3600, day + 2 * 86_400 + 5400));
        assert!(
            c.contains(&format!(
                "res = 86400 AND ((minute >= toDateTime({day}) AND minute < toDateTime({})))",
                day + 2 * 86_400
            )),
            "{c}"
        );
        assert!(
            c.contains(&format!(
                "(minute >= toDateTime({}) AND minute < toDateTime({day}))",
                day - 3600
            )),
            "{c}"
        );
        // Aligned ends need no minutes.
        assert!(!tier_condition(&TierPlan::of(day, day + 86_400)).contains("res = 60"));
    }
}
