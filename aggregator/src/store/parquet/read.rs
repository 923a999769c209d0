//! Reads: the manifest's files of a table and minute range, scanned by DataFusion with the
//! request's minute range and key filters as typed literals, merged per row key as the
//! record batches stream in.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::prelude::{ParquetReadOptions, col, lit};
use futures::StreamExt;

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
        let mut df = self.ctx.read_parquet(paths, options).await?;
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
        let mut stream = df.execute_stream().await?;
        let mut interner: HashSet<Arc<str>> = HashSet::new();
        let mut merged = RowMerger::default();
        while let Some(batch) = stream.next().await {
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
}
