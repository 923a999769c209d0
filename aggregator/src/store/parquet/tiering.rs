//! Adding flushed minute rows to the hour and day tiers: per table and UTC day, the minute
//! files not in the tiers yet are rolled up into one hour file and one day file, and in
//! one manifest update those two files join and the minute files are marked as in the
//! tiers. A read therefore sees every minute once, before, during and after (and a crash
//! in between leaves either state, never both).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::time::Instant;

use tracing::{debug, warn};

use super::manifest::{FileEntry, FileKind, day_dir_name, io_err};
use super::read::RowCursor;
use super::store::{Inner, lock};
use crate::Result;
use crate::row::{Row, RowMerger};
use crate::schema::Table;
use crate::store::tiers::Tier;

/// Minute files rolled up in one go at most (the rest wait for the next round), which
/// bounds the hour rows held: a day's distinct keys × its hours at worst.
const MAX_FILES_PER_ROLLUP: usize = 16;

impl Inner {
    /// Adds every minute file not in the tiers yet to them, a table and day at a time.
    pub fn add_to_tiers(&self) -> Result<()> {
        let groups: BTreeMap<(String, i64), Vec<FileEntry>> = {
            let m = lock(&self.manifest);
            let mut g: BTreeMap<(String, i64), Vec<FileEntry>> = BTreeMap::new();
            for f in m
                .files
                .iter()
                .filter(|f| f.res == Tier::Minute && !f.in_tiers)
            {
                g.entry((f.table.clone(), f.day))
                    .or_default()
                    .push(f.clone());
            }
            g
        };
        // A group that fails (a damaged file) is logged and left; the others go on.
        let mut first_error = None;
        for ((table_name, day), files) in groups {
            let Some(table) = Table::parse(&table_name) else {
                continue;
            };
            for inputs in files.chunks(MAX_FILES_PER_ROLLUP) {
                if let Err(e) = self.roll_up(table, day, inputs) {
                    warn!(table = table.name(), day = day_dir_name(day), error = %e, "could not add minute files to the tiers; reads keep adding them");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn roll_up(&self, table: Table, day: i64, inputs: &[FileEntry]) -> Result<()> {
        let started = Instant::now();
        let mut hours = RowMerger::default();
        for f in inputs {
            let mut cursor = RowCursor::open(table, &self.dir.join(&f.path))?;
            while let Some(rows) = cursor.next_rows()? {
                for r in &rows {
                    hours.add(Tier::Hour.roll(r));
                }
            }
        }
        let hours = hours.finish();
        let mut days = RowMerger::default();
        for r in &hours {
            days.add(Tier::Day.roll(r));
        }
        let days = days.finish();
        let tier_file = |res: Tier, rows: &[Row]| {
            let kind = FileKind {
                table,
                day,
                res,
                level: 0,
                in_tiers: true,
            };
            self.write_file(kind, &rows.iter().collect::<Vec<_>>())
        };
        let outputs = [tier_file(Tier::Hour, &hours)?, tier_file(Tier::Day, &days)?];
        let mut m = lock(&self.manifest);
        let mut next = m.clone();
        let marked: HashSet<&str> = inputs.iter().map(|f| f.path.as_str()).collect();
        let mut found = 0;
        for f in &mut next.files {
            if marked.contains(f.path.as_str()) && !f.in_tiers {
                f.in_tiers = true;
                found += 1;
            }
        }
        if found != inputs.len() {
            // Maintenance runs one at a time, so nothing else takes these files; should
            // that change, the roll-up is dropped rather than counted twice.
            drop(m);
            for o in &outputs {
                let p = self.dir.join(&o.path);
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
            return Ok(());
        }
        next.files.extend(outputs);
        self.persist_manifest(&next)?;
        *m = next;
        debug!(
            table = table.name(),
            day = day_dir_name(day),
            inputs = inputs.len(),
            hour_rows = hours.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "minute files added to the hour and day tiers"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;
    use proto::{Side, Source};

    use crate::metrics::Metrics;
    use crate::row::{Keys, Row, RowBatch, RowKey};
    use crate::schema::{Key, Table};
    use crate::store::parquet::ParquetStore;
    use crate::store::parquet::test_support::settings;
    use crate::store::{ScanRequest, Store};

    /// A UTC midnight: the generated rows span three days from here.
    const START: i64 = 20_000 * 86_400;
    const MINUTES: i64 = 3 * 1440;

    /// One generated row: minute index, service, side, calls, errors, latency (ms).
    type Gen = (i64, u8, bool, u64, u64, u64);

    fn row((minute, service, server, calls, errors, latency_ms): Gen) -> Row {
        let mut metrics = Metrics {
            calls,
            errors: errors.min(calls),
            latency_count: calls,
            latency_sum_nanos: calls * latency_ms * 1_000_000,
            ..Metrics::default()
        };
        for _ in 0..calls {
            metrics.histogram.record(latency_ms * 1_000_000);
        }
        Row {
            key: RowKey {
                minute: START + minute * 60,
                side: if server { Side::Server } else { Side::Client },
                source: Source::Mesh,
                keys: Keys::new(
                    Table::Service,
                    [(Key::Service, Arc::from(format!("svc-{service}.ns")))],
                )
                .expect("keys"),
            },
            flags: 0,
            metrics,
        }
    }

    /// What a merged read of `[from, to)` must answer, summed here from the generated
    /// rows: per (side, service), calls, errors, latency sum and histogram count.
    fn expected(rows: &[Gen], from: i64, to: i64) -> BTreeMap<(bool, u8), [u64; 4]> {
        let mut want: BTreeMap<(bool, u8), [u64; 4]> = BTreeMap::new();
        for &(m, s, server, calls, errors, latency) in rows {
            let t = START + m * 60;
            if t >= from && t < to {
                let e = want.entry((server, s)).or_default();
                e[0] += calls;
                e[1] += errors.min(calls);
                e[2] += calls * latency * 1_000_000;
                e[3] += calls;
            }
        }
        want
    }

    /// A merged read of the service table over minutes `[a, b)`.
    fn merged(a: i64, b: i64) -> ScanRequest {
        ScanRequest {
            table: Table::Service,
            start_minute: a,
            end_minute: b,
            filters: vec![],
            resolution: crate::store::Resolution::Window,
            histograms: true,
            max_rows: None,
            chosen_side: false,
        }
    }

    fn answered(rows: &[Row]) -> BTreeMap<(bool, u8), [u64; 4]> {
        rows.iter()
            .map(|r| {
                let name = r.key.keys.get(Key::Service);
                let s: u8 = name
                    .trim_start_matches("svc-")
                    .trim_end_matches(".ns")
                    .parse()
                    .expect("generated name");
                let m = &r.metrics;
                (
                    (r.key.side == Side::Server, s),
                    [m.calls, m.errors, m.latency_sum_nanos, m.histogram.count()],
                )
            })
            .collect()
    }

    /// Rows, flush cuts, windows, and where reads in parts cut their windows (minutes after
    /// `START`, some on the hour).
    type Scenario = (Vec<Gen>, Vec<usize>, Vec<(i64, i64)>, Vec<(i64, bool)>);

    fn scenario() -> impl Strategy<Value = Scenario> {
        let gen_row = (
            0..MINUTES,
            0u8..4,
            any::<bool>(),
            1u64..4,
            0u64..3,
            1u64..900,
        );
        (
            prop::collection::vec(gen_row, 1..120),
            // Where the rows are cut into flushes, and after which flushes maintenance runs
            // (tiering and compaction of what is there so far).
            prop::collection::vec(0usize..120, 0..6),
            // Windows: start minute (some before the data) and length (some past it).
            prop::collection::vec((-90i64..MINUTES, 1i64..(MINUTES + 200)), 1..6),
            prop::collection::vec((0i64..(MINUTES + 200), any::<bool>()), 0..8),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever the flushes, the maintenance in between and the window (within an
        /// hour, across hours, across days, ragged ends), a merged read over the tiers
        /// answers exactly the sums of the generated rows in the window; so does each
        /// part of a read split at random minutes and hours (also when it reads the
        /// side rule's side only), and a read without histograms gives the same counters.
        #[test]
        fn tiered_reads_equal_the_minute_rows((rows, cuts, windows, splits) in scenario()) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
                let mut cuts = cuts.clone();
                cuts.push(rows.len());
                cuts.sort_unstable();
                let mut from = 0;
                for (i, cut) in cuts.into_iter().enumerate() {
                    let cut = cut.min(rows.len());
                    if cut > from {
                        let part = rows[from..cut].iter().map(|g| row(*g)).collect();
                        store
                            .write(Arc::new(RowBatch { tables: vec![(Table::Service, part)] }))
                            .await
                            .expect("write");
                        from = cut;
                    }
                    if i % 2 == 0 {
                        store.maintain().await.expect("maintain");
                    }
                }
                for (start, len) in &windows {
                    let (a, b) = (START + start * 60, START + (start + len) * 60);
                    let request = merged(a, b);
                    let got = store.scan(&request).await.expect("scan");
                    prop_assert!(got.iter().all(|r| r.key.minute == a));
                    prop_assert_eq!(answered(&got), expected(&rows, a, b), "window {}..{}", start, start + len);
                    let lean = ScanRequest { histograms: false, ..request.clone() };
                    let mut want = expected(&rows, a, b);
                    want.values_mut().for_each(|v| v[3] = 0);
                    prop_assert_eq!(answered(&store.scan(&lean).await.expect("scan")), want);
                    // In parts: each returned at its start, each the sums of its minutes.
                    let at = splits.iter().map(|&(m, hour)| START + if hour { m / 60 * 3600 } else { m * 60 });
                    let resolution = crate::store::Resolution::parts(a, b, at);
                    let bounds: Vec<i64> = match &resolution {
                        crate::store::Resolution::Parts(c) => std::iter::once(a).chain(c.iter().copied()).chain([b]).collect(),
                        _ => vec![a, b],
                    };
                    // And reading the chosen side only: a service's client rows go when it
                    // has server rows anywhere in the window.
                    let served: Vec<u8> = expected(&rows, a, b).keys().filter(|k| k.0).map(|k| k.1).collect();
                    let split = ScanRequest { resolution, ..request.clone() };
                    for chosen_side in [false, true] {
                        let request = ScanRequest { chosen_side, ..split.clone() };
                        let got = store.scan(&request).await.expect("scan");
                        let mut by_part: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
                        for r in got {
                            by_part.entry(r.key.minute).or_default().push(r);
                        }
                        for w in bounds.windows(2) {
                            let got = by_part.remove(&w[0]).unwrap_or_default();
                            let mut want = expected(&rows, w[0], w[1]);
                            if chosen_side {
                                want.retain(|(server, s), _| *server || !served.contains(s));
                            }
                            prop_assert_eq!(answered(&got), want, "part {}..{}, chosen side {}", w[0], w[1], chosen_side);
                        }
                        prop_assert!(by_part.is_empty(), "rows outside the parts: {:?}", by_part.keys());
                    }
                }
                Ok(())
            })?;
        }
    }

    /// Copies the data dir `from` into `to` (a crash image: what is on disk now).
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("image dir");
        for entry in std::fs::read_dir(from).expect("read dir").flatten() {
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy file");
            }
        }
    }

    /// A crash at any manifest swap of maintenance (before or after it: roll-ups into the
    /// tiers, compaction of each tier, retention) leaves a data dir that opens to exactly
    /// the answers of the generated rows for every window shape, and whose next
    /// maintenance finishes the work with the same answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_at_any_step_of_maintenance_keeps_reads_exact() {
        // Three days of rows for four services, spread over the minutes, in six flushes.
        let rows: Vec<Gen> = (0..600i64)
            .map(|i| {
                let minute = (i * 577 + i * i) % MINUTES;
                (
                    minute,
                    (i % 4) as u8,
                    i % 3 != 0,
                    1 + (i % 3) as u64,
                    (i % 5 == 0) as u64,
                    1 + (i * 7) as u64 % 400,
                )
            })
            .collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
        for part in rows.chunks(100) {
            let part = part.iter().map(|g| row(*g)).collect();
            store
                .write(Arc::new(RowBatch {
                    tables: vec![(Table::Service, part)],
                }))
                .await
                .expect("write");
        }
        let images_dir = tempfile::tempdir().expect("tempdir");
        let images: Arc<std::sync::Mutex<Vec<std::path::PathBuf>>> = Arc::default();
        let taken = images.clone();
        let root = images_dir.path().to_path_buf();
        *super::super::store::lock(&store.inner.at_commit) =
            Some(Box::new(move |data: &std::path::Path| {
                let mut taken = super::super::store::lock(&taken);
                let image = root.join(taken.len().to_string());
                copy_dir(data, &image);
                taken.push(image);
            }));
        store.maintain().await.expect("maintain");
        let images = std::mem::take(&mut *super::super::store::lock(&images));
        // Roll-ups of three days, compaction of their tiers: many swaps, each seen twice.
        assert!(images.len() >= 8, "{} crash images", images.len());
        let windows = [
            (0, MINUTES),
            (17, 43),
            (50, 3 * 60 + 11),
            (1440 - 90, 2 * 1440 + 75),
            (1440, 2 * 1440),
            (-30, MINUTES + 30),
        ];
        let check = |store: ParquetStore, when: String| {
            let rows = &rows;
            async move {
                for (start, end) in windows {
                    let (a, b) = (START + start * 60, START + end * 60);
                    let request = merged(a, b);
                    let got = store.scan(&request).await.expect("scan");
                    assert_eq!(
                        answered(&got),
                        expected(rows, a, b),
                        "{when}: window {start}..{end}"
                    );
                }
            }
        };
        for image in &images {
            let name = image.display().to_string();
            let reopened = ParquetStore::open(image, settings(0)).expect("open a crash image");
            check(reopened.clone(), format!("crash image {name}")).await;
            reopened.maintain().await.expect("maintain after the crash");
            check(reopened.clone(), format!("crash image {name}, maintained")).await;
            let m = super::super::store::lock(&reopened.inner.manifest);
            assert!(
                m.files
                    .iter()
                    .all(|f| f.res != crate::store::tiers::Tier::Minute || f.in_tiers),
                "{name}: minute files left out of the tiers"
            );
        }
    }

    /// Retention at the tier boundaries: minute files past their days leave once they are
    /// in the tiers, hour and day files stay for theirs, so a long window over expired
    /// minutes still reads whole hours and days exactly.
    #[tokio::test]
    async fn expired_minutes_leave_their_hours_and_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(2);
        s.hour_retention_days = 20;
        s.day_retention_days = 0;
        let store = ParquetStore::open(dir.path(), s).expect("open");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let today = crate::store::day_start(now);
        // 10 days ago (minutes expire, hours and days stay) and 40 days ago (only days).
        let days_ago = |n: i64| today - n * 86_400;
        let mut rows = Vec::new();
        for (day, calls) in [(days_ago(10), 3u64), (days_ago(40), 5)] {
            for hour in [0i64, 5, 23] {
                rows.push(Row {
                    key: RowKey {
                        minute: day + hour * 3600 + 17 * 60,
                        ..row((0, 1, true, 1, 0, 1)).key
                    },
                    ..row((0, 1, true, calls, 0, 5))
                });
            }
        }
        store
            .write(Arc::new(RowBatch {
                tables: vec![(Table::Service, rows)],
            }))
            .await
            .expect("write");
        store.maintain().await.expect("maintain");
        let read = |a: i64, b: i64| {
            let store = store.clone();
            async move {
                let rows = store.scan(&merged(a, b)).await.expect("scan");
                rows.iter().map(|r| r.metrics.calls).sum::<u64>()
            }
        };
        // Whole days: from day rows, for both (day rows are kept forever here).
        assert_eq!(read(days_ago(40), days_ago(39)).await, 15);
        assert_eq!(read(days_ago(10), days_ago(9)).await, 9);
        // Whole hours 10 days ago: hour rows; 40 days ago the hours are gone too.
        assert_eq!(
            read(days_ago(10) + 5 * 3600, days_ago(10) + 6 * 3600).await,
            3
        );
        assert_eq!(
            read(days_ago(40) + 5 * 3600, days_ago(40) + 6 * 3600).await,
            0
        );
        // A ragged window needs the minutes, which are gone: only its whole hours count.
        assert_eq!(
            read(days_ago(10) + 5 * 3600 + 60, days_ago(10) + 24 * 3600).await,
            3
        );
        // The minutes themselves are gone from per-minute reads.
        let per_minute = store
            .scan(&ScanRequest {
                table: Table::Service,
                start_minute: days_ago(41),
                end_minute: today,
                filters: vec![],
                resolution: crate::store::Resolution::Minute,
                histograms: true,
                max_rows: None,
                chosen_side: false,
            })
            .await
            .expect("scan");
        assert!(per_minute.is_empty(), "{per_minute:?}");
    }

    /// A damaged minute file fails its own group only: the other day's files go into the
    /// tiers, maintenance reports the failure, and no temp file is left behind.
    #[tokio::test]
    async fn a_damaged_file_stops_only_its_own_roll_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
        for day in [0i64, 1] {
            let rows = vec![row((day * 1440 + 30, 1, true, 2, 0, 3))];
            store
                .write(Arc::new(RowBatch {
                    tables: vec![(Table::Service, rows)],
                }))
                .await
                .expect("write");
        }
        let files = store.inner.files_for(
            Table::Service,
            crate::store::parquet::manifest::Files::NotInTiers,
            &[(START, START + 86_400)],
        );
        assert_eq!(files.len(), 1);
        std::fs::write(&files[0], b"PAR1 damaged PAR1").expect("damage");
        assert!(
            store.maintain().await.is_err(),
            "the damaged file is reported"
        );
        let left = store.inner.files_for(
            Table::Service,
            crate::store::parquet::manifest::Files::NotInTiers,
            &[(START, START + 2 * 86_400)],
        );
        assert_eq!(left, files, "only the damaged day waits for the tiers");
        let temp_files = std::fs::read_dir(dir.path().join("service"))
            .expect("service dir")
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .filter(|f| f.path().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(temp_files, 0);
    }
}
