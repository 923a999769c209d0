//! Writing one data file: rows of one table, UTC day and tier, sorted by minute, pushed
//! in pieces (a compaction streams its output) and made durable before a manifest names
//! the file (temp file, fsync, rename, folder fsync).

use std::fs;
use std::path::PathBuf;

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use super::codec::{arrow_schema, to_record_batch};
use super::manifest::{FileEntry, FileKind, day_dir_name, fsync_dir, io_err, rename_durably};
use super::store::{Inner, lock};
use crate::Result;
use crate::row::Row;

/// Rows per Parquet row group. Files are written sorted by minute, so each row group
/// covers a narrow span of minutes and a read of a short window skips the others by their
/// statistics (a day of a 1 000-service mesh is ~180 groups of ~8 minutes).
const ROW_GROUP_ROWS: usize = 16_384;

/// A file being written. Rows are pushed in minute order (a piece may be in any order
/// within itself if it is the only one); [`FileWriter::finish`] makes it durable and
/// gives its manifest entry, [`FileWriter::abandon`] removes it (a temp file left by a
/// crash is removed at the next start).
pub(super) struct FileWriter {
    kind: FileKind,
    rel: String,
    abs: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<fs::File>,
    rows: u64,
    min_minute: i64,
    max_minute: i64,
}

impl FileWriter {
    /// Appends rows (sorted by minute here, so a single push needs no order).
    pub fn push(&mut self, rows: &mut [&Row]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        rows.sort_by_key(|r| r.key.minute);
        for r in rows.iter() {
            self.min_minute = self.min_minute.min(r.key.minute);
            self.max_minute = self.max_minute.max(r.key.minute);
        }
        self.rows += rows.len() as u64;
        let batch = to_record_batch(self.kind.table, rows)?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Gives the file up: its temp file is removed (a failed compaction must not leave
    /// one per round).
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self);
        if let Err(e) = fs::remove_file(&tmp) {
            tracing::warn!(path = %tmp.display(), error = %e, "could not remove an abandoned temp file; the next start does");
        }
    }

    /// Closes the file durably under its final name and returns its entry (the manifest
    /// is not touched).
    pub fn finish(self) -> Result<FileEntry> {
        let FileWriter {
            kind,
            rel,
            abs,
            tmp,
            writer,
            rows,
            min_minute,
            max_minute,
        } = self;
        let file = writer.into_inner()?;
        file.sync_all().map_err(io_err(&tmp))?;
        drop(file);
        rename_durably(&tmp, &abs)?;
        let (min_minute, max_minute) = if rows == 0 {
            (kind.day, kind.day)
        } else {
            (min_minute, max_minute)
        };
        Ok(FileEntry {
            table: kind.table.name().to_string(),
            day: kind.day,
            path: rel,
            min_minute,
            max_minute,
            rows,
            level: kind.level,
            res: kind.res,
            in_tiers: kind.in_tiers,
        })
    }
}

impl Inner {
    /// Starts a new file of `kind` in its day folder (created durably if new).
    pub fn create_file(&self, kind: FileKind) -> Result<FileWriter> {
        let seq = {
            let mut m = lock(&self.manifest);
            let s = m.next_seq;
            m.next_seq += 1;
            s
        };
        let rel = format!(
            "{}/{}/{seq:010}.parquet",
            kind.table.name(),
            day_dir_name(kind.day)
        );
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
        let tmp = abs.with_extension("parquet.tmp");
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, arrow_schema(kind.table), Some(props))?;
        Ok(FileWriter {
            kind,
            rel,
            abs,
            tmp,
            writer,
            rows: 0,
            min_minute: i64::MAX,
            max_minute: i64::MIN,
        })
    }

    /// Writes one file of rows (all of one table, day and tier) and returns its entry.
    pub fn write_file(&self, kind: FileKind, rows: &[&Row]) -> Result<FileEntry> {
        let mut w = self.create_file(kind)?;
        match w.push(&mut rows.to_vec()) {
            Ok(()) => w.finish(),
            Err(e) => {
                w.abandon();
                Err(e)
            }
        }
    }
}
