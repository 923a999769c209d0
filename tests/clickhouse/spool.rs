//! The write path's queue and spool: a replayed spool that already landed, new batches on
//! disk while ClickHouse fails, and backpressure when memory and spool are both full.

use super::*;

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
        resolution: Resolution::Minute,
        histograms: true,
        max_rows: None,
        chosen_side: false,
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
            resolution: Resolution::Minute,
            histograms: true,
            max_rows: None,
            chosen_side: false,
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
