//! Every scan shape (tables, windows across minutes, hours and days, filters with values
//! that need escaping) answers as the embedded Parquet store does for the same writes.

use super::*;

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
            // Per minute, merged, and split in parts that take hours and minutes (and,
            // in the long window, days) from each store's tiers; and split at every minute
            // (past the cuts ClickHouse sums into parts itself in the long windows).
            let resolutions = [
                Resolution::Minute,
                Resolution::Window,
                Resolution::parts(start, end, [midnight - 1800, midnight, midnight + 300]),
                Resolution::parts(start, end, (start..end).step_by(60)),
            ];
            for resolution in &resolutions {
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
                        resolution: resolution.clone(),
                        histograms: true,
                        max_rows: None,
                        chosen_side: false,
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
        resolution: Resolution::Minute,
        histograms: true,
        max_rows: None,
        chosen_side: false,
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
