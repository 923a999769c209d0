//! The ClickHouse backend against a real server (Debian's ClickHouse 18.16): schema
//! migrations and literal escaping. Writes and reads come with the backend's next
//! increment.

mod common;

use std::time::Duration;

use aggregator::schema::Table;
use aggregator::store::clickhouse::client::Client;
use aggregator::store::clickhouse::schema::{self, Dialect, LATEST};
use aggregator::store::clickhouse::sql::quote;
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
