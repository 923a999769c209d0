//! Retention: whole UTC days past `retention_days` leave the manifest, and replaced files
//! (compacted or expired) are deleted once the grace period has passed.

use std::fs;
use std::time::Instant;

use tracing::{info, warn};

use super::manifest::{FileEntry, day_dir_name};
use super::store::{Inner, lock};
use crate::Result;
use crate::schema::Table;
use crate::store::retention_cutoff;

impl Inner {
    /// Drops every file of a day before the retention cutoff from the manifest.
    pub fn apply_retention(&self) -> Result<()> {
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
