//! The embedded default store: Parquet files under the data dir, read with DataFusion.
//!
//! Layout: `<dir>/<table>/<yyyy-mm-dd>/<seq>.parquet` plus `<dir>/manifest.json`, the list
//! of live files. A file counts only once the manifest names it, and the manifest is
//! replaced atomically (write, fsync, rename), so a crash at any point neither loses a
//! committed flush nor doubles one: files the manifest does not name are deleted at start.
//! Compaction merges a day's small files into one and swaps them in one manifest update;
//! replaced files are deleted after a grace period so running queries can finish.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, UInt8Array,
    UInt16Builder, UInt64Array, UInt64Builder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt16Type, UInt64Type,
};
use datafusion::execution::context::SessionContext;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, col, lit};
use proto::Side;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{ScanRequest, Store};
use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::rollup::{Row, RowBatch, RowKey, merge_rows};
use crate::schema::{self, Keys, MAX_KEYS, Table};
use crate::{Error, Result};

const MANIFEST: &str = "manifest.json";
const MANIFEST_VERSION: u32 = 1;
const SECONDS_PER_DAY: i64 = 86_400;

/// Settings of the Parquet store.
#[derive(Debug, Clone)]
pub struct ParquetSettings {
    /// Days of data to keep; 0 keeps everything.
    pub retention_days: u32,
    /// A day partition with at least this many files is compacted into one.
    pub compact_min_files: usize,
    /// How long replaced files stay on disk for queries that may still read them.
    pub delete_grace: Duration,
}

impl Default for ParquetSettings {
    fn default() -> Self {
        ParquetSettings {
            retention_days: 7,
            compact_min_files: 8,
            delete_grace: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileEntry {
    table: String,
    /// Unix seconds of the UTC day start.
    day: i64,
    /// Relative to the store directory.
    path: String,
    min_minute: i64,
    max_minute: i64,
    rows: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    next_seq: u64,
    files: Vec<FileEntry>,
}

/// Parquet + DataFusion implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct ParquetStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    settings: ParquetSettings,
    ctx: SessionContext,
    manifest: Mutex<Manifest>,
    pending_delete: Mutex<Vec<(PathBuf, Instant)>>,
    maintenance: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ParquetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data that is
    // rewritten whole; carrying on is safe.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Arrow schema of a table's files.
pub fn arrow_schema(table: Table) -> SchemaRef {
    let mut fields = vec![
        Field::new(schema::MINUTE, DataType::Int64, false),
        Field::new(schema::SIDE, DataType::Utf8, false),
    ];
    for k in table.keys() {
        fields.push(Field::new(*k, DataType::Utf8, false));
    }
    fields.push(Field::new(schema::FLAGS, DataType::UInt8, false));
    for c in schema::COUNTER_COLUMNS {
        fields.push(Field::new(c, DataType::UInt64, false));
    }
    fields.push(Field::new(
        schema::HIST_INDEX,
        DataType::List(Arc::new(Field::new("item", DataType::UInt16, true))),
        false,
    ));
    fields.push(Field::new(
        schema::HIST_COUNT,
        DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))),
        false,
    ));
    Arc::new(Schema::new(fields))
}

fn counters(m: &Metrics) -> [u64; 9] {
    [
        m.calls,
        m.errors,
        m.latency_count,
        m.latency_sum_nanos,
        m.apdex_satisfied,
        m.apdex_tolerating,
        m.mtls_calls,
        m.bytes_sent,
        m.bytes_received,
    ]
}

fn to_record_batch(table: Table, rows: &[Row]) -> Result<RecordBatch> {
    let schema = arrow_schema(table);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.key.minute),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.side.as_str()),
        )),
    ];
    for k in 0..table.keys().len() {
        columns.push(Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.key.keys[k]),
        )));
    }
    columns.push(Arc::new(UInt8Array::from_iter_values(
        rows.iter().map(|r| r.flags),
    )));
    let all: Vec<[u64; 9]> = rows.iter().map(|r| counters(&r.metrics)).collect();
    for c in 0..schema::COUNTER_COLUMNS.len() {
        columns.push(Arc::new(UInt64Array::from_iter_values(
            all.iter().map(|v| v[c]),
        )));
    }
    let mut idx = ListBuilder::new(UInt16Builder::new());
    let mut cnt = ListBuilder::new(UInt64Builder::new());
    for r in rows {
        for (i, c) in r.metrics.histogram.iter() {
            idx.values().append_value(i);
            cnt.values().append_value(c);
        }
        idx.append(true);
        cnt.append(true);
    }
    columns.push(Arc::new(idx.finish()));
    columns.push(Arc::new(cnt.finish()));
    Ok(RecordBatch::try_new(schema, columns)?)
}

fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef> {
    let c = batch
        .column_by_name(name)
        .ok_or_else(|| Error::Schema(format!("missing column {name}")))?;
    if c.data_type() == ty {
        Ok(c.clone())
    } else {
        Ok(cast(c, ty)?)
    }
}

fn from_record_batch(
    table: Table,
    batch: &RecordBatch,
    empty: &Arc<str>,
    interner: &mut HashSet<Arc<str>>,
) -> Result<Vec<Row>> {
    let n = batch.num_rows();
    let minute = column(batch, schema::MINUTE, &DataType::Int64)?;
    let minute = minute.as_primitive::<Int64Type>();
    let side = column(batch, schema::SIDE, &DataType::Utf8)?;
    let side = side.as_string::<i32>();
    let keys: Vec<ArrayRef> = table
        .keys()
        .iter()
        .map(|k| column(batch, k, &DataType::Utf8))
        .collect::<Result<_>>()?;
    let flags = column(batch, schema::FLAGS, &DataType::UInt8)?;
    let flags = flags.as_primitive::<UInt8Type>();
    let counters: Vec<ArrayRef> = schema::COUNTER_COLUMNS
        .iter()
        .map(|c| column(batch, c, &DataType::UInt64))
        .collect::<Result<_>>()?;
    let counters: Vec<&UInt64Array> = counters.iter().map(|a| a.as_primitive()).collect();
    let hist_index = batch
        .column_by_name(schema::HIST_INDEX)
        .ok_or_else(|| Error::Schema("missing column hist_index".into()))?
        .as_list::<i32>()
        .clone();
    let hist_count = batch
        .column_by_name(schema::HIST_COUNT)
        .ok_or_else(|| Error::Schema("missing column hist_count".into()))?
        .as_list::<i32>()
        .clone();
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let side = Side::parse(side.value(i))
            .ok_or_else(|| Error::Schema(format!("bad side {:?}", side.value(i))))?;
        let mut row_keys: Keys = std::array::from_fn(|_| empty.clone());
        for (slot, k) in row_keys.iter_mut().zip(&keys).take(MAX_KEYS) {
            let v = k.as_string::<i32>().value(i);
            *slot = match interner.get(v) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(v);
                    interner.insert(a.clone());
                    a
                }
            };
        }
        let hi = hist_index.value(i);
        let hc = hist_count.value(i);
        let hi = hi.as_primitive::<UInt16Type>();
        let hc = hc.as_primitive::<UInt64Type>();
        let histogram =
            Histogram::from_pairs(hi.values().iter().copied().zip(hc.values().iter().copied()));
        let v = |c: usize| counters[c].value(i);
        rows.push(Row {
            key: RowKey {
                minute: minute.value(i),
                side,
                keys: row_keys,
            },
            flags: flags.value(i),
            metrics: Metrics {
                calls: v(0),
                errors: v(1),
                latency_count: v(2),
                latency_sum_nanos: v(3),
                apdex_satisfied: v(4),
                apdex_tolerating: v(5),
                mtls_calls: v(6),
                bytes_sent: v(7),
                bytes_received: v(8),
                histogram,
            },
        });
    }
    Ok(rows)
}

fn day_of(minute: i64) -> i64 {
    minute.div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY
}

