//! [`ClickHouseStore`]: the [`Store`] over ClickHouse. Rows go in as TabSeparated inserts,
//! one per table and UTC day (one part each); reads aggregate in ClickHouse (`sum`,
//! `sumMap` for the histogram, `groupBitOr` for the node flags) grouped by key, side and
//! source (and minute for time series), with the filters as quoted literals.
//!
//! Not yet: retries of an insert whose outcome is unknown are not recognised (a marker
//! row per chunk is planned), no buffer or spill when ClickHouse is down (the aggregator
//! keeps failed rows in memory up to `max_pending_rows`), minute rows only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use proto::{Side, Source};

use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::rollup::{Row, RowBatch, RowKey};
use crate::schema::{COUNTER_COLUMNS, Keys, Table};
use crate::store::{SECONDS_PER_DAY, ScanRequest, Store, day_start, retention_cutoff};
use crate::{Error, Result};

use super::client::Client;
use super::schema::{self, Dialect};
use super::sql::{ident, quote};

/// Resolution of minute rows.
const MINUTE_RES: u32 = 60;

/// Where the data lives and how long it is kept.
#[derive(Debug, Clone)]
pub struct ClickHouseSettings {
    /// `http://host:8123`.
    pub url: String,
    /// Database holding meshscope's tables (created if missing).
    pub database: String,
    /// HTTP basic-auth user and password.
    pub user: String,
    pub password: String,
    /// Per request.
    pub timeout: Duration,
    /// Days kept besides today (0: keep everything).
    pub retention_days: u32,
}

/// The ClickHouse backend.
#[derive(Debug, Clone)]
pub struct ClickHouseStore {
    client: Client,
    db: String,
    /// `db`, checked and backquoted once.
    db_sql: String,
    dialect: Dialect,
    retention_days: u32,
}

fn bad(what: &str, line: &str) -> Error {
    let clipped: String = line.chars().take(200).collect();
    Error::Schema(format!("ClickHouse answer: {what} in {clipped:?}"))
}

