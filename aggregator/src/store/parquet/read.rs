//! Reads: the manifest's files of a table, tier and minute ranges, scanned by DataFusion
//! with the minute ranges and key filters as typed literals and only the columns needed,
//! folded into result rows as the record batches stream in ([`Fold`]); and one file's rows
//! batch by batch, for maintenance.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use datafusion::prelude::{ParquetReadOptions, col, lit};
use futures::{FutureExt, StreamExt};

use super::codec::{from_record_batch, scan_schema};
use super::fold::{Fold, columns};
use super::manifest::{Files, io_err};
use super::store::{Inner, lock};
use crate::row::{Row, RowMerger, no_key};
use crate::schema::{self, Key, Table};
use crate::{Error, Result};

impl Inner {
    /// The live files of `table` chosen by `which` that may hold minutes in one of
    /// `ranges` (half-open).
    pub fn files_for(&self, table: Table, which: Files, ranges: &[(i64, i64)]) -> Vec<String> {
        lock(&self.manifest)
            .files
            .iter()
            .filter(|f| f.table == table.name() && f.is(which))
            .filter(|f| {
                ranges
                    .iter()
                    .any(|&(a, b)| f.max_minute >= a && f.min_minute < b)
            })
            .map(|f| self.dir.join(&f.path).to_string_lossy().into_owned())
            .collect()
    }

    /// Reads `paths` through DataFusion into `fold`: only the columns it needs, only rows
    /// whose minute is in one of `ranges` and that match `filters` (both pushed down to
    /// the Parquet scan, which skips row groups by their statistics), summed as the record
    /// batches stream in.
    pub async fn read_into(
        &self,
        fold: &mut Fold,
        table: Table,
        paths: Vec<String>,
        ranges: &[(i64, i64)],
        filters: &[(Key, String)],
    ) -> Result<()> {
        if paths.is_empty() || ranges.is_empty() {
            return Ok(());
        }
        let schema = scan_schema(table);
        let options = ParquetReadOptions::default().schema(&schema);
        // Reading the files' metadata (and the Arrow schema stored in it) may panic on a
        // damaged file too, as decoding can (below).
        let mut df = AssertUnwindSafe(self.ctx.read_parquet(paths, options))
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))??;
        let minute = |&(a, b): &(i64, i64)| {
            col(schema::MINUTE)
                .gt_eq(lit(a))
                .and(col(schema::MINUTE).lt(lit(b)))
        };
        let mut predicate = ranges.iter().map(minute).reduce(|x, y| x.or(y));
        for (k, v) in filters {
            if !table.has(*k) {
                return Err(Error::Request(no_key(table, *k)));
            }
            // `lit` makes the value a typed literal: it never becomes query text.
            let eq = col(k.column()).eq(lit(v.as_str()));
            predicate = predicate.map(|p| p.and(eq));
        }
        if let Some(p) = predicate {
            df = df.filter(p)?;
        }
        df = df.select_columns(&columns(table, fold.histograms()))?;
        // The Parquet decoder asserts on some damaged files (found by fuzzing). DataFusion
        // answers the panics of the tasks it spawns with an error; one raised in the task
        // polling the stream becomes an error here, never a panic of the request's task.
        let mut stream = AssertUnwindSafe(df.execute_stream())
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))??;
        while let Some(batch) = AssertUnwindSafe(stream.next())
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))?
        {
            fold.add(&batch?)?;
        }
        Ok(())
    }
}

/// Rows a [`RowCursor`] decodes at a time.
const CURSOR_BATCH_ROWS: usize = 2048;

/// One store file's rows in file order, a record batch at a time, decoded by the Parquet
/// reader without DataFusion (maintenance reads files whole and in order, and holds one
/// batch per open file). A damaged file is an error, never a panic.
pub(super) struct RowCursor {
    table: Table,
    reader: ParquetRecordBatchReader,
    interner: HashSet<Arc<str>>,
    buffered: VecDeque<Row>,
}

