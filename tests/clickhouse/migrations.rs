//! The schema: versioned, race-safe migrations, quoted literals, the modern dialect in
//! chDB, and re-creation of what an operator drops while meshscope runs.

use super::*;

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
        resolution: Resolution::Minute,
        histograms: true,
        max_rows: None,
        chosen_side: false,
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
