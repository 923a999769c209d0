//! Retention: each tier's whole UTC days past its retention (`retention_days` for
//! minutes, `hour_retention_days`, `day_retention_days`) leave the manifest, and replaced
//! files (compacted or expired) are deleted once the grace period has passed. A minute
//! file leaves only once its rows are in the tiers.

use std::fs;
use std::time::Instant;

use tracing::{info, warn};

use super::manifest::{FileEntry, day_dir_name};
use super::store::{Inner, lock};
use crate::Result;
use crate::schema::Table;
use crate::store::retention_cutoff;
use crate::store::tiers::Tier;

impl Inner {
    /// The first day `tier` keeps, or `None` when it keeps everything.
    fn cutoff(&self, tier: Tier) -> Option<i64> {
        let s = &self.settings;
        retention_cutoff(match tier {
            Tier::Minute => s.retention_days,
            Tier::Hour => s.hour_retention_days,
            Tier::Day => s.day_retention_days,
        })
    }

    /// Whether `f` is past its tier's retention (a minute file not in the tiers yet
    /// waits for them).
    fn expired(&self, f: &FileEntry) -> bool {
        self.cutoff(f.res).is_some_and(|c| f.day < c) && (f.in_tiers || f.res != Tier::Minute)
    }

    /// Drops every file of a day before its tier's retention cutoff from the manifest.
    pub fn apply_retention(&self) -> Result<()> {
        let mut m = lock(&self.manifest);
        let expired: Vec<FileEntry> = m
            .files
            .iter()
            .filter(|f| self.expired(f))
            .cloned()
            .collect();
        if expired.is_empty() {
            return Ok(());
        }
        let mut next = m.clone();
        next.files.retain(|f| !self.expired(f));
        self.persist_manifest(&next)?;
        *m = next;
        drop(m);
        info!(files = expired.len(), "retention removed expired files");
        let now = Instant::now();
        lock(&self.pending_delete).extend(expired.iter().map(|f| (self.dir.join(&f.path), now)));
        Ok(())
    }

    /// Deletes replaced files whose grace period has passed (all of them with `force`).
    pub fn delete_pending(&self, force: bool) {
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
        // Folders of days past the longest retention are removed once empty. Newer day
        // folders stay: a flush or roll-up may be about to write into one it has just
        // created.
        let Some(cutoff) = Tier::ALL
            .into_iter()
            .map(|t| self.cutoff(t))
            .try_fold(i64::MAX, |a, c| c.map(|c| a.min(c)))
        else {
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
