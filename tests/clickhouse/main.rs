//! The ClickHouse backend against a real server (Debian's ClickHouse 18.16) and against
//! ClickHouse 26.x in chDB: schema migrations, literal escaping, every scan shape equal to
//! the embedded Parquet store's answer for the same writes; then whole meshscope processes
//! on one ClickHouse: two collectors and a reader, a ClickHouse outage mid-stream, a
//! meshscope restart while ClickHouse is down, a replayed spool that already landed, and
//! tables dropped by hand while meshscope runs; and ClickHouse over https with a private
//! CA and a password file.

#[path = "../common/mod.rs"]
mod common;
mod migrations;
mod processes;
mod scans;
mod spool;
mod tls;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aggregator::row::RowBatch;
use aggregator::schema::{Key, Table};
use aggregator::store::clickhouse::ClickHouseStore;
use aggregator::store::clickhouse::client::Client;
use aggregator::store::clickhouse::schema::{self, Dialect, LATEST};
use aggregator::store::clickhouse::sql::quote;
use aggregator::store::{ClickHouseConfig, Resolution, ScanRequest, Store};
use prometheus_client::registry::Registry;
use testkit::sim::{self, Hop, Mesh};

use common::clickhouse::ClickHouse;
use common::truth::{check_all_edges, check_topology, expected, scenario, window};

fn tsv(b: bytes::Bytes) -> String {
    String::from_utf8_lossy(&b).trim().to_string()
}

/// Checks the tables of `meshscope`: the rollup tables as SummingMergeTree, the
/// migrations table as MergeTree; `extra` is one more TSV column of `system.tables`
/// (`''` for none) and its expected value for the rollup tables and the migrations table.
async fn expect_tables(client: &Client, extra: (&str, &str, &str)) {
    let (expr, rollup, migrations) = extra;
    let tables = tsv(client
        .execute(&format!("SELECT concat(name, '\t', engine, {expr}) FROM system.tables WHERE database = 'meshscope' ORDER BY name FORMAT TSVRaw"))
        .await
        .expect("tables"));
    let mut want: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("{}\tSummingMergeTree{rollup}", t.name()))
        .chain([format!("schema_migrations\tMergeTree{migrations}")])
        .collect();
    want.sort();
    assert_eq!(tables.lines().collect::<Vec<_>>(), want);
}

/// Rows of every table over two UTC days, both sides and sources, node flags that must be
/// OR-ed, histograms that must merge by bucket, and key values that need escaping; written
/// as two overlapping batches.
fn batches(now: i64) -> Vec<RowBatch> {
    use aggregator::row::{Keys, Row, RowKey};
    use proto::{Side, Source};
    use std::sync::Arc;
    let midnight = now.div_euclid(86_400) * 86_400;
    let minutes = [midnight - 120, midnight - 60, midnight, midnight + 60];
    let names = [
        "reviews.default",
        "it's \"quoted\"",
        "tab\there\nnewline\\",
        "ünï 😀",
    ];
    (0..2u64)
        .map(|b| {
            let tables = Table::ALL
                .iter()
                .map(|t| {
                    let mut rows = Vec::new();
                    for (mi, minute) in minutes.iter().enumerate() {
                        for (ni, name) in names.iter().enumerate() {
                            for side in [Side::Client, Side::Server] {
                                for source in [Source::Mesh, Source::Trace] {
                                    // The first key is `name`, the others rotate.
                                    let keys = Keys::from_columns(
                                        *t,
                                        (0..t.keys().len()).map(|k| {
                                            Arc::from(if k == 0 {
                                                *name
                                            } else {
                                                names[(ni + k) % 4]
                                            })
                                        }),
                                    );
                                    let mut metrics = aggregator::metrics::Metrics {
                                        calls: 10 + b + mi as u64,
                                        errors: b + ni as u64,
                                        latency_count: 10 + b,
                                        // One name's latency sums pass u64 over its
                                        // four minutes, never within one stored row
                                        // (minute, hour or day, which ClickHouse's
                                        // merges would wrap): reads saturate in both.
                                        latency_sum_nanos: if ni == 3 && b == 0 {
                                            (1 << 62) + mi as u64
                                        } else {
                                            1_000_000 * (mi as u64 + 1)
                                        },
                                        apdex_satisfied: 3,
                                        apdex_tolerating: 1 + b,
                                        mtls_calls: ni as u64,
                                        bytes_sent: 1 << 40,
                                        bytes_received: 7,
                                        ..Default::default()
                                    };
                                    metrics.histogram.add(300 + mi as u16, 4 + b);
                                    metrics.histogram.add(500 + b as u16, 6);
                                    rows.push(Row {
                                        key: RowKey {
                                            minute: *minute,
                                            side,
                                            source,
                                            keys,
                                        },
                                        flags: 1 << b,
                                        metrics,
                                    });
                                }
                            }
                        }
                    }
                    (*t, rows)
                })
                .collect();
            RowBatch { tables }
        })
        .collect()
}

fn settings(url: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: url.to_string(),
        database: "meshscope".into(),
        user: "default".into(),
        password: String::new(),
        password_file: None,
        ca_file: None,
        timeout: Duration::from_secs(60),
        buffer_bytes: 64 << 20,
        spool_bytes: 64 << 20,
        full_wait: Duration::from_secs(60),
    }
}

/// Days kept besides today by the tests' stores.
const RETENTION_DAYS: u32 = 7;

async fn open(url: &str, spool: &std::path::Path) -> ClickHouseStore {
    let registry = &mut Registry::default();
    ClickHouseStore::open(
        &settings(url),
        RETENTION_DAYS,
        spool.to_path_buf(),
        registry,
    )
    .await
    .expect("open")
}
