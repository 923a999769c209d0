//! The manifest (`manifest.json`): the list of live data files, replaced atomically, so a
//! file counts only once the manifest names it. Also the file-system steps every write
//! takes: atomic replacement and folder fsyncs, and the day folder names.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::schema::Table;
use crate::store::SECONDS_PER_DAY;
use crate::store::tiers::Tier;
use crate::{Error, Result};

/// The manifest's file name in the store directory.
pub(super) const MANIFEST: &str = "manifest.json";
/// 2 added tiers (`res`, `in_tiers`): a version-1 manifest loads as untiered minute files
/// and is written back as 2, which an older meshscope refuses rather than reading hour
/// and day files as minutes.
const MANIFEST_VERSION: u32 = 2;

/// One live data file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct FileEntry {
    pub table: String,
    /// Unix seconds of the UTC day start.
    pub day: i64,
    /// Relative to the store directory.
    pub path: String,
    pub min_minute: i64,
    pub max_minute: i64,
    pub rows: u64,
    /// 0 for flushed files; compacting files of level n gives one file of level n + 1.
    #[serde(default)]
    pub level: u32,
    /// The resolution of the file's rows (`res` in seconds; files written before tiers
    /// are minute files).
    #[serde(default = "minute_tier")]
    pub res: Tier,
    /// Whether the file's rows are also in the table's hour and day files. A flush writes
    /// minute files without; maintenance adds their rows to the tiers and sets it, in one
    /// manifest update. Tier files always have it.
    #[serde(default)]
    pub in_tiers: bool,
}

fn minute_tier() -> Tier {
    Tier::Minute
}

/// Which files of a table a read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Files {
    /// The files of one tier.
    Tier(Tier),
    /// Minute files whose rows are not in the tiers yet: a tiered read adds them.
    NotInTiers,
}

/// A group of files compacted together: table, day, tier, level.
pub(super) type Group<'a> = (&'a str, i64, Tier, u32);

impl Manifest {
    /// The groups the next compaction merges: files in the tiers, by table, day, tier and
    /// level, where a group holds at least `min_files` (never fewer than 2).
    pub fn compaction_groups(&self, min_files: usize) -> Vec<(Group<'_>, Vec<&FileEntry>)> {
        let mut groups: BTreeMap<Group<'_>, Vec<&FileEntry>> = BTreeMap::new();
        for f in self.files.iter().filter(|f| f.in_tiers) {
            groups
                .entry((f.table.as_str(), f.day, f.res, f.level))
                .or_default()
                .push(f);
        }
        groups
            .into_iter()
            .filter(|(_, files)| files.len() >= min_files.max(2))
            .collect()
    }
}

impl FileEntry {
    /// Whether a read of `which` takes this file.
    pub fn is(&self, which: Files) -> bool {
        match which {
            Files::Tier(t) => self.res == t,
            Files::NotInTiers => self.res == Tier::Minute && !self.in_tiers,
        }
    }
}

/// What a new file is: its table, day, tier and compaction level, and whether its rows are
/// also in the tiers above it.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileKind {
    pub table: Table,
    pub day: i64,
    pub res: Tier,
    pub level: u32,
    pub in_tiers: bool,
}

impl FileKind {
    /// A flush's file: minute rows, not in the tiers yet.
    pub fn flushed(table: Table, day: i64) -> FileKind {
        FileKind {
            table,
            day,
            res: Tier::Minute,
            level: 0,
            in_tiers: false,
        }
    }
}

/// The live files and the next file sequence number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    version: u32,
    pub next_seq: u64,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Reads the manifest at `path`; an absent one is an empty store.
    pub fn load(path: &Path) -> Result<Manifest> {
        match fs::read(path) {
            Ok(bytes) => {
                let mut m: Manifest =
                    serde_json::from_slice(&bytes).map_err(|source| Error::Manifest {
                        path: path.to_path_buf(),
                        source,
                    })?;
                if m.version != MANIFEST_VERSION && m.version != 1 {
                    return Err(Error::Schema(format!(
                        "manifest version {} is not {MANIFEST_VERSION} (a newer meshscope wrote it?)",
                        m.version
                    )));
                }
                m.version = MANIFEST_VERSION;
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest {
                version: MANIFEST_VERSION,
                next_seq: 1,
                files: Vec::new(),
            }),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Replaces the manifest at `path` with this one, atomically.
    pub fn persist(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Manifest {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &bytes)
    }
}

/// An I/O error at `path`.
pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder name of a UTC day (`yyyy-mm-dd`).
pub(super) fn day_dir_name(day: i64) -> String {
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

/// fsync of a folder, so entries created or renamed in it survive power loss.
pub(super) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the folder.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    rename_durably(&tmp, path)
}

/// Renames the fsynced file `tmp` to `path`, then fsyncs the folder.
pub(super) fn rename_durably(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).map_err(io_err(path))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::day_start;

    #[test]
    fn a_version_1_manifest_loads_as_untiered_minute_files_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(MANIFEST);
        fs::write(
            &path,
            r#"{"version":1,"next_seq":3,"files":[{"table":"service","day":0,"path":"service/1970-01-01/0000000001.parquet","min_minute":60,"max_minute":120,"rows":2,"level":1}]}"#,
        )
        .expect("write");
        let m = Manifest::load(&path).expect("load");
        assert_eq!(m.version, MANIFEST_VERSION);
        assert_eq!(m.files[0].res, Tier::Minute);
        assert!(!m.files[0].in_tiers);
        fs::write(&path, r#"{"version":3,"next_seq":1,"files":[]}"#).expect("write");
        let e = Manifest::load(&path).expect_err("newer").to_string();
        assert!(e.contains("manifest version 3"), "{e}");
    }

    #[test]
    fn day_names_are_civil_dates() {
        assert_eq!(day_dir_name(0), "1970-01-01");
        assert_eq!(day_dir_name(1_555_113_600), "2019-04-13");
        assert_eq!(day_dir_name(day_start(1_795_219_200 + 3_600)), "2026-11-21");
    }
}
