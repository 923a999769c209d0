//! The ClickHouse backend against a real server (Debian's ClickHouse 18.16) and against
//! ClickHouse 26.x in chDB: schema migrations, literal escaping, and every scan shape
//! equal to the embedded Parquet store's answer for the same writes.

mod common;

use std::time::Duration;

use aggregator::rollup::RowBatch;
use aggregator::schema::Table;
use aggregator::store::clickhouse::client::Client;
use aggregator::store::clickhouse::schema::{self, Dialect, LATEST};
use aggregator::store::clickhouse::sql::quote;
use aggregator::store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use aggregator::store::{ScanRequest, Store};
use common::clickhouse::ClickHouse;

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

/// Every string comes back byte for byte through `SELECT hex(<quoted literal>)`.
async fn round_trip(client: &Client, strings: &[&str]) {
    for s in strings {
        let got = tsv(client
            .execute(&format!("SELECT hex({}) FORMAT TSV", quote(s)))
            .await
            .unwrap_or_else(|e| panic!("{s:?}: {e}")));
        let want: String = s.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(&got, &want, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_safe_to_race() {
    let ch = ClickHouse::start();
    let client = Client::new(&ch.url, "default", "", Duration::from_secs(30)).expect("client");
    let (version, dialect) = schema::detect(&client).await.expect("version");
    assert!(version.starts_with("18.16"), "{version}");
    assert_eq!(dialect, Dialect::Legacy);

    // Four processes starting at once on an empty server.
    let runs = (0..4).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { schema::migrate(&c, "meshscope", Dialect::Legacy, 7).await })
    });
    for r in runs {
        assert_eq!(r.await.expect("join").expect("migrate"), LATEST);
    }
    // And again: nothing to do.
    assert_eq!(
        schema::migrate(&client, "meshscope", Dialect::Legacy, 7)
            .await
            .expect("again"),
        LATEST
    );
    expect_tables(&client, ("''", "", "")).await;
    let version = tsv(client
        .execute("SELECT max(version) FROM meshscope.schema_migrations FORMAT TSV")
        .await
        .expect("version"));
    assert_eq!(version, LATEST.to_string());

    // A database from a newer meshscope is refused.
    client
        .execute("INSERT INTO meshscope.schema_migrations (version, dialect, applied) VALUES (99, 'legacy', now())")
        .await
        .expect("insert");
    let err = schema::migrate(&client, "meshscope", Dialect::Legacy, 7)
        .await
        .expect_err("newer schema");
    assert!(err.to_string().contains("99"), "{err}");

    // Hostile names never reach the server.
    assert!(
        schema::migrate(
            &client,
            "x`; DROP DATABASE meshscope; --",
            Dialect::Legacy,
            7
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_string_round_trips_through_a_quoted_literal() {
    let ch = ClickHouse::start();
    let client = Client::new(&ch.url, "default", "", Duration::from_secs(30)).expect("client");
    let hostile = [
        "plain",
        "it's",
        "back\\slash\\",
        "\\'; DROP TABLE x; --",
        "quote at end'",
        "new\nline\ttab\rcr\0nul\u{1b}esc\u{7f}",
        "ünïcødé 😀 \u{202e}rtl",
        "",
        "' OR 1=1 --",
        "`backticks` and \"doubles\"",
    ];
    round_trip(&client, &hostile).await;
    // Errors carry ClickHouse's code.
    match client.execute("SELECT * FROM no_such_db.t").await {
        Err(aggregator::Error::ClickHouse { code, .. }) => assert_eq!(code, Some(81)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_modern_dialect_runs_on_a_current_engine_in_chdb() {
    let ch = common::clickhouse::Chdb::start();
    let client = Client::new(&ch.url, "default", "", Duration::from_secs(60)).expect("client");
    let (version, dialect) = schema::detect(&client).await.expect("version");
    assert_eq!(dialect, Dialect::Modern, "chDB reports {version}");
    for _ in 0..2 {
        assert_eq!(
            schema::migrate(&client, "meshscope", Dialect::Modern, 7)
                .await
                .expect("migrate"),
            LATEST
        );
    }
    expect_tables(
        &client,
        (
            "if(engine_full LIKE '%TTL minute + toIntervalDay(7)%', '\tTTL', '')",
            "\tTTL",
            "",
        ),
    )
    .await;
    // Keys are LowCardinality there.
    let key_type = tsv(client
        .execute("SELECT type FROM system.columns WHERE database = 'meshscope' AND table = 'service' AND name = 'service' FORMAT TSV")
        .await
        .expect("columns"));
    assert_eq!(key_type, "LowCardinality(String)");
    round_trip(
        &client,
        &[
            "it's",
            "\\'; DROP TABLE x; --",
            "new\nline\0nul",
            "ünïcødé 😀",
        ],
    )
    .await;
}

/// Rows of every table over two UTC days, both sides and sources, node flags that must be
/// OR-ed, histograms that must merge by bucket, and key values that need escaping; written
/// as two overlapping batches.
fn batches(now: i64) -> Vec<RowBatch> {
    use aggregator::rollup::{Row, RowKey};
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
                                    let empty: Arc<str> = Arc::from("");
                                    let mut keys: aggregator::schema::Keys =
                                        std::array::from_fn(|_| empty.clone());
                                    for (k, slot) in
                                        keys.iter_mut().take(t.keys().len()).enumerate()
                                    {
                                        *slot = Arc::from(if k == 0 {
                                            *name
                                        } else {
                                            names[(ni + k) % 4]
                                        });
                                    }
                                    let mut metrics = aggregator::metrics::Metrics {
                                        calls: 10 + b + mi as u64,
                                        errors: b + ni as u64,
                                        latency_count: 10 + b,
                                        latency_sum_nanos: 1_000_000 * (mi as u64 + 1),
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

/// Every scan shape against `store` equals the embedded Parquet store's answer.
async fn same_as_parquet(store: &dyn Store) {
    use aggregator::store::parquet::{ParquetSettings, ParquetStore};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    let parquet = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("parquet");
    let now = common::now_nanos() / 1_000_000_000;
    for b in batches(now) {
        let b = Arc::new(b);
        parquet.write(b.clone()).await.expect("parquet write");
        store.write(b).await.expect("write");
    }
    let midnight = now.div_euclid(86_400) * 86_400;
    let sort = |mut rows: Vec<aggregator::rollup::Row>| {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    };
    let mut checked = 0;
    for table in Table::ALL {
        for (start, end) in [
            (midnight - 3600, midnight + 3600),
            (midnight - 60, midnight + 60),
            (midnight + 120, midnight + 600),
        ] {
            for by_minute in [true, false] {
                for filters in [
                    vec![],
                    vec![(0, "it's \"quoted\"".to_string())],
                    vec![(0, "tab\there\nnewline\\".to_string())],
                    vec![(0, "x' OR '1'='1".to_string())],
                ] {
                    let req = ScanRequest {
                        table,
                        start_minute: start,
                        end_minute: end,
                        filters,
                        by_minute,
                    };
                    let want = sort(parquet.scan(&req).await.expect("parquet scan"));
                    let got = sort(
                        store
                            .scan(&req)
                            .await
                            .unwrap_or_else(|e| panic!("{req:?}: {e}")),
                    );
                    assert_eq!(got, want, "{req:?}");
                    checked += usize::from(!want.is_empty());
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} non-empty comparisons");
}

fn settings(url: &str) -> ClickHouseSettings {
    ClickHouseSettings {
        url: url.to_string(),
        database: "meshscope".into(),
        user: "default".into(),
        password: String::new(),
        timeout: Duration::from_secs(60),
        retention_days: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_18_16_returns_what_the_embedded_store_returns() {
    let ch = ClickHouse::start();
    let store = ClickHouseStore::open(settings(&ch.url))
        .await
        .expect("open");
    same_as_parquet(&store).await;
    // Retention (7 days) keeps today and the 7 days before, as the Parquet store does, and
    // drops older days as whole partitions. The batch straddles a midnight: shifted by 7
    // days, its first minutes fall on the 8th day back (dropped), the rest on the 7th (kept).
    let now = common::now_nanos() / 1_000_000_000;
    let mut old = batches(now).remove(0);
    for (_, rows) in &mut old.tables {
        for r in rows.iter_mut() {
            r.key.minute -= 7 * 86_400;
        }
    }
    store
        .write(std::sync::Arc::new(old))
        .await
        .expect("write old");
    let boundary = now.div_euclid(86_400) * 86_400 - 7 * 86_400;
    let request = ScanRequest {
        table: Table::Service,
        start_minute: boundary - 3600,
        end_minute: boundary + 3600,
        filters: vec![],
        by_minute: true,
    };
    let minutes = |rows: Vec<aggregator::rollup::Row>| {
        let mut m: Vec<i64> = rows.iter().map(|r| r.key.minute).collect();
        m.sort();
        m.dedup();
        m
    };
    let before = minutes(store.scan(&request).await.expect("scan"));
    assert_eq!(
        before,
        vec![boundary - 120, boundary - 60, boundary, boundary + 60]
    );
    store.maintain().await.expect("maintain");
    let after = minutes(store.scan(&request).await.expect("scan"));
    assert_eq!(after, vec![boundary, boundary + 60]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chdb_returns_what_the_embedded_store_returns() {
    let ch = common::clickhouse::Chdb::start();
    let store = ClickHouseStore::open(settings(&ch.url))
        .await
        .expect("open");
    same_as_parquet(&store).await;
}