fn day_dir_name(day: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm), to avoid a date
    // dependency for one folder name.
    let z = day.div_euclid(SECONDS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl ParquetStore {
    /// Opens (or creates) the store in `dir`, removing files a crash left unreferenced.
    pub fn open(dir: impl Into<PathBuf>, settings: ParquetSettings) -> Result<ParquetStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let manifest_path = dir.join(MANIFEST);
        let manifest = match fs::read(&manifest_path) {
            Ok(bytes) => {
                let m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|source| Error::Manifest {
                        path: manifest_path.clone(),
                        source,
                    })?;
                if m.version != MANIFEST_VERSION {
                    return Err(Error::Schema(format!(
                        "manifest version {} is not {MANIFEST_VERSION}",
                        m.version
                    )));
                }
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest {
                version: MANIFEST_VERSION,
                next_seq: 1,
                files: Vec::new(),
            },
            Err(e) => return Err(io_err(&manifest_path)(e)),
        };
        let store = Inner {
            dir,
            settings,
            ctx: SessionContext::new(),
            manifest: Mutex::new(manifest),
            pending_delete: Mutex::new(Vec::new()),
            maintenance: tokio::sync::Mutex::new(()),
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

    /// Number of live data files.
    pub fn file_count(&self) -> usize {
        lock(&self.inner.manifest).files.len()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
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

    fn persist_manifest(&self, m: &Manifest) -> Result<()> {
        let path = self.dir.join(MANIFEST);
        let bytes = serde_json::to_vec_pretty(m).map_err(|source| Error::Manifest {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    fn next_path(&self, table: Table, day: i64) -> Result<(PathBuf, String)> {
        let seq = {
            let mut m = lock(&self.manifest);
            let s = m.next_seq;
            m.next_seq += 1;
            s
        };
        let rel = format!("{}/{}/{seq:010}.parquet", table.name(), day_dir_name(day));
        let abs = self.dir.join(&rel);
        if let Some(parent) = abs.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        Ok((abs, rel))
    }

    /// Writes one file of rows (all of one table and day) and returns its entry; the
    /// manifest is not touched.
    fn write_file(&self, table: Table, day: i64, rows: &[Row]) -> Result<FileEntry> {
        let (abs, rel) = self.next_path(table, day)?;
        let batch = to_record_batch(table, rows)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props))?;
        w.write(&batch)?;
        w.close()?;
        write_atomic(&abs, &buf)?;
        let min_minute = rows.iter().map(|r| r.key.minute).min().unwrap_or(day);
        let max_minute = rows.iter().map(|r| r.key.minute).max().unwrap_or(day);
        Ok(FileEntry {
            table: table.name().to_string(),
            day,
            path: rel,
            min_minute,
            max_minute,
            rows: rows.len() as u64,
        })
    }

    fn write_blocking(&self, batch: RowBatch) -> Result<()> {
        let mut entries = Vec::new();
        for (table, rows) in batch.tables {
            let mut by_day: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
            for r in rows {
                by_day.entry(day_of(r.key.minute)).or_default().push(r);
            }
            for (day, rows) in by_day {
                entries.push(self.write_file(table, day, &rows)?);
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
        Ok(())
    }

    fn files_for(&self, table: Table, start: i64, end: i64) -> Vec<String> {
        lock(&self.manifest)
            .files
            .iter()
            .filter(|f| f.table == table.name() && f.max_minute >= start && f.min_minute < end)
            .map(|f| self.dir.join(&f.path).to_string_lossy().into_owned())
            .collect()
    }

    async fn read_rows(
        &self,
        table: Table,
        paths: Vec<String>,
        request: Option<&ScanRequest>,
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
                let name = table.keys().get(*k).ok_or_else(|| {
                    Error::Schema(format!("no key column {k} in {}", table.name()))
                })?;
                // `lit` makes the value a typed literal: it never becomes query text.
                predicate = predicate.and(col(*name).eq(lit(v.as_str())));
            }
            df = df.filter(predicate)?;
        }
        let batches = df.collect().await?;
        let empty: Arc<str> = Arc::from("");
        let mut interner = HashSet::new();
        let mut rows = Vec::new();
        for b in &batches {
            rows.extend(from_record_batch(table, b, &empty, &mut interner)?);
        }
        Ok(rows)
    }

    async fn compact(self: &Arc<Self>) -> Result<()> {
        let groups: Vec<((String, i64), Vec<FileEntry>)> = {
            let m = lock(&self.manifest);
            let mut g: BTreeMap<(String, i64), Vec<FileEntry>> = BTreeMap::new();
            for f in &m.files {
                g.entry((f.table.clone(), f.day))
                    .or_default()
                    .push(f.clone());
            }
            g.into_iter()
                .filter(|(_, files)| files.len() >= self.settings.compact_min_files.max(2))
                .collect()
        };
        for ((table_name, day), inputs) in groups {
            let Some(table) = Table::parse(&table_name) else {
                continue;
            };
            let started = Instant::now();
            let paths = inputs
                .iter()
                .map(|f| self.dir.join(&f.path).to_string_lossy().into_owned())
                .collect();
            let rows = merge_rows(self.read_rows(table, paths, None).await?);
            let this = self.clone();
            let n_inputs = inputs.len();
            let swapped = blocking(move || this.swap_compacted(table, day, &rows, &inputs)).await?;
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
        Ok(())
    }

    /// Writes the merged rows of `inputs` as one file and swaps it in for them in one
    /// manifest update. Returns the output row count, or `None` when the partition changed
    /// meanwhile (the output is then discarded and compaction retried next round).
    fn swap_compacted(
        &self,
        table: Table,
        day: i64,
        rows: &[Row],
        inputs: &[FileEntry],
    ) -> Result<Option<u64>> {
        let output = self.write_file(table, day, rows)?;
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

    fn apply_retention(&self) -> Result<()> {
        if self.settings.retention_days == 0 {
            return Ok(());
        }
        let cutoff = day_of(now_unix()) - i64::from(self.settings.retention_days) * SECONDS_PER_DAY;
        let mut m = lock(&self.manifest);
        let expired: Vec<FileEntry> = m.files.iter().filter(|f| f.day < cutoff).cloned().collect();
        if expired.is_empty() {
            return Ok(());
        }
        let mut next = m.clone();
        next.files.retain(|f| f.day >= cutoff);
        self.persist_manifest(&next)?;
        *m = next;
        drop(m);
        info!(files = expired.len(), "retention removed expired files");
        let now = Instant::now();
        lock(&self.pending_delete).extend(expired.iter().map(|f| (self.dir.join(&f.path), now)));
        Ok(())
    }

    fn delete_pending(&self, force: bool) {
        let grace = self.settings.delete_grace;
        let mut pending = lock(&self.pending_delete);
        pending.retain(|(path, since)| {
            if !force && since.elapsed() < grace {
                return true;
            }
            match fs::remove_file(path) {
                Ok(()) => false,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "could not delete replaced file; will retry");
                    true
                }
            }
        });
        // Day folders left empty are removed; failures (not empty) are expected.
        for table in Table::ALL {
            if let Ok(days) = fs::read_dir(self.dir.join(table.name())) {
                for d in days.flatten() {
                    let _ = fs::remove_dir(d.path());
                }
            }
        }
    }
}

#[async_trait]
impl Store for ParquetStore {
    async fn write(&self, batch: RowBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        blocking(move || inner.write_blocking(batch)).await
    }

    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let inner = &self.inner;
        let paths = inner.files_for(request.table, request.start_minute, request.end_minute);
        let rows = inner.read_rows(request.table, paths, Some(request)).await?;
        let rows = if request.by_minute {
            rows
        } else {
            rows.into_iter()
                .map(|mut r| {
                    r.key.minute = request.start_minute;
                    r
                })
                .collect()
        };
        Ok(merge_rows(rows))
    }

    async fn maintain(&self) -> Result<()> {
        let _guard = self.inner.maintenance.lock().await;
        let inner = self.inner.clone();
        blocking(move || inner.apply_retention()).await?;
        self.inner.compact().await?;
        let inner = self.inner.clone();
        blocking(move || {
            inner.delete_pending(false);
            Ok(())
        })
        .await
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

    #[test]
    fn day_names_are_civil_dates() {
        assert_eq!(day_dir_name(0), "1970-01-01");
        assert_eq!(day_dir_name(1_555_113_600), "2019-04-13");
        assert_eq!(day_dir_name(day_of(1_795_219_200 + 3_600)), "2026-11-21");
    }
}
