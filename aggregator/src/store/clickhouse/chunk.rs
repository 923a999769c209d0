//! Insert chunks: a flush's rows as ready-to-send TabSeparated bodies, one per table and
//! UTC day (one partition, so one part: ClickHouse applies such an insert whole or not at
//! all). Each chunk carries
//! - the minute rows and the hour and day rows merged from them (`res` 60, 3600, 86400),
//!   so long windows read few rows;
//! - one marker row (side `marker`, the chunk's unique token in the first key column,
//!   `calls` = 1 so a SummingMergeTree merge does not remove it as all-zero), which tells
//!   a retry whether an insert with an unknown outcome landed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::row::{Row, RowBatch, RowMerger};
use crate::schema::{COUNTER_COLUMNS, Table};
use crate::store::day_start;
use crate::store::tiers::Tier;

/// Rows per chunk at most, minute rows and their tiers together; well under ClickHouse's
/// `max_insert_block_size` (1 048 576), so one chunk is one block and one part.
const MAX_ROWS: usize = 300_000;

/// One insert: a table, its TSV body and what the marker and bookkeeping need.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub table: Table,
    /// Unique per chunk; the marker row's first key.
    pub token: String,
    /// The marker row's minute (the chunk's first minute, in its day partition).
    pub minute: i64,
    /// Minute rows (the tiers and the marker not counted).
    pub rows: usize,
    /// Calls in the chunk when it is a service-table chunk (else 0): what a drop loses.
    pub calls: u64,
    /// TabSeparated rows, marker included.
    pub body: Bytes,
    /// Sent before without a clear outcome: look for the marker before sending again.
    pub attempted: bool,
}

/// A process-unique prefix (random, from the standard library's OS-seeded hasher keys)
/// and a counter make tokens unique across processes and restarts.
fn token() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    format!("{prefix:016x}-{:x}", SEQ.fetch_add(1, Ordering::Relaxed))
}

/// TabSeparated escaping of a string field.
pub fn tsv_escape(s: &str, out: &mut String) {
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

fn encode_row(out: &mut String, res: u32, r: &Row) {
    let _ = write!(
        out,
        "{res}\t{}\t{}\t{}",
        r.key.minute,
        r.key.side.as_str(),
        r.key.source.as_str()
    );
    for k in r.key.keys.columns() {
        out.push('\t');
        tsv_escape(k, out);
    }
    let m = &r.metrics;
    let _ = write!(out, "\t{}", r.flags);
    for v in m.counters() {
        let _ = write!(out, "\t{v}");
    }
    out.push_str("\t[");
    for (n, (i, _)) in m.histogram.iter().enumerate() {
        let _ = write!(out, "{}{i}", if n == 0 { "" } else { "," });
    }
    out.push_str("]\t[");
    for (n, (_, c)) in m.histogram.iter().enumerate() {
        let _ = write!(out, "{}{c}", if n == 0 { "" } else { "," });
    }
    out.push_str("]\n");
}

fn encode_marker(out: &mut String, t: Table, token: &str, minute: i64) {
    let _ = write!(
        out,
        "{}\t{minute}\tmarker\tmesh\t{token}",
        Tier::Minute.seconds()
    );
    for _ in 1..t.keys().len() {
        out.push('\t');
    }
    // flags, then calls = 1 and the other counters 0, then an empty histogram.
    out.push_str("\t0\t1");
    for _ in 1..COUNTER_COLUMNS.len() {
        out.push_str("\t0");
    }
    out.push_str("\t[]\t[]\n");
}

/// `rows` (one table, one day) merged to `res`-second periods, in key order.
fn tier(rows: &[&Row], tier: Tier) -> Vec<Row> {
    let mut merger = RowMerger::default();
    for r in rows {
        merger.add(tier.roll(r));
    }
    let mut merged = merger.finish();
    merged.sort_by(|a, b| a.key.cmp(&b.key));
    merged
}

/// A batch as insert chunks.
pub fn encode(batch: &RowBatch) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for (table, rows) in &batch.tables {
        let mut by_day: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        for r in rows {
            by_day.entry(day_start(r.key.minute)).or_default().push(r);
        }
        for day in by_day.values() {
            // A third of the limit each for minutes, hours and days.
            for part in day.chunks(MAX_ROWS / 3) {
                chunks.push(encode_chunk(*table, part));
            }
        }
    }
    chunks
}

