//! Reads: the manifest's files of a table and minute range, scanned by DataFusion with the
//! request's minute range and key filters as typed literals, merged per row key as the
//! record batches stream in.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{ParquetReadOptions, col, lit};
use futures::{FutureExt, StreamExt};

use super::codec::{arrow_schema, from_record_batch};
use super::store::{Inner, lock};
use crate::row::{Row, RowMerger, no_key};
use crate::schema::{self, Table};
use crate::store::ScanRequest;
use crate::{Error, Result};

impl Inner {
    /// The live files of `table` that may hold minutes in `[start, end)`.
    pub fn files_for(&self, table: Table, start: i64, end: i64) -> Vec<String> {
        lock(&self.manifest)
            .files
            .iter()
            .filter(|f| f.table == table.name() && f.max_minute >= start && f.min_minute < end)
            .map(|f| self.dir.join(&f.path).to_string_lossy().into_owned())
            .collect()
    }

    /// Reads `paths` through DataFusion, applying the request's minute range and key
    /// filters, and merges rows per `(minute, side, keys)` batch by batch, so memory follows
    /// the number of distinct result rows rather than the rows scanned. With
    /// `collapse_minutes` every row is put at `collapse_to` first (whole-window merge).
    pub async fn read_rows(
        &self,
        table: Table,
        paths: Vec<String>,
        request: Option<&ScanRequest>,
        collapse_to: Option<i64>,
    ) -> Result<Vec<Row>> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let schema = arrow_schema(table);
        let options = ParquetReadOptions::default().schema(&schema);
        // Reading the files' metadata (and the Arrow schema stored in it) may panic on a
        // damaged file too, as decoding can (below).
        let mut df = AssertUnwindSafe(self.ctx.read_parquet(paths, options))
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))??;
        if let Some(r) = request {
            let mut predicate = col(schema::MINUTE)
                .gt_eq(lit(r.start_minute))
                .and(col(schema::MINUTE).lt(lit(r.end_minute)));
            for (k, v) in &r.filters {
                if !table.has(*k) {
                    return Err(Error::Request(no_key(table, *k)));
                }
                // `lit` makes the value a typed literal: it never becomes query text.
                predicate = predicate.and(col(k.column()).eq(lit(v.as_str())));
            }
            df = df.filter(predicate)?;
        }
        // The Parquet decoder asserts on some damaged files (found by fuzzing). DataFusion
        // answers the panics of the tasks it spawns with an error; one raised in the task
        // polling the stream becomes an error here, never a panic of the request's task.
        let mut stream = AssertUnwindSafe(df.execute_stream())
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))??;
        let mut interner: HashSet<Arc<str>> = HashSet::new();
        let mut merged = RowMerger::default();
        while let Some(batch) = AssertUnwindSafe(stream.next())
            .catch_unwind()
            .await
            .map_err(|_| decoder_panicked(table))?
        {
            for mut row in from_record_batch(table, &batch?, &mut interner)? {
                if let Some(m) = collapse_to {
                    row.key.minute = m;
                }
                merged.add(row);
            }
        }
        Ok(merged.finish())
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
        req.by_minute = true;
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
            let files = store.inner.files_for(table, 0, 1_000);
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
