//! The local side of a step: what stands at a path now, whether it is still what the scan saw,
//! recording agreement, and moving a file aside to a conflicted copy.
use std::time::{SystemTime, UNIX_EPOCH};

use filestore_domain::tree::conflicted_copy;

use crate::sync::confined::ConfineError;
use crate::sync::local::mtime_ns;
use crate::sync::plan::{Base, Local};
use crate::sync::state::Synced;
use crate::sync::{SyncError, Syncer};

pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Conflicted copies named after this device and today: `a (conflicted copy HOST DATE).txt`,
/// with a counter when that name is taken.
pub fn copy_namer(host: &str) -> impl Fn(&str, &dyn Fn(&str) -> bool) -> String + '_ {
    move |path, taken| {
        let date = today();
        let mut name = conflicted_copy(path, host, &date);
        let mut n = 2;
        while taken(&name) {
            name = conflicted_copy(path, host, &format!("{date} {n}"));
            n += 1;
        }
        name
    }
}

impl Syncer {
    /// What stands at `rel` now, without following links; `None` when nothing does (or a
    /// folder on the way is missing).
    pub(super) fn meta(&self, rel: &str) -> Result<Option<std::fs::Metadata>, ConfineError> {
        self.folder.stat(rel)
    }

    /// Whether the file at `rel` is exactly as scanned (`None`: absent as scanned).
    pub(super) fn still(&self, rel: &str, seen: Option<&Local>) -> bool {
        match (self.meta(rel), seen) {
            (Ok(None), None) => true,
            (Ok(Some(meta)), Some(l)) => {
                meta.is_file() && meta.len() == l.size && mtime_ns(&meta) == l.mtime_ns
            }
            _ => false,
        }
    }

    /// Records that the local file at `rel` and the server's `rev` hold `sha256`.
    pub(super) async fn agree(
        &self,
        rel: &str,
        sha256: &str,
        rev: i64,
        file_id: &str,
    ) -> Result<(), SyncError> {
        let meta = self
            .meta(rel)
            .map_err(|e| SyncError::Io(rel.to_owned(), std::io::Error::other(e)))?
            .ok_or_else(|| SyncError::Io(rel.to_owned(), std::io::ErrorKind::NotFound.into()))?;
        let synced = Synced {
            base: Base {
                sha256: sha256.to_owned(),
                rev,
                file_id: file_id.to_owned(),
            },
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
            synced_at_ns: now_ns(),
        };
        self.state.record(rel, &synced).await?;
        Ok(())
    }

    /// Moves the local file at `path` aside to a conflicted copy; returns the copy's name.
    pub(super) fn set_aside(&self, path: &str, seen: &Local) -> Option<String> {
        if !self.still(path, Some(seen)) {
            return None;
        }
        let taken = |name: &str| !self.still(name, None);
        let copy = copy_namer(&self.opts.host)(path, &taken);
        self.folder.rename(path, &copy).ok()?;
        Some(copy)
    }
}
