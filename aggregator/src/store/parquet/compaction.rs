//! Leveled compaction: within a table, UTC day and tier, a day's small files of one level
//! become one file of the next, swapped in with one manifest update; the replaced files
//! wait out a grace period. The merge streams: files are sorted by minute, so it takes
//! one minute at a time from every input, and holds that minute's rows and one decoded
//! batch per input, never the day.

use std::collections::HashSet;
use std::fs;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use super::manifest::{FileEntry, FileKind, day_dir_name, io_err};
use super::read::RowCursor;
use super::store::{Inner, blocking, lock};
use super::writer::FileWriter;
use crate::Result;
use crate::row::RowMerger;
use crate::schema::Table;

/// Files merged in one go at most (more wait for the next round).
const MAX_INPUTS: usize = 16;

impl Inner {
    /// Leveled compaction: within a table, day and tier, once `compact_min_files` files of
    /// one level exist they are merged into one file of the next level, so each row is
    /// rewritten about log(files) times rather than on every round. Minute files not in
    /// the tiers yet wait until they are.
    pub async fn compact(self: &Arc<Self>) -> Result<()> {
        // A bounded number of rounds: each round can promote a level.
        for _ in 0..8 {
            let this = self.clone();
            if !blocking(move || this.compact_round()).await? {
                break;
            }
        }
        Ok(())
    }

    fn compact_round(&self) -> Result<bool> {
        // Each group with the kind of file it becomes (the next level).
        let groups: Vec<(FileKind, Vec<FileEntry>)> = lock(&self.manifest)
            .compaction_groups(self.settings.compact_min_files)
            .into_iter()
            .filter_map(|((table, day, res, level), files)| {
                let kind = FileKind {
                    table: Table::parse(table)?,
                    day,
                    res,
                    level: level + 1,
                    in_tiers: true,
                };
                Some((kind, files.into_iter().cloned().collect()))
            })
            .collect();
        let compacted = !groups.is_empty();
        // A group that fails (a damaged file) is logged and left; the others go on.
        let mut first_error = None;
        for (kind, files) in groups {
            for inputs in files.chunks(MAX_INPUTS).filter(|c| c.len() >= 2) {
                if let Err(e) = self.merge(kind, inputs) {
                    warn!(table = kind.table.name(), day = day_dir_name(kind.day), error = %e, "compaction failed; the files stay as they are");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(compacted),
        }
    }

    /// Merges `inputs` into one file of `kind` and swaps it in for them.
    fn merge(&self, kind: FileKind, inputs: &[FileEntry]) -> Result<()> {
        let started = Instant::now();
        let mut cursors = inputs
            .iter()
            .map(|f| RowCursor::open(kind.table, &self.dir.join(&f.path)))
            .collect::<Result<Vec<_>>>()?;
        let mut out = self.create_file(kind)?;
        if let Err(e) = merge_into(&mut cursors, &mut out) {
            out.abandon();
            return Err(e);
        }
        let output = out.finish()?;
        if let Some(output_rows) = self.swap(&output, inputs)? {
            debug!(
                table = kind.table.name(),
                day = day_dir_name(kind.day),
                res = kind.res.seconds(),
                inputs = inputs.len(),
                rows = output_rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "compacted"
            );
        }
        Ok(())
    }

    /// Swaps `output` in for `inputs` in one manifest update. Returns the output row
    /// count, or `None` when the inputs changed meanwhile (the output is then deleted and
    /// compaction retried next round).
    fn swap(&self, output: &FileEntry, inputs: &[FileEntry]) -> Result<Option<u64>> {
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

/// The k-way merge: the earliest minute left in any input, all of that minute's rows from
/// every input merged per key, written, and on to the next.
fn merge_into(cursors: &mut [RowCursor], out: &mut FileWriter) -> Result<()> {
    loop {
        let mut next: Option<i64> = None;
        for c in cursors.iter_mut() {
            if let Some(m) = c.peek_minute()? {
                next = Some(next.map_or(m, |n| n.min(m)));
            }
        }
        let Some(minute) = next else {
            return Ok(());
        };
        let mut merger = RowMerger::default();
        for c in cursors.iter_mut() {
            c.take_minute(minute, &mut merger)?;
        }
        let rows = merger.finish();
        out.push(&mut rows.iter().collect::<Vec<_>>())?;
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
        // Old day gone; today's three minute files per table in the tiers (one hour file
        // and one day file) and compacted into one.
        assert_eq!(store.file_count(), 5 * 3);
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
        assert_eq!(on_disk, 3);
    }
}
