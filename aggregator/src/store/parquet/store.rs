//! [`ParquetStore`]: opening the data dir (lock, manifest, orphans), the write path (one
//! file per table and UTC day per flush, then one manifest update) and the [`Store`]
//! implementation that ties reads, compaction and retention together.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::execution::context::SessionContext;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use super::fold::Fold;
use super::gauges::StoreGauges;
use super::manifest::{FileKind, Files, MANIFEST, Manifest, io_err};
use crate::row::{Row, RowBatch};
use crate::schema::Table;
use crate::store::tiers::Tier;
use crate::store::{ScanRequest, Store, day_start};
use crate::{Error, Result};

/// Settings of the Parquet store.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// Days of minute rows to keep; 0 keeps everything.
    pub retention_days: u32,
    /// Days of hour rows to keep (at least `retention_days`); 0 keeps everything.
    pub hour_retention_days: u32,
    /// Days of day rows to keep (at least `hour_retention_days`); 0 keeps everything.
    pub day_retention_days: u32,
    /// A day partition with at least this many files is compacted into one.
    pub compact_min_files: usize,
    /// How long replaced files stay on disk for queries that may still read them.
    pub delete_grace: Duration,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings {
            retention_days: 7,
            hour_retention_days: 30,
            day_retention_days: 365,
            compact_min_files: 8,
            delete_grace: Duration::from_secs(60),
        }
    }
}

/// Parquet + DataFusion implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct ParquetStore {
    pub(super) inner: Arc<Inner>,
}

/// The store's state, shared by its clones and by the blocking tasks that write.
pub(super) struct Inner {
    pub dir: PathBuf,
    /// Held for the store's lifetime: one process per data dir.
    _lock: fs::File,
    pub settings: ParquetSettings,
    pub ctx: SessionContext,
    pub manifest: Mutex<Manifest>,
    /// Files replaced by compaction or retention, deleted after the grace period.
    pub pending_delete: Mutex<Vec<(PathBuf, Instant)>>,
    maintenance: tokio::sync::Mutex<()>,
    gauges: StoreGauges,
    /// Called with the data dir right before and right after every manifest swap: what
    /// a crash at that instant would leave on disk (tests take copies of it).
    #[cfg(test)]
    pub at_commit: Mutex<Option<CommitHook>>,
}

/// See [`Inner::at_commit`].
#[cfg(test)]
pub(super) type CommitHook = Box<dyn Fn(&Path) + Send + Sync>;

impl std::fmt::Debug for ParquetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex of plain data.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data that is
    // rewritten whole; carrying on is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs file work off the async workers.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

impl ParquetStore {
    /// Opens (or creates) the store in `dir`, removing files a crash left unreferenced.
    pub fn open(dir: impl Into<PathBuf>, settings: ParquetSettings) -> Result<ParquetStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock_file = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        if lock_file.try_lock().is_err() {
            return Err(Error::Locked(dir));
        }
        let mut manifest = Manifest::load(&dir.join(MANIFEST))?;
        let before = manifest.files.len();
        manifest.files.retain(|f| dir.join(&f.path).is_file());
        if manifest.files.len() != before {
            tracing::error!(
                missing = before - manifest.files.len(),
                "data files named in the manifest are missing; their rows are lost"
            );
        }
        let store = Inner {
            _lock: lock_file,
            dir,
            settings,
            ctx: SessionContext::new(),
            manifest: Mutex::new(manifest),
            pending_delete: Mutex::new(Vec::new()),
            maintenance: tokio::sync::Mutex::new(()),
            gauges: StoreGauges::default(),
            #[cfg(test)]
            at_commit: Mutex::new(None),
        };
        store.remove_orphans()?;
        let m = lock(&store.manifest);
        info!(dir = %store.dir.display(), files = m.files.len(), "parquet store opened");
        drop(m);
        Ok(ParquetStore {
            inner: Arc::new(store),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Exports the store's gauges (files per tier, files awaiting maintenance).
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.gauges.register(registry);
        self.inner.publish();
    }

    /// Number of live data files.
    pub fn file_count(&self) -> usize {
        lock(&self.inner.manifest).files.len()
    }
}

impl Inner {
    fn remove_orphans(&self) -> Result<()> {
        let live: HashSet<PathBuf> = lock(&self.manifest)
            .files
            .iter()
            .map(|f| self.dir.join(&f.path))
            .collect();
        let mut removed = 0usize;
        for table in Table::ALL {
            let tdir = self.dir.join(table.name());
            let Ok(days) = fs::read_dir(&tdir) else {
                continue;
            };
            for day in days.flatten() {
                let Ok(files) = fs::read_dir(day.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let p = f.path();
                    if !live.contains(&p) {
                        fs::remove_file(&p).map_err(io_err(&p))?;
                        removed += 1;
                    }
                }
            }
        }
        if removed > 0 {
            warn!(
                removed,
                "removed data files not named in the manifest (left by an interrupted write)"
            );
        }
        Ok(())
    }

    /// Replaces the manifest on disk with `m`.
    pub fn persist_manifest(&self, m: &Manifest) -> Result<()> {
        #[cfg(test)]
        self.crash_image();
        m.persist(&self.dir.join(MANIFEST))?;
        #[cfg(test)]
        self.crash_image();
        Ok(())
    }

    #[cfg(test)]
    fn crash_image(&self) {
        if let Some(hook) = lock(&self.at_commit).as_ref() {
            hook(&self.dir);
        }
    }

    /// Sets the gauges from the live manifest.
    fn publish(&self) {
        let m = lock(&self.manifest);
        self.gauges.publish(&m, self.settings.compact_min_files);
    }

