//! The ClickHouse backend against a real server (Debian's ClickHouse 18.16) and against
//! ClickHouse 26.x in chDB: schema migrations, literal escaping, every scan shape equal to
//! the embedded Parquet store's answer for the same writes; then whole meshscope processes
//! on one ClickHouse: two collectors and a reader, a ClickHouse outage mid-stream, a
//! meshscope restart while ClickHouse is down, a replayed spool that already landed, and
//! tables dropped by hand while meshscope runs.

mod common;

use std::time::Duration;

use aggregator::row::RowBatch;
use aggregator::schema::{Key, Table};
use aggregator::store::ClickHouseConfig;
use aggregator::store::clickhouse::ClickHouseStore;
use aggregator::store::clickhouse::client::Client;
use aggregator::store::clickhouse::schema::{self, Dialect, LATEST};
use aggregator::store::clickhouse::sql::quote;
use aggregator::store::{ScanRequest, Store};
use common::clickhouse::ClickHouse;
use prometheus_client::registry::Registry;

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

    // A table dropped by hand comes back at the next start, without another version row.
    let version_rows = || async {
        tsv(client
            .execute("SELECT count() FROM meshscope.schema_migrations FORMAT TSV")
            .await
            .expect("rows"))
    };
    let before = version_rows().await;
    client
        .execute("DROP TABLE meshscope.service_relation")
        .await
        .expect("drop");
    schema::migrate(&client, "meshscope", Dialect::Legacy, 7)
        .await
        .expect("after a drop");
    expect_tables(&client, ("''", "", "")).await;
    assert_eq!(version_rows().await, before);

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
    store.sync().await.expect("sync");
    let midnight = now.div_euclid(86_400) * 86_400;
    let sort = |mut rows: Vec<aggregator::row::Row>| {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    };
    let mut checked = 0;
    for table in Table::ALL {
        for (start, end) in [
            (midnight - 3600, midnight + 3600),
            (midnight - 60, midnight + 60),
            (midnight + 120, midnight + 600),
            // Whole days, whole hours and ragged minutes at both ends.
            (midnight - 2 * 86_400 + 300, midnight + 86_400 - 300),
        ] {
            // The key the rows' names rotate from (see `batches`).
            let first = match table {
                Table::Service | Table::Instance | Table::Endpoint => Key::Service,
                Table::ServiceRelation | Table::InstanceRelation => Key::Client,
            };
            for by_minute in [true, false] {
                for filters in [
                    vec![],
                    vec![(first, "it's \"quoted\"".to_string())],
                    vec![(first, "tab\there\nnewline\\".to_string())],
                    vec![(first, "x' OR '1'='1".to_string())],
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

fn settings(url: &str) -> ClickHouseConfig {
    ClickHouseConfig {
        url: url.to_string(),
        database: "meshscope".into(),
        user: "default".into(),
        password: String::new(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_18_16_returns_what_the_embedded_store_returns() {
    let ch = ClickHouse::start();
    let spool = tempfile::tempdir().expect("tempdir");
    let store = open(&ch.url, spool.path()).await;
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
    store.sync().await.expect("sync");
    let boundary = now.div_euclid(86_400) * 86_400 - 7 * 86_400;
    let request = ScanRequest {
        table: Table::Service,
        start_minute: boundary - 3600,
        end_minute: boundary + 3600,
        filters: vec![],
        by_minute: true,
    };
    let minutes = |rows: Vec<aggregator::row::Row>| {
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
    let spool = tempfile::tempdir().expect("tempdir");
    let store = open(&ch.url, spool.path()).await;
    same_as_parquet(&store).await;
}

// ---- whole processes on one ClickHouse ----

use common::truth::{check_all_edges, expected, scenario, window};
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use testkit::sim::{self, Hop, Mesh};

/// A `meshscope serve --store clickhouse` child process.
struct Proc {
    child: tokio::process::Child,
    grpc: String,
    http: String,
}

impl Proc {
    async fn start(url: &str, dir: &Path) -> Proc {
        let (grpc, http) = (common::free_port(), common::free_port());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshscope"))
            .args(["serve", "--store", "clickhouse", "--clickhouse-url", url])
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--http-addr", &format!("127.0.0.1:{http}")])
            .args(["--otlp-http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn meshscope");
        common::wait_healthy(&format!("http://127.0.0.1:{http}")).await;
        Proc {
            child,
            grpc: format!("http://127.0.0.1:{grpc}"),
            http: format!("http://127.0.0.1:{http}"),
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        let resp = reqwest::get(format!("{}{path}", self.http))
            .await
            .expect("get");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    /// SIGTERM; the process must flush, hand everything to ClickHouse and exit 0.
    async fn stop(mut self) {
        let pid = self.child.id().expect("pid").to_string();
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        assert!(exit.success(), "exit status {exit:?}");
    }
}

/// Streams the proxies in `proxies` of `hops` to `endpoint`, after announcing every proxy
/// (as each proxy's addresses would be known from peer metadata or static addresses).
async fn send_proxies(endpoint: &str, mesh: &Mesh, hops: &[Hop], keep: impl Fn(usize) -> bool) {
    sim::announce(endpoint, mesh, 0..mesh.workloads.len())
        .await
        .expect("announce");
    let sends = sim::encode(mesh, hops)
        .into_iter()
        .filter(|(p, _)| keep(*p))
        .map(|(_, messages)| sim::send(endpoint, messages));
    for r in futures::future::join_all(sends).await {
        r.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_and_a_reader_give_the_single_process_numbers() {
    let ch = ClickHouse::start();
    let (mesh, hops, start) = scenario(31, 300);
    let (edges, services, _) = expected(&mesh, &hops);
    let (a_dir, b_dir, r_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    // Two collectors start at once (their migrations race) and each gets half of the
    // proxies: a call's client-side report and its server-side report usually land in
    // different processes, and only ClickHouse sees both.
    let (a, b) = tokio::join!(
        Proc::start(&ch.url, a_dir.path()),
        Proc::start(&ch.url, b_dir.path())
    );
    tokio::join!(
        send_proxies(&a.grpc, &mesh, &hops, |p| p % 2 == 0),
        send_proxies(&b.grpc, &mesh, &hops, |p| p % 2 == 1)
    );
    tokio::join!(a.stop(), b.stop());

    // The same traffic through one process on the embedded store.
    let single_dir = tempfile::tempdir().expect("tempdir");
    let single = common::start(common::config(single_dir.path())).await;
    sim::send_all(&single.grpc, &mesh, &hops)
        .await
        .expect("send");
    single.flush().await;

    let reader = Proc::start(&ch.url, r_dir.path()).await;
    let w = window(start);
    let topo = reader.get(&format!("/api/v1/topology?{w}")).await;
    check_all_edges(&topo, &edges);
    let want_topo = single.ok(&format!("/api/v1/topology?{w}")).await;
    assert_eq!(
        topo, want_topo,
        "topology: ClickHouse reader vs one embedded process"
    );
    let list = reader.get(&format!("/api/v1/services?{w}")).await;
    assert_eq!(list, single.ok(&format!("/api/v1/services?{w}")).await);
    for (name, want) in &services {
        let got = list["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|s| s["name"] == *name)
            .unwrap_or_else(|| panic!("service {name} missing: {list}"));
        assert_eq!(got["calls"].as_u64(), Some(want.calls), "{name}");
        assert_eq!(got["errors"].as_u64(), Some(want.errors), "{name}");
    }
    // Time series and PromQL read through ClickHouse too.
    let q =
        "/prometheus/api/v1/query?query=sum(increase(traces_service_graph_request_total%5B20m%5D))";
    let total: f64 = reader.get(q).await["data"]["result"][0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("number");
    assert_eq!(total, edges.values().map(|e| e.calls).sum::<u64>() as f64);
    reader.stop().await;
    single.stop().await;
}

/// An in-process meshscope on ClickHouse with a 1 s flush interval and a small memory
/// queue, so an outage fills the disk spool quickly.
fn clickhouse_config(url: &str, dir: &Path) -> meshscope::Config {
    let mut c = common::config(dir);
    c.store.backend = meshscope::Backend::Clickhouse;
    c.clickhouse.url = url.to_string();
    c.clickhouse.buffer_bytes = 16 << 10;
    c.clickhouse.timeout = Duration::from_secs(5);
    c.clickhouse.full_wait = Duration::from_secs(60);
    c.aggregator.flush_interval = Duration::from_secs(1);
    c
}

/// Polls `/metrics` until `cond` holds for the named metric (60 s at most).
async fn wait_metric(stack: &common::Stack, name: &str, cond: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = common::metric_value(&stack.metrics().await, name);
        if cond(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spool_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("clickhouse-spool"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spool"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_mid_stream_loses_nothing() {
    let mut ch = ClickHouse::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let stack = common::start(clickhouse_config(&ch.url, dir.path())).await;
    let (mesh, hops, start) = scenario(41, 300);
    let (edges, _, _) = expected(&mesh, &hops);
    let thirds: Vec<&[Hop]> = hops.chunks(hops.len().div_ceil(3)).collect();

    sim::send_all(&stack.grpc, &mesh, thirds[0])
        .await
        .expect("send");
    stack.flush().await;

    ch.stop();
    // Two flushes during the outage: the first waits in the (empty) memory queue, the
    // second does not fit beside it and spills to disk.
    let (early, late) = thirds[1].split_at(thirds[1].len() / 2);
    sim::send_all(&stack.grpc, &mesh, early)
        .await
        .expect("send during the outage");
    wait_metric(&stack, "meshscope_clickhouse_insert_failures_total", |v| {
        v > 0.0
    })
    .await;
    wait_metric(&stack, "meshscope_clickhouse_buffered_bytes", |v| v > 0.0).await;
    sim::send_all(&stack.grpc, &mesh, late)
        .await
        .expect("send during the outage");
    wait_metric(&stack, "meshscope_clickhouse_spilled_batches_total", |v| {
        v > 0.0
    })
    .await;
    assert!(spool_files(dir.path()) > 0, "nothing spooled");
    let calls = common::metric_value(&stack.metrics().await, "meshscope_aggregated_calls_total");

    ch.restart();
    sim::send_all(&stack.grpc, &mesh, thirds[2])
        .await
        .expect("send after");
    // An explicit flush waits until memory and spool are in ClickHouse.
    stack.flush().await;
    assert_eq!(spool_files(dir.path()), 0);
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, &edges);
    let m = stack.metrics().await;
    assert!(calls > 0.0);
    assert_eq!(
        common::metric_value(&m, "meshscope_clickhouse_dropped_rows_total"),
        0.0
    );
    assert_eq!(
        common::metric_value(&m, "meshscope_dropped_calls_total"),
        0.0,
        "the aggregator dropped calls"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_meshscope_while_clickhouse_is_down_loses_nothing() {
    let mut ch = ClickHouse::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mesh, hops, start) = scenario(43, 300);
    let (edges, _, _) = expected(&mesh, &hops);
    let thirds: Vec<&[Hop]> = hops.chunks(hops.len().div_ceil(3)).collect();

    // Only the shutdown flush writes the second third, into a roomy memory queue.
    let mut config = clickhouse_config(&ch.url, dir.path());
    config.aggregator.flush_interval = Duration::from_secs(3600);
    config.clickhouse.buffer_bytes = 64 << 20;
    let stack = common::start(config).await;
    sim::send_all(&stack.grpc, &mesh, thirds[0])
        .await
        .expect("send");
    stack.flush().await;
    ch.stop();
    sim::send_all(&stack.grpc, &mesh, thirds[1])
        .await
        .expect("send");
    // Shutdown cannot reach ClickHouse: what the queue holds goes to the spool.
    stack.stop().await;
    assert!(spool_files(dir.path()) > 0, "shutdown spooled nothing");

    // A new process starts although ClickHouse is still down, takes more traffic, and
    // sends the old spool and the new rows once ClickHouse is back.
    let stack = common::start(clickhouse_config(&ch.url, dir.path())).await;
    sim::send_all(&stack.grpc, &mesh, thirds[2])
        .await
        .expect("send");
    ch.restart();
    stack.flush().await;
    assert_eq!(spool_files(dir.path()), 0);
    let topo = stack
        .ok(&format!("/api/v1/topology?{}", window(start)))
        .await;
    check_all_edges(&topo, &edges);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_spool_that_already_landed_is_not_counted_twice() {
    use aggregator::store::clickhouse::{chunk, spool::Spool};
    let ch = ClickHouse::start();
    let (first, second) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let now = common::now_nanos() / 1_000_000_000;
    let batch = batches(now).remove(0);
    // The chunks of one flush, spooled; a first process sends them.
    let chunks = chunk::encode(&batch);
    let (mut spool, _) = Spool::open(first.path()).expect("spool");
    spool.write(&chunks).expect("spool write");
    drop(spool);
    let store = open(&ch.url, first.path()).await;
    store.sync().await.expect("sync");
    let request = |table| ScanRequest {
        table,
        start_minute: now - 86_400,
        end_minute: now + 86_400,
        filters: vec![],
        by_minute: true,
    };
    let before = store.scan(&request(Table::Endpoint)).await.expect("scan");
    store.close().await.expect("close");
    drop(store);
    // The same chunks (same tokens) in another spool, as a process that inserted them and
    // stopped before it removed their spool file leaves them: the replay finds every
    // marker and sends nothing.
    let (mut spool, _) = Spool::open(second.path()).expect("spool");
    spool.write(&chunks).expect("spool write");
    drop(spool);
    let mut registry = Registry::default();
    let replay = ClickHouseStore::open(
        &settings(&ch.url),
        RETENTION_DAYS,
        second.path().to_path_buf(),
        &mut registry,
    )
    .await
    .expect("open");
    replay.sync().await.expect("sync");
    let after = replay.scan(&request(Table::Endpoint)).await.expect("scan");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert_eq!(
        common::metric_value(&text, "clickhouse_duplicate_inserts_skipped_total"),
        chunks.len() as f64
    );
    assert_eq!(common::metric_value(&text, "clickhouse_inserts_total"), 0.0);
    let sort = |mut rows: Vec<aggregator::row::Row>| {
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    };
    assert!(!before.is_empty());
    assert_eq!(sort(after), sort(before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_or_database_dropped_while_running_is_recreated() {
    use aggregator::store::parquet::{ParquetSettings, ParquetStore};
    use std::sync::Arc;
    let ch = ClickHouse::start();
    let client = Client::new(&ch.url, "default", "", Duration::from_secs(30)).expect("client");
    let spool = tempfile::tempdir().expect("tempdir");
    let store = open(&ch.url, spool.path()).await;
    let now = common::now_nanos() / 1_000_000_000;
    let [first, second]: [RowBatch; 2] = batches(now).try_into().expect("two batches");
    let (first, second) = (Arc::new(first), Arc::new(second));
    let request = |table| ScanRequest {
        table,
        start_minute: now - 3 * 86_400,
        end_minute: now + 86_400,
        filters: vec![],
        by_minute: true,
    };
    // What a store holding `batches` returns.
    let expected = |batches: Vec<Arc<RowBatch>>, table| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let parquet = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("parquet");
        for b in batches {
            parquet.write(b).await.expect("parquet write");
        }
        let mut rows = parquet.scan(&request(table)).await.expect("parquet scan");
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    };
    let got = |table| {
        let store = &store;
        async move {
            let mut rows = store.scan(&request(table)).await.expect("scan");
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            rows
        }
    };
    store.write(first.clone()).await.expect("write");
    store.sync().await.expect("sync");
    // Runs `sql`, then writes `batch` and waits until it is in ClickHouse.
    let drop_then_write = |sql: &'static str, batch: Arc<RowBatch>| {
        let (client, store) = (&client, &store);
        async move {
            client.execute(sql).await.expect(sql);
            store.write(batch).await.expect("write");
            tokio::time::timeout(Duration::from_secs(60), store.sync())
                .await
                .expect("sync in time")
                .expect("sync");
        }
    };

    // One table dropped by hand: the next insert into it fails, the shipper re-creates it
    // and the retry lands; the other tables keep both batches.
    drop_then_write("DROP TABLE meshscope.endpoint", second.clone()).await;
    assert_eq!(
        got(Table::Endpoint).await,
        expected(vec![second.clone()], Table::Endpoint).await
    );
    assert_eq!(
        got(Table::Service).await,
        expected(vec![first.clone(), second.clone()], Table::Service).await
    );

    // The whole database dropped: re-created with its migrations table.
    drop_then_write("DROP DATABASE meshscope", first.clone()).await;
    for table in Table::ALL {
        assert_eq!(got(table).await, expected(vec![first.clone()], table).await);
    }
    expect_tables(&client, ("''", "", "")).await;
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_clickhouse_fails_new_batches_wait_on_disk() {
    use aggregator::store::parquet::{ParquetSettings, ParquetStore};
    use std::sync::Arc;
    let mut ch = ClickHouse::start();
    let spool = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::default();
    let store = ClickHouseStore::open(
        &settings(&ch.url),
        RETENTION_DAYS,
        spool.path().to_path_buf(),
        &mut registry,
    )
    .await
    .expect("open");
    let failures = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        common::metric_value(&text, "clickhouse_insert_failures_total")
    };
    let now = common::now_nanos() / 1_000_000_000;
    let [a, b]: [RowBatch; 2] = batches(now).try_into().expect("two batches");
    let (a, b) = (Arc::new(a), Arc::new(b));
    store.write(a.clone()).await.expect("write");
    store.sync().await.expect("sync");

    ch.stop();
    // Queued in memory (ClickHouse has not failed yet), then the first attempt fails.
    store.write(b.clone()).await.expect("write");
    let deadline = Instant::now() + Duration::from_secs(30);
    while failures() == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no failed insert after ClickHouse stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (memory, spooled) = store.backlog();
    assert!(
        memory > 0,
        "the batch queued before the failure stays in memory"
    );
    assert_eq!(spooled, 0);
    // While it fails, a new batch goes to disk, although memory has room.
    store.write(a.clone()).await.expect("write");
    let (memory_after, spooled_after) = store.backlog();
    assert_eq!(memory_after, memory, "memory did not grow");
    assert!(spooled_after > 0, "the batch is spooled");

    // Back up: everything lands once, and new batches use memory again.
    ch.restart();
    tokio::time::timeout(Duration::from_secs(60), store.sync())
        .await
        .expect("sync in time")
        .expect("sync");
    store.write(b.clone()).await.expect("write");
    assert_eq!(store.backlog().1, 0, "spooled although ClickHouse answers");
    store.sync().await.expect("sync");
    let dir = tempfile::tempdir().expect("tempdir");
    let parquet = ParquetStore::open(dir.path(), ParquetSettings::default()).expect("parquet");
    for batch in [&a, &b, &a, &b] {
        parquet.write(batch.clone()).await.expect("parquet write");
    }
    for table in Table::ALL {
        let req = ScanRequest {
            table,
            start_minute: now - 3 * 86_400,
            end_minute: now + 86_400,
            filters: vec![],
            by_minute: true,
        };
        let sorted = |mut rows: Vec<aggregator::row::Row>| {
            rows.sort_by(|x, y| x.key.cmp(&y.key));
            rows
        };
        assert_eq!(
            sorted(store.scan(&req).await.expect("scan")),
            sorted(parquet.scan(&req).await.expect("parquet scan")),
            "{table:?}"
        );
    }
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_memory_and_spool_full_a_write_waits_then_is_refused() {
    // Nothing listens on this port: ClickHouse is down from the start, which is not an
    // error at open.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = settings(&url);
    s.timeout = Duration::from_secs(1);
    let now = common::now_nanos() / 1_000_000_000;
    let batch = std::sync::Arc::new(batches(now).remove(0));
    let one = aggregator::store::clickhouse::chunk::encode(&batch)
        .iter()
        .map(|c| c.body.len() as u64)
        .sum::<u64>();
    // Room for one batch in memory and one on disk (tokens grow by a few bytes; a spool
    // file adds headers).
    s.buffer_bytes = one + 1000;
    s.spool_bytes = one + 5000;
    s.full_wait = Duration::from_secs(1);
    let store = ClickHouseStore::open(
        &s,
        RETENTION_DAYS,
        dir.path().to_path_buf(),
        &mut Registry::default(),
    )
    .await
    .expect("open without a server");
    store.write(batch.clone()).await.expect("into memory");
    store.write(batch.clone()).await.expect("into the spool");
    let (memory, spooled) = store.backlog();
    assert!(memory >= one && memory <= one + 1000, "{memory}");
    assert!(spooled > one && spooled <= one + 5000, "{spooled}");
    let started = Instant::now();
    let err = store
        .write(batch)
        .await
        .expect_err("refused when both are full");
    assert!(started.elapsed() >= Duration::from_secs(1), "did not wait");
    assert!(matches!(err, aggregator::Error::Backlog(_)), "{err}");
    assert!(err.to_string().contains("bytes queued in memory"), "{err}");
    assert_eq!(
        store.backlog(),
        (memory, spooled),
        "the refused batch took no room"
    );
    // Shutdown spools the memory queue too.
    store.close().await.expect("close");
    assert_eq!(
        std::fs::read_dir(dir.path())
            .expect("spool dir")
            .filter(|e| e
                .as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spool")))
            .count(),
        2
    );
}
