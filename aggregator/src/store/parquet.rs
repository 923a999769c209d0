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
use std::time::{Duration, Instant};

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
use futures::StreamExt;
use proto::{Side, Source};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{SECONDS_PER_DAY, ScanRequest, Store, day_start, retention_cutoff};
use crate::histogram::Histogram;
use crate::metrics::Metrics;
use crate::rollup::{Row, RowBatch, RowKey, RowMerger};
use crate::schema::{self, Keys, MAX_KEYS, Table};
use crate::{Error, Result};

const MANIFEST: &str = "manifest.json";
const MANIFEST_VERSION: u32 = 1;

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
    /// 0 for flushed files; compacting files of level n gives one file of level n + 1.
    #[serde(default)]
    level: u32,
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
    /// Held for the store's lifetime: one process per data dir.
    _lock: fs::File,
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
        // Nullable: files written before sources existed lack the column; null is `mesh`.
        Field::new(schema::SOURCE, DataType::Utf8, true),
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

fn to_record_batch(table: Table, rows: &[&Row]) -> Result<RecordBatch> {
    let schema = arrow_schema(table);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.key.minute),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.side.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.key.source.as_str()),
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
    let all: Vec<[u64; 9]> = rows.iter().map(|r| r.metrics.counters()).collect();
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
    let source = match batch.column_by_name(schema::SOURCE) {
        Some(_) => Some(column(batch, schema::SOURCE, &DataType::Utf8)?),
        None => None,
    };
    let source = source.as_ref().map(|s| s.as_string::<i32>());
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
    let list = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_list_opt::<i32>())
            .cloned()
            .ok_or_else(|| Error::Schema(format!("column {name} is missing or not a list")))
    };
    let hist_index = list(schema::HIST_INDEX)?;
    let hist_count = list(schema::HIST_COUNT)?;
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let side = Side::parse(side.value(i))
            .ok_or_else(|| Error::Schema(format!("bad side {:?}", side.value(i))))?;
        let source = match source {
            Some(s) if s.is_valid(i) => Source::parse(s.value(i))
                .ok_or_else(|| Error::Schema(format!("bad source {:?}", s.value(i))))?,
            _ => Source::Mesh,
        };
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
                source,
                keys: row_keys,
            },
            flags: flags.value(i),
            metrics: Metrics {
                histogram,
                ..Metrics::from_counters(std::array::from_fn(v))
            },
        });
    }
    Ok(rows)
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
    // The rename has happened: from here on the new content is what readers see, so a
    // failing folder fsync must not turn into an error (the caller would retry and
    // double the data); it only weakens durability against power loss.
    if let Some(parent) = path.parent()
        && let Err(e) = fsync_dir(parent)
    {
        warn!(error = %e, "folder fsync failed after rename");
    }
    Ok(())
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
        let mut manifest = manifest;
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
        if let Some(day_dir) = abs.parent()
            && !day_dir.is_dir()
        {
            fs::create_dir_all(day_dir).map_err(io_err(day_dir))?;
            // Make the new folders themselves durable before a manifest names files in them.
            if let Some(table_dir) = day_dir.parent() {
                fsync_dir(table_dir)?;
            }
            fsync_dir(&self.dir)?;
        }
        Ok((abs, rel))
    }

    /// Writes one file of rows (all of one table and day) and returns its entry; the
    /// manifest is not touched.
    fn write_file(&self, table: Table, day: i64, level: u32, rows: &[&Row]) -> Result<FileEntry> {
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
            level,
        })
    }

    fn write_blocking(&self, batch: &RowBatch) -> Result<()> {
        let mut entries = Vec::new();
        for (table, rows) in &batch.tables {
            let mut by_day: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
            for r in rows {
                by_day.entry(day_start(r.key.minute)).or_default().push(r);
            }
            for (day, rows) in by_day {
                entries.push(self.write_file(*table, day, 0, &rows)?);
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

    /// Reads `paths` through DataFusion, applying the request's minute range and key
    /// filters, and merges rows per `(minute, side, keys)` batch by batch, so memory follows
    /// the number of distinct result rows rather than the rows scanned. With
    /// `collapse_minutes` every row is put at `collapse_to` first (whole-window merge).
    async fn read_rows(
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
                let name = table.keys().get(*k).ok_or_else(|| {
                    Error::Schema(format!("no key column {k} in {}", table.name()))
                })?;
                // `lit` makes the value a typed literal: it never becomes query text.
                predicate = predicate.and(col(*name).eq(lit(v.as_str())));
            }
            df = df.filter(predicate)?;
        }
        let mut stream = df.execute_stream().await?;
        let empty: Arc<str> = Arc::from("");
        let mut interner = HashSet::new();
        let mut merged = RowMerger::default();
        while let Some(batch) = stream.next().await {
            for mut row in from_record_batch(table, &batch?, &empty, &mut interner)? {
                if let Some(m) = collapse_to {
                    row.key.minute = m;
                }
                merged.add(row);
            }
        }
        Ok(merged.finish())
    }

    /// Tiered compaction: within a table and day, once `compact_min_files` files of one
    /// level exist they are merged into one file of the next level, so each row is
    /// rewritten about log(files) times rather than on every round.
    async fn compact(self: &Arc<Self>) -> Result<()> {
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

    fn apply_retention(&self) -> Result<()> {
        let Some(cutoff) = retention_cutoff(self.settings.retention_days) else {
            return Ok(());
        };
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
        // Folders of days past retention are removed once empty. Newer day folders stay:
        // a flush may be about to write into one it has just created.
        let Some(cutoff) = retention_cutoff(self.settings.retention_days) else {
            return;
        };
        let cutoff = day_dir_name(cutoff);
        for table in Table::ALL {
            if let Ok(days) = fs::read_dir(self.dir.join(table.name())) {
                for d in days.flatten() {
                    if d.file_name().to_string_lossy().as_ref() < cutoff.as_str() {
                        // Fails (harmlessly) while files remain.
                        let _ = fs::remove_dir(d.path());
                    }
                }
            }
        }
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

    async fn scan(&self, request: &ScanRequest) -> Result<Vec<Row>> {
        let inner = &self.inner;
        let paths = inner.files_for(request.table, request.start_minute, request.end_minute);
        let collapse = (!request.by_minute).then_some(request.start_minute);
        inner
            .read_rows(request.table, paths, Some(request), collapse)
            .await
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
    use crate::rollup::{RollupSettings, Rollups};
    use proto::{Call, Node, Protocol};

    fn batch(minutes: &[i64], calls_per_minute: u64) -> RowBatch {
        sourced_batch(minutes, calls_per_minute, false)
    }

    /// With `mixed`, every other call is a trace report.
    fn sourced_batch(minutes: &[i64], calls_per_minute: u64, mixed: bool) -> RowBatch {
        let mut r = Rollups::new(RollupSettings {
            apdex_t_nanos: 500_000_000,
            max_endpoints_per_service: 10,
            max_services: 10,
        });
        for &m in minutes {
            for i in 0..calls_per_minute {
                let call = Call {
                    start_unix_nanos: m * 1_000_000_000,
                    side: Side::Server,
                    source: if mixed && i % 2 == 1 {
                        Source::Trace
                    } else {
                        Source::Mesh
                    },
                    client: Node::real(Arc::from("a.ns"), Some(Arc::from("a-1"))),
                    server: Node::real(Arc::from("b.ns"), Some(Arc::from("b-1"))),
                    endpoint: Some(Arc::from("GET /x")),
                    protocol: Protocol::Http,
                    latency_nanos: Some(1_000_000 * (i + 1)),
                    status_code: 200,
                    grpc_status: None,
                    error: false,
                    mtls: true,
                    request_bytes: 1,
                    response_bytes: 2,
                };
                r.apply(&call, m);
            }
        }
        r.take()
    }

    fn scan_all(table: Table) -> ScanRequest {
        ScanRequest {
            table,
            start_minute: 0,
            end_minute: i64::MAX / 2,
            filters: vec![],
            by_minute: false,
        }
    }

    fn settings(retention_days: u32) -> ParquetSettings {
        ParquetSettings {
            retention_days,
            compact_min_files: 2,
            delete_grace: Duration::ZERO,
        }
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
        req.filters = vec![(1, "b.ns' OR '1'='1".into())];
        assert!(store.scan(&req).await.expect("scan").is_empty());
        req.filters = vec![(1, "b.ns".into())];
        assert_eq!(store.scan(&req).await.expect("scan").len(), 3);
    }

    /// Files written before the `source` column existed read back as mesh reports.
    #[tokio::test]
    async fn files_without_a_source_column_read_as_mesh() {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = ParquetStore::open(dir.path(), settings(0)).expect("open");
            store
                .write(Arc::new(sourced_batch(&[60, 120], 4, true)))
                .await
                .expect("write");
        }
        let mut rewritten = 0;
        for table in Table::ALL {
            let table_dir = dir.path().join(table.name());
            for day in std::fs::read_dir(&table_dir).expect("table dir").flatten() {
                for file in std::fs::read_dir(day.path()).expect("day dir").flatten() {
                    let f = std::fs::File::open(file.path()).expect("open file");
                    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                        .expect("reader")
                        .build()
                        .expect("build");
                    let mut writer = None;
                    for b in reader {
                        let b = b.expect("batch");
                        let keep: Vec<usize> = (0..b.num_columns())
                            .filter(|&i| b.schema().field(i).name() != schema::SOURCE)
                            .collect();
                        let old = b.project(&keep).expect("project");
                        writer
                            .get_or_insert_with(|| {
                                ArrowWriter::try_new(Vec::new(), old.schema(), None)
                                    .expect("writer")
                            })
                            .write(&old)
                            .expect("write");
                    }
                    let out = writer
                        .expect("a file has a batch")
                        .into_inner()
                        .expect("finish");
                    std::fs::write(file.path(), out).expect("rewrite");
                    rewritten += 1;
                }
            }
        }
        assert!(rewritten >= 5);
        let store = ParquetStore::open(dir.path(), settings(0)).expect("reopen");
        let rows = store.scan(&scan_all(Table::Service)).await.expect("scan");
        assert_eq!(
            rows.len(),
            1,
            "the two sources collapse into mesh: {rows:?}"
        );
        assert_eq!(rows[0].key.source, Source::Mesh);
        assert_eq!(rows[0].metrics.calls, 8);
    }

    #[test]
    fn day_names_are_civil_dates() {
        assert_eq!(day_dir_name(0), "1970-01-01");
        assert_eq!(day_dir_name(1_555_113_600), "2019-04-13");
        assert_eq!(day_dir_name(day_start(1_795_219_200 + 3_600)), "2026-11-21");
    }
}
