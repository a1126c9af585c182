//! Row mapping shared by the SQLite and PostgreSQL stores: both schemas use the same column
//! names and 64-bit integers, so one mapping serves both.
use std::str::FromStr;

use filestore_domain::messages::ChunkEntry;
use filestore_domain::{FileId, FileStatus, OwnerId};
use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::meta::{FileRecord, StoreError};

/// What a row type must decode for the mappings here.
pub(crate) trait StoreRow: Row
where
    for<'a> &'a str: ColumnIndex<Self>,
{
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
}

impl<R> StoreRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(col)?)
    }
}

pub(crate) fn u64_col<R: StoreRow>(row: &R, col: &str) -> Result<u64, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    u64::try_from(row.int(col)?).map_err(|_| StoreError::Corrupt(format!("negative {col}")))
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("value {v} exceeds the database range")))
}

pub(crate) fn parse_status(s: &str) -> Result<FileStatus, StoreError> {
    FileStatus::from_str(s).map_err(|e| StoreError::Corrupt(format!("status: {e}")))
}

pub(crate) fn file_from_row<R: StoreRow>(row: &R) -> Result<FileRecord, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{what}: {e}"));
    let id = row.text("id")?;
    let owner = row.text("owner")?;
    Ok(FileRecord {
        id: FileId::from_str(&id).map_err(|e| corrupt("file id", &e))?,
        owner: OwnerId::from_str(&owner).map_err(|e| corrupt("owner", &e))?,
        path: row.text("path")?,
        size: u64_col(row, "size")?,
        declared_sha256: row.opt_text("declared_sha256")?,
        content_type: row.text("content_type")?,
        status: parse_status(&row.text("status")?)?,
        status_reason: row.opt_text("status_reason")?,
        raw_key: row.text("raw_key")?,
        uploaded_size: row
            .opt_int("uploaded_size")?
            .and_then(|v| u64::try_from(v).ok()),
        uploaded_sha256: row.opt_text("uploaded_sha256")?,
        created_at_ms: row.int("created_at")?,
        updated_at_ms: row.int("updated_at")?,
    })
}

pub(crate) fn chunk_from_row<R: StoreRow>(row: &R) -> Result<ChunkEntry, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(row.text("sha256")?, &mut sha256)
        .map_err(|e| StoreError::Corrupt(format!("chunk sha256: {e}")))?;
    Ok(ChunkEntry {
        index: u32::try_from(row.int("idx")?)
            .map_err(|_| StoreError::Corrupt("chunk index".into()))?,
        offset: u64_col(row, "offset")?,
        length: u32::try_from(row.int("length")?)
            .map_err(|_| StoreError::Corrupt("chunk length".into()))?,
        id: row
            .text("chunk_id")?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("chunk id: {e}")))?,
        sha256,
        stored_size: u64_col(row, "stored_size")?,
    })
}

/// The bounds of the chunk sweep rule, from its grace period.
pub(crate) struct SweepWindow {
    /// Chunks last used before this (unix ms) are old enough to remove.
    pub unused_before: i64,
    /// A file that entered processing up to this long after a chunk's last use may still come
    /// to reference it; the same grace covers clock skew between the machines.
    pub grace_ms: i64,
}

impl SweepWindow {
    pub fn new(grace: std::time::Duration) -> Self {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
        Self {
            unused_before: crate::clock::now_ms().saturating_sub(grace_ms),
            grace_ms,
        }
    }
}

/// The sweep rule, in SQL both stores speak (`$1`: unused before, `$2`: grace in ms; `c` is the
/// `chunks` row): nothing references the chunk, and no file of its owner that is still
/// processing entered processing before the chunk's last use (plus grace), since that file's
/// chunk stage may have found it through dedupe.
pub(crate) const SWEEPABLE_CHUNK: &str = "c.last_used < $1
    AND NOT EXISTS (SELECT 1 FROM file_chunks fc WHERE fc.chunk_id = c.id)
    AND NOT EXISTS (SELECT 1 FROM files f
                    WHERE f.owner = c.owner AND f.status = 'processing'
                      AND f.updated_at <= c.last_used + $2)";

/// A cheap hash of a chunk id, to pick the lock that writers and the sweep share for it.
/// Distinct chunks may share one; that only makes a writer wait for, or a sweep skip, an
/// unrelated chunk now and then.
pub(crate) fn chunk_lock_hash(id: &str) -> u32 {
    id.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}