/// TabSeparated escaping of a string field.
fn tsv_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
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
    /// Connects, detects the dialect and brings the schema up to date.
    pub async fn open(settings: ClickHouseSettings) -> Result<ClickHouseStore> {
        let db_sql = ident(&settings.database)?;
        let client = Client::new(
            &settings.url,
            &settings.user,
            &settings.password,
            settings.timeout,
        )?;
        let (version, dialect) = schema::detect(&client).await?;
        schema::migrate(
            &client,
            &settings.database,
            dialect,
            settings.retention_days,
        )
        .await?;
        tracing::info!(
            url = settings.url,
            database = settings.database,
            version,
            dialect = dialect.as_str(),
            "ClickHouse store opened"
        );
        Ok(ClickHouseStore {
            client,
            db: settings.database,
            db_sql,
            dialect,
            retention_days: settings.retention_days,
        })
    }

    /// `db`.`table`.
    fn table(&self, t: Table) -> String {
        format!("{}.`{}`", self.db_sql, t.name())
    }

    /// The columns an insert lists: the histogram as its two arrays.
    fn insert_columns(&self, t: Table) -> Vec<String> {
        schema::columns(t, self.dialect)
            .into_iter()
            .flat_map(|(name, _)| {
                if name == schema::HISTOGRAM {
                    vec![format!("{name}.idx"), format!("{name}.cnt")]
                } else {
                    vec![name]
                }
            })
            .collect()
    }

    fn encode(t: Table, rows: &[&Row]) -> Bytes {
        let mut out = String::with_capacity(rows.len() * 160);
        for r in rows {
            let m = &r.metrics;
            let _ = write!(
                out,
                "{MINUTE_RES}\t{}\t{}\t{}",
                r.key.minute,
                r.key.side.as_str(),
                r.key.source.as_str()
            );
            for k in &r.key.keys[..t.keys().len()] {
                out.push('\t');
                tsv_escape(k, &mut out);
            }
            let _ = write!(out, "\t{}", r.flags);
            for v in m.counters() {
                let _ = write!(out, "\t{v}");
            }
            let (idx, cnt): (Vec<String>, Vec<String>) = m
                .histogram
                .iter()
                .map(|(i, c)| (i.to_string(), c.to_string()))
                .unzip();
            let _ = writeln!(out, "\t[{}]\t[{}]", idx.join(","), cnt.join(","));
        }
        Bytes::from(out)
    }

    fn decode(t: Table, by_minute: bool, start: i64, text: &str) -> Result<Vec<Row>> {
        let nkeys = t.keys().len();
        let empty: Arc<str> = Arc::from("");
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let base = usize::from(by_minute);
            if f.len() != base + 2 + nkeys + 1 + COUNTER_COLUMNS.len() + 1 {
                return Err(bad("unexpected column count", line));
            }
            let minute = if by_minute {
                f[0].parse::<i64>().map_err(|_| bad("minute", line))?
            } else {
                start
            };
            let side = Side::parse(f[base]).ok_or_else(|| bad("side", line))?;
            let source = Source::parse(f[base + 1]).ok_or_else(|| bad("source", line))?;
            let mut keys: Keys = std::array::from_fn(|_| empty.clone());
            for (i, k) in keys.iter_mut().take(nkeys).enumerate() {
                *k = Arc::from(tsv_unescape(f[base + 2 + i]));
            }
            let at = base + 2 + nkeys;
            let flags: u8 = f[at].parse().map_err(|_| bad("flags", line))?;
            let mut c = [0u64; COUNTER_COLUMNS.len()];
            for (i, v) in c.iter_mut().enumerate() {
                *v = f[at + 1 + i].parse().map_err(|_| bad("counter", line))?;
            }
            let histogram = parse_histogram(f[at + 1 + COUNTER_COLUMNS.len()])
                .ok_or_else(|| bad("histogram", line))?;
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

#[async_trait]
impl Store for ClickHouseStore {
    /// Not yet what [`Store::write`] promises: a failure after some of the per-day inserts
    /// leaves those visible, and a retry of the batch doubles them (marker rows per insert
    /// are the planned fix).
    async fn write(&self, batch: Arc<RowBatch>) -> Result<()> {
        for (table, rows) in &batch.tables {
            // One insert per UTC day: one partition, so one part.
            let mut by_day: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
            for r in rows {
                by_day.entry(day_start(r.key.minute)).or_default().push(r);
            }
            let query = format!(
                "INSERT INTO {} ({}) FORMAT TabSeparated",
                self.table(*table),
                self.insert_columns(*table).join(", ")
            );
            for rows in by_day.values() {
                self.client
                    .insert(&query, Self::encode(*table, rows))
                    .await?;
            }
        }
        Ok(())
    }

    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let t = request.table;
        let start = request.start_minute.max(0);
        let end = request.end_minute.min(i64::from(u32::MAX));
        if end <= start {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = t.keys().iter().map(|k| format!("`{k}`")).collect();
        let mut group: Vec<String> = Vec::new();
        if request.by_minute {
            group.push("toUInt32(minute)".into());
        }
        group.extend(["side".to_string(), "source".to_string()]);
        group.extend(keys.iter().cloned());
        let mut select = group.clone();
        select.push("groupBitOr(flags)".into());
        for c in COUNTER_COLUMNS {
            select.push(format!("sum(`{c}`)"));
        }
        select.push("sumMap(histMap.idx, histMap.cnt)".into());
        let mut filter = format!(
            "res = {MINUTE_RES} AND minute >= toDateTime({start}) AND minute < toDateTime({end}) AND side != 'marker'"
        );
        for (k, v) in &request.filters {
            let col = keys
                .get(*k)
                .ok_or_else(|| Error::Schema(format!("{} has no key column {k}", t.name())))?;
            let _ = write!(filter, " AND {col} = {}", quote(v));
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} GROUP BY {} FORMAT TabSeparated",
            select.join(", "),
            self.table(t),
            group.join(", ")
        );
        let text = self.client.execute(&sql).await?;
        Self::decode(
            t,
            request.by_minute,
            request.start_minute,
            &String::from_utf8_lossy(&text),
        )
    }

    async fn maintain(&self) -> Result<()> {
        if self.dialect == Dialect::Modern {
            // Modern servers drop expired days by TTL.
            return Ok(());
        }
        let Some(cutoff) = retention_cutoff(self.retention_days) else {
            return Ok(());
        };
        for t in Table::ALL {
            let parts = self
                .client
                .execute(&format!(
                    "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} AND active FORMAT TabSeparated",
                    quote(&self.db),
                    quote(t.name())
                ))
                .await?;
            for p in String::from_utf8_lossy(&parts).lines() {
                let Ok(day) = p.trim().parse::<i64>() else {
                    continue;
                };
                // Partitions are UTC day numbers.
                if day.saturating_mul(SECONDS_PER_DAY) < cutoff {
                    self.client
                        .execute(&format!(
                            "ALTER TABLE {} DROP PARTITION {day}",
                            self.table(t)
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

    #[test]
    fn tsv_strings_round_trip() {
        for s in ["plain", "a\tb\nc\\d\re\0f", "ünï 😀", ""] {
            let mut e = String::new();
            tsv_escape(s, &mut e);
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
}
