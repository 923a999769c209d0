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
    let tables = tsv(client
        .execute("SELECT name, engine FROM system.tables WHERE database = 'meshscope' ORDER BY name FORMAT TSV")
        .await
        .expect("tables"));
    let mut want: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("{}\tSummingMergeTree", t.name()))
        .chain(["schema_migrations\tMergeTree".to_string()])
        .collect();
    want.sort();
    assert_eq!(tables.lines().collect::<Vec<_>>(), want);
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
    for s in hostile {
        let got = tsv(client
            .execute(&format!("SELECT hex({}) FORMAT TSV", quote(s)))
            .await
            .unwrap_or_else(|e| panic!("{s:?}: {e}")));
        let want: String = s.bytes().map(|b| format!("{b:02X}")).collect();
        assert_eq!(got, want, "{s:?}");
    }
    // Errors carry ClickHouse's code.
    match client.execute("SELECT * FROM no_such_db.t").await {
        Err(aggregator::Error::ClickHouse { code, .. }) => assert_eq!(code, Some(81)),
        other => panic!("{other:?}"),
    }
}