    fn write_blocking(&self, batch: &RowBatch) -> Result<()> {
        let mut entries = Vec::new();
        for (table, rows) in &batch.tables {
            let mut by_day: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
            for r in rows {
                by_day.entry(day_start(r.key.minute)).or_default().push(r);
            }
            for (day, rows) in by_day {
                entries.push(self.write_file(FileKind::flushed(*table, day), &rows)?);
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let mut m = lock(&self.manifest);
        let mut next = m.clone();
        next.files.extend(entries);
        self.persist_manifest(&next)?;
        *m = next;
        drop(m);
        self.publish();
        Ok(())
    }
}

#[async_trait]
impl Store for ParquetStore {
    async fn write(&self, batch: Arc<RowBatch>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        blocking(move || inner.write_blocking(&batch)).await
    }

    /// Each part of the window is read from the coarsest tier that covers it (per-minute
    /// reads take minute rows only: [`crate::store::Resolution::plan`]), plus, for the
    /// parts read from hours and days, the minute files not added to the tiers yet; every
    /// row read is summed into its part as it streams in ([`Fold`]).
    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let inner = &self.inner;
        let (table, filters) = (request.table, request.filters.as_slice());
        let (start, end) = (request.start_minute, request.end_minute);
        let plan = request.resolution.plan(start, end);
        let coarse: Vec<(i64, i64)> = [plan.ranges(Tier::Hour), plan.ranges(Tier::Day)].concat();
        let parts = [
            (Files::Tier(Tier::Minute), plan.ranges(Tier::Minute)),
            (Files::Tier(Tier::Hour), plan.ranges(Tier::Hour)),
            (Files::Tier(Tier::Day), plan.ranges(Tier::Day)),
            (Files::NotInTiers, coarse.as_slice()),
        ];
        let mut fold = Fold::new(table, (start, end), request);
        for (which, ranges) in parts {
            let paths = inner.files_for(table, which, ranges);
            inner
                .read_into(&mut fold, table, paths, ranges, filters)
                .await?;
        }
        Ok(fold.finish())
    }

    /// Tiering, retention, compaction, then deleting replaced files: every step runs
    /// even when an earlier one failed (a damaged file must not stop retention), and the
    /// first failure is returned.
    async fn maintain(&self) -> Result<()> {
        let _guard = self.inner.maintenance.lock().await;
        let inner = self.inner.clone();
        let tiered = blocking(move || inner.add_to_tiers()).await;
        let inner = self.inner.clone();
        let retained = blocking(move || inner.apply_retention()).await;
        let compacted = self.inner.compact().await;
        let inner = self.inner.clone();
        let deleted = blocking(move || {
            inner.delete_pending(false);
            inner.publish();
            Ok(())
        })
        .await;
        tiered.and(retained).and(compacted).and(deleted)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.delete_pending(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::parquet::test_support::{batch, scan_all, settings};

    /// Rows arrive in hash order; the file holds them by minute, in row groups whose minute
    /// ranges follow one another, so statistics can skip the groups outside a window.
    #[test]
    fn files_are_sorted_by_minute_in_row_groups_that_do_not_overlap() {
        use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
        use datafusion::parquet::file::statistics::Statistics;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
        let names: Vec<std::sync::Arc<str>> = (0..20)
            .map(|i| std::sync::Arc::from(format!("svc-{i}")))
            .collect();
        // 20 services × 1 440 minutes, minutes visited in a scrambled order.
        let mut rows = Vec::new();
        for step in 0..1440i64 {
            let minute = (step * 577).rem_euclid(1440) * 60;
            for name in &names {
                rows.push(crate::row::Row {
                    key: crate::row::RowKey {
                        minute,
                        side: proto::Side::Server,
                        source: proto::Source::Mesh,
                        keys: crate::row::Keys::new(
                            Table::Service,
                            [(crate::schema::Key::Service, name.clone())],
                        )
                        .expect("keys"),
                    },
                    flags: 0,
                    metrics: crate::metrics::Metrics {
                        calls: 1,
                        ..Default::default()
                    },
                });
            }
        }
        let refs: Vec<&crate::row::Row> = rows.iter().collect();
        let entry = store
            .inner
            .write_file(FileKind::flushed(Table::Service, 0), &refs)
            .expect("write");
        let file = std::fs::File::open(dir.path().join(&entry.path)).expect("open file");
        let reader = SerializedFileReader::new(file).expect("parquet");
        let meta = reader.metadata();
        assert!(
            meta.num_row_groups() >= 2,
            "{} row groups",
            meta.num_row_groups()
        );
        let column = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .position(|c| c.name() == "minute")
            .expect("a minute column");
        let mut last_max = i64::MIN;
        for group in meta.row_groups() {
            let Some(Statistics::Int64(stats)) = group.column(column).statistics() else {
                panic!("no minute statistics");
            };
            let (min, max) = (
                *stats.min_opt().expect("min"),
                *stats.max_opt().expect("max"),
            );
            assert!(
                min >= last_max,
                "row groups overlap: {min} after {last_max}"
            );
            last_max = max;
        }
        assert_eq!(last_max, 1439 * 60);
    }

    #[tokio::test]
    async fn files_not_in_the_manifest_are_removed_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
        store
            .write(Arc::new(batch(&[600], 3)))
            .await
            .expect("write");
        drop(store);
        // What an interrupted flush leaves behind: a data file the manifest never named.
        let stray = dir.path().join("service/1970-01-01/0000009999.parquet");
        std::fs::write(&stray, b"half written").expect("stray");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("reopen");
        assert!(!stray.exists());
        let rows = store.scan(&scan_all(Table::Service)).await.expect("scan");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].metrics.calls, 3);
    }
}