impl RowCursor {
    pub fn open(table: Table, path: &Path) -> Result<RowCursor> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let reader = std::panic::catch_unwind(|| {
            ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.with_batch_size(CURSOR_BATCH_ROWS).build())
        })
        .map_err(|_| decoder_panicked(table))??;
        Ok(RowCursor {
            table,
            reader,
            interner: HashSet::new(),
            buffered: VecDeque::new(),
        })
    }

    /// Decodes the next batch when nothing is buffered; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        while self.buffered.is_empty() {
            let reader = &mut self.reader;
            let next = std::panic::catch_unwind(AssertUnwindSafe(|| reader.next()))
                .map_err(|_| decoder_panicked(self.table))?;
            let Some(batch) = next else {
                return Ok(false);
            };
            self.buffered
                .extend(from_record_batch(self.table, &batch?, &mut self.interner)?);
        }
        Ok(true)
    }

    /// The next rows of the file (one batch), or `None` at its end.
    pub fn next_rows(&mut self) -> Result<Option<Vec<Row>>> {
        Ok(self.fill()?.then(|| self.buffered.drain(..).collect()))
    }

    /// The minute of the next row, or `None` at the end of the file.
    pub fn peek_minute(&mut self) -> Result<Option<i64>> {
        Ok(if self.fill()? {
            self.buffered.front().map(|r| r.key.minute)
        } else {
            None
        })
    }

    /// Moves the rows from here on whose minute is `minute` into `merger`, up to the first
    /// row of another minute (in a file sorted by minute: all of that minute's rows).
    pub fn take_minute(&mut self, minute: i64, merger: &mut RowMerger) -> Result<()> {
        while self.fill()? {
            match self.buffered.front() {
                Some(r) if r.key.minute == minute => {
                    if let Some(r) = self.buffered.pop_front() {
                        merger.add(r);
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// Most rows [`rows_of_file`] reads from one file.
const MAX_FILE_ROWS: i64 = 10_000_000;

/// The rows of one of the store's files held in memory, decoded by the same Parquet
/// decoder and [`from_record_batch`] a scan uses, without DataFusion's planning around
/// them: the fuzzing driver's way into the file reader.
pub fn rows_of_file(table: Table, bytes: Bytes) -> Result<Vec<Row>> {
    // As in a scan, a panic of the Parquet decoder is an error; one of ours is not caught.
    let decode = || -> Result<Vec<RecordBatch>> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
        // A few damaged bytes can claim billions of (null) rows: more than any file the
        // store writes (one flush or one compacted day of one table) is refused.
        if builder.metadata().file_metadata().num_rows() > MAX_FILE_ROWS {
            return Err(Error::Schema(format!(
                "a {} file claims more than {MAX_FILE_ROWS} rows",
                table.name()
            )));
        }
        let reader = builder.build()?;
        Ok(reader.collect::<std::result::Result<_, _>>()?)
    };
    let batches = std::panic::catch_unwind(decode).map_err(|_| decoder_panicked(table))??;
    let mut interner = HashSet::new();
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(from_record_batch(table, batch, &mut interner)?);
    }
    Ok(rows)
}

fn decoder_panicked(table: Table) -> Error {
    Error::Schema(format!(
        "reading the {} files: the Parquet decoder failed on a damaged file",
        table.name()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::schema::{Key, Table};
    use crate::store::Store;
    use crate::store::parquet::ParquetStore;
    use crate::store::parquet::test_support::{batch, scan_all, settings};
    use crate::store::tiers::Tier;

    #[tokio::test]
    async fn filters_and_minute_ranges_select_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
        store
            .write(Arc::new(batch(&[60, 120, 180], 1)))
            .await
            .expect("write");
        let mut req = scan_all(Table::ServiceRelation);
        req.start_minute = 120;
        req.end_minute = 180;
        req.resolution = crate::store::Resolution::Minute;
        let rows = store.scan(&req).await.expect("scan");
        assert_eq!(
            rows.iter().map(|r| r.key.minute).collect::<Vec<_>>(),
            vec![120]
        );
        req.start_minute = 0;
        req.end_minute = 1_000;
        req.filters = vec![(Key::Server, "b.ns' OR '1'='1".into())];
        assert!(store.scan(&req).await.expect("scan").is_empty());
        req.filters = vec![(Key::Server, "b.ns".into())];
        assert_eq!(store.scan(&req).await.expect("scan").len(), 3);
        // A bound on the answer's rows: met exactly is fine, one more is an error.
        req.max_rows = Some(3);
        assert_eq!(store.scan(&req).await.expect("scan").len(), 3);
        req.max_rows = Some(2);
        let err = store.scan(&req).await.expect_err("over the bound");
        assert!(matches!(err, crate::Error::TooManyRows(2)), "{err}");
    }

    /// Damaged store files on which the Parquet crate itself panics, found by
    /// `meshscope fuzz --target parquet`: one in its bit unpacking (an endpoint-table
    /// file), one in arrow-ipc reading the Arrow schema kept in the metadata (an
    /// instance-table file).
    const DAMAGED: [(Table, &[u8]); 2] = [
        (
            Table::Endpoint,
            include_bytes!("../../../testdata/damaged-by-fuzzing.parquet"),
        ),
        (
            Table::Instance,
            include_bytes!("../../../testdata/damaged-arrow-schema.parquet"),
        ),
    ];

    /// A damaged file is an error, not a panic, both for a scan and for `rows_of_file`.
    #[tokio::test]
    async fn a_damaged_file_is_an_error_not_a_panic() {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        for (table, damaged) in DAMAGED {
            // The crate does panic on it (if a later version does not, the file no
            // longer tests the catch: find another with the fuzzer).
            let quiet = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let raw = std::panic::catch_unwind(|| {
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from_static(damaged))
                    .and_then(|b| b.build())
                    .map(|r| r.count())
            });
            std::panic::set_hook(quiet);
            assert!(
                raw.is_err(),
                "the crate no longer panics on the {table:?} file"
            );
            let err = super::rows_of_file(table, bytes::Bytes::from_static(damaged))
                .expect_err("damaged");
            assert!(err.to_string().contains("damaged file"), "{err}");
            // The same bytes in place of a store's file: the scan answers an error.
            let dir = tempfile::tempdir().expect("tempdir");
            let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
            store
                .write(Arc::new(batch(&[60, 120, 180], 3)))
                .await
                .expect("write");
            let files = store.inner.files_for(
                table,
                crate::store::parquet::manifest::Files::Tier(Tier::Minute),
                &[(0, 1_000)],
            );
            let path = files.first().expect("a file");
            std::fs::write(path, damaged).expect("damage the file");
            let scanned = store.scan(&scan_all(table)).await;
            // DataFusion answers its own tasks' panics with an error naming the panic; a
            // panic reaching the scan's task is turned into "… damaged file" here.
            let err = scanned.expect_err("a damaged file").to_string();
            assert!(
                err.contains("damaged file") || err.contains("panicked"),
                "{table:?}: {err}"
            );
        }
    }
}