fn encode_chunk(table: Table, rows: &[&Row]) -> Chunk {
    let token = token();
    let minute = rows.iter().map(|r| r.key.minute).min().unwrap_or(0);
    let mut out = String::with_capacity(rows.len() * 3 * 160);
    for r in rows {
        encode_row(&mut out, Tier::Minute.seconds(), r);
    }
    for t in [Tier::Hour, Tier::Day] {
        for r in tier(rows, t) {
            encode_row(&mut out, t.seconds(), &r);
        }
    }
    encode_marker(&mut out, table, &token, minute);
    let calls = if table == Table::Service {
        rows.iter().map(|r| r.metrics.calls).sum()
    } else {
        0
    };
    Chunk {
        table,
        token,
        minute,
        rows: rows.len(),
        calls,
        body: Bytes::from(out),
        attempted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Histogram;
    use crate::metrics::Metrics;
    use crate::row::RowKey;
    use proto::{Side, Source};
    use std::sync::Arc;

    fn row(minute: i64, server: &str, calls: u64, flags: u8) -> Row {
        let keys = crate::row::Keys::new(
            Table::Service,
            [(crate::schema::Key::Service, Arc::from(server))],
        )
        .expect("a service key");
        Row {
            key: RowKey {
                minute,
                side: Side::Server,
                source: Source::Mesh,
                keys,
            },
            flags,
            metrics: Metrics {
                histogram: Histogram::from_pairs([(3, calls)]),
                ..Metrics::from_counters({
                    let mut c = [0; COUNTER_COLUMNS.len()];
                    c[0] = calls;
                    c
                })
            },
        }
    }

    #[test]
    fn chunks_hold_minutes_hours_days_and_one_marker_per_day() {
        let day = 1_700_006_400; // a UTC midnight
        let batch = RowBatch {
            tables: vec![(
                Table::Service,
                vec![
                    row(day + 60, "a\tb", 2, 1),
                    row(day + 120, "a\tb", 3, 2),
                    row(day + 3600, "a\tb", 5, 0),
                    row(day - 60, "a\tb", 7, 0),
                ],
            )],
        };
        let chunks = encode(&batch);
        assert_eq!(chunks.len(), 2, "two UTC days, two chunks");
        assert_ne!(chunks[0].token, chunks[1].token);
        let today = &chunks[1];
        assert_eq!((today.rows, today.calls, today.minute), (3, 10, day + 60));
        let text = std::str::from_utf8(&today.body).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        // 3 minute rows, 2 hour rows, 1 day row, 1 marker.
        assert_eq!(lines.len(), 7, "{text}");
        let res: Vec<&str> = lines
            .iter()
            .map(|l| l.split('\t').next().unwrap_or(""))
            .collect();
        assert_eq!(res, ["60", "60", "60", "3600", "3600", "86400", "60"]);
        // The first hour merges 2 + 3 calls and ORs the flags; the day has all 10.
        assert!(
            lines[3].starts_with(&format!("3600\t{}\tserver\tmesh\ta\\tb\t3\t5\t", day)),
            "{}",
            lines[3]
        );
        assert!(
            lines[5].starts_with(&format!("86400\t{day}\tserver\tmesh\ta\\tb\t3\t10\t")),
            "{}",
            lines[5]
        );
        assert!(lines[5].ends_with("\t[3]\t[10]"), "{}", lines[5]);
        assert_eq!(lines[6].split('\t').nth(2), Some("marker"));
        assert!(lines[6].contains(&today.token));
        let fields = lines[6].split('\t').count();
        assert_eq!(
            fields,
            lines[0].split('\t').count(),
            "marker has every column"
        );
    }
}
