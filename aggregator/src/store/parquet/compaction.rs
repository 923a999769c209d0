//! Tiered compaction: a day's small files of one level become one file of the next, swapped
//! in with one manifest update; the replaced files wait out a grace period.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::manifest::{FileEntry, day_dir_name, io_err};
use super::store::{Inner, blocking, lock};
use crate::Result;
use crate::row::Row;
use crate::schema::Table;

impl Inner {
    /// Tiered compaction: within a table and day, once `compact_min_files` files of one
    /// level exist they are merged into one file of the next level, so each row is
    /// rewritten about log(files) times rather than on every round.
    pub async fn compact(self: &Arc<Self>) -> Result<()> {
        // A bounded number of rounds: each round can promote a level.
        for _ in 0..8 {
            if !self.compact_round().await? {
                break;
            }
        }
        Ok(())
    }

    async fn compact_round(self: &Arc<Self>) -> Result<bool> {
        let groups: Vec<((String, i64, u32), Vec<FileEntry>)> = {
            let m = lock(&self.manifest);
            let mut g: BTreeMap<(String, i64, u32), Vec<FileEntry>> = BTreeMap::new();
            for f in &m.files {
                g.entry((f.table.clone(), f.day, f.level))
                    .or_default()
                    .push(f.clone());
            }
            g.into_iter()
                .filter(|(_, files)| files.len() >= self.settings.compact_min_files.max(2))
                .collect()
        };
        let compacted = !groups.is_empty();
        for ((table_name, day, level), inputs) in groups {
            let Some(table) = Table::parse(&table_name) else {
                continue;
            };
            let started = Instant::now();
            let paths = inputs
                .iter()
                .map(|f| self.dir.join(&f.path).to_string_lossy().into_owned())
                .collect();
            let rows = self.read_rows(table, paths, None, None).await?;
            let this = self.clone();
            let n_inputs = inputs.len();
            let swapped =
                blocking(move || this.swap_compacted(table, day, level + 1, &rows, &inputs))
                    .await?;
            if let Some(output_rows) = swapped {
                debug!(
                    table = table.name(),
                    day = day_dir_name(day),
                    inputs = n_inputs,
                    rows = output_rows,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted"
                );
            }
        }
        Ok(compacted)
    }

    /// Writes the merged rows of `inputs` as one file and swaps it in for them in one
    /// manifest update. Returns the output row count, or `None` when the partition changed
    /// meanwhile (the output is then discarded and compaction retried next round).
    fn swap_compacted(
        &self,
        table: Table,
        day: i64,
        level: u32,
        rows: &[Row],
        inputs: &[FileEntry],
    ) -> Result<Option<u64>> {
        let rows: Vec<&Row> = rows.iter().collect();
        let output = self.write_file(table, day, level, &rows)?;
        let replaced: HashSet<&str> = inputs.iter().map(|f| f.path.as_str()).collect();
        let mut m = lock(&self.manifest);
        let mut next = m.clone();
        let before = next.files.len();
        next.files.retain(|f| !replaced.contains(f.path.as_str()));
        if before - next.files.len() != inputs.len() {
            drop(m);
            let p = self.dir.join(&output.path);
            fs::remove_file(&p).map_err(io_err(&p))?;
            return Ok(None);
        }
        next.files.push(output.clone());
        self.persist_manifest(&next)?;
        *m = next;
        drop(m);
        let now = Instant::now();
        lock(&self.pending_delete).extend(inputs.iter().map(|f| (self.dir.join(&f.path), now)));
        Ok(Some(output.rows))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::schema::Table;
    use crate::store::parquet::ParquetStore;
    use crate::store::parquet::test_support::{batch, scan_all, settings};
    use crate::store::{SECONDS_PER_DAY, Store, day_start};

    #[tokio::test]
    async fn compaction_keeps_the_sums_and_retention_drops_old_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(2)).expect("open");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let today = day_start(now);
        let old = today - 10 * SECONDS_PER_DAY;
        for _ in 0..3 {
            store
                .write(Arc::new(batch(&[today + 60, old + 60], 2)))
                .await
                .expect("write");
        }
        assert_eq!(store.file_count(), 5 * 2 * 3);
        store.maintain().await.expect("maintain");
        // Old day gone; today's three files per table compacted into one.
        assert_eq!(store.file_count(), 5);
        let rows = store.scan(&scan_all(Table::Endpoint)).await.expect("scan");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key.minute, 0);
        assert_eq!(rows[0].metrics.calls, 6);
        assert_eq!(
            rows[0].metrics.latency_sum_nanos,
            3 * (1_000_000 + 2_000_000)
        );
        assert_eq!(rows[0].metrics.histogram.count(), 6);
        // Replaced files are gone from disk once the grace period (zero here) has passed.
        store.maintain().await.expect("maintain");
        let on_disk = std::fs::read_dir(dir.path().join("endpoint"))
            .expect("endpoint dir")
            .flatten()
            .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
            .count();
        assert_eq!(on_disk, 1);
    }
}
