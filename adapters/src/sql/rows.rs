//! Rows into the ports' types. Both schemas use the same column names and 64-bit integers, and
//! the store reads both through sqlx's `Any` driver, so one mapping serves both engines.
use std::str::FromStr;

use filestore_domain::messages::ChunkEntry;
use filestore_domain::tree::ChangeKind;
use filestore_domain::{FileId, FileStatus, OwnerId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::error::db;
use crate::meta::{FileRecord, OutboxMessage, PendingOutbox, StoreError};
use crate::tree::{Change, Entry, Version};

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    row.try_get(col).map_err(db)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get(col).map_err(db)
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    row.try_get(col).map_err(db)
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, StoreError> {
    row.try_get(col).map_err(db)
}

pub(crate) fn u64_col(row: &AnyRow, col: &str) -> Result<u64, StoreError> {
    u64::try_from(int(row, col)?).map_err(|_| StoreError::Corrupt(format!("negative {col}")))
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("value {v} exceeds the database range")))
}

pub(crate) fn parse_status(s: &str) -> Result<FileStatus, StoreError> {
    FileStatus::from_str(s).map_err(|e| StoreError::Corrupt(format!("status: {e}")))
}

fn id_col(row: &AnyRow, col: &str) -> Result<FileId, StoreError> {
    FileId::from_str(&text(row, col)?).map_err(|e| StoreError::Corrupt(format!("file id: {e}")))
}

pub(crate) fn owner(s: &str) -> Result<OwnerId, StoreError> {
    OwnerId::from_str(s).map_err(|e| StoreError::Corrupt(format!("owner: {e}")))
}

pub(crate) fn file(row: &AnyRow) -> Result<FileRecord, StoreError> {
    Ok(FileRecord {
        id: id_col(row, "id")?,
        owner: owner(&text(row, "owner")?)?,
        path: text(row, "path")?,
        size: u64_col(row, "size")?,
        declared_sha256: opt_text(row, "declared_sha256")?,
        content_type: text(row, "content_type")?,
        status: parse_status(&text(row, "status")?)?,
        status_reason: opt_text(row, "status_reason")?,
        raw_key: text(row, "raw_key")?,
        uploaded_size: opt_int(row, "uploaded_size")?.and_then(|v| u64::try_from(v).ok()),
        uploaded_sha256: opt_text(row, "uploaded_sha256")?,
        created_at_ms: int(row, "created_at")?,
        updated_at_ms: int(row, "updated_at")?,
    })
}

pub(crate) fn chunk(row: &AnyRow) -> Result<ChunkEntry, StoreError> {
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(text(row, "sha256")?, &mut sha256)
        .map_err(|e| StoreError::Corrupt(format!("chunk sha256: {e}")))?;
    Ok(ChunkEntry {
        index: u32::try_from(int(row, "idx")?)
            .map_err(|_| StoreError::Corrupt("chunk index".into()))?,
        offset: u64_col(row, "offset")?,
        length: u32::try_from(int(row, "length")?)
            .map_err(|_| StoreError::Corrupt("chunk length".into()))?,
        id: text(row, "chunk_id")?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("chunk id: {e}")))?,
        sha256,
        stored_size: u64_col(row, "stored_size")?,
    })
}

pub(crate) fn outbox(row: &AnyRow) -> Result<PendingOutbox, StoreError> {
    Ok(PendingOutbox {
        id: int(row, "id")?,
        message: OutboxMessage {
            routing_key: text(row, "routing_key")?,
            payload: row.try_get("payload").map_err(db)?,
        },
    })
}

pub(crate) fn entry(row: &AnyRow) -> Result<Entry, StoreError> {
    Ok(Entry {
        path: text(row, "path")?,
        file_id: id_col(row, "file_id")?,
        rev: int(row, "rev")?,
        trashed_at_ms: opt_int(row, "trashed_at")?,
        modified_at_ms: int(row, "modified_at")?,
        size: u64_col(row, "size")?,
        sha256: opt_text(row, "uploaded_sha256")?,
        content_type: text(row, "content_type")?,
        status: parse_status(&text(row, "status")?)?,
    })
}

pub(crate) fn change(row: &AnyRow) -> Result<Change, StoreError> {
    Ok(Change {
        seq: int(row, "seq")?,
        kind: ChangeKind::from_str(&text(row, "kind")?).map_err(StoreError::Corrupt)?,
        path: text(row, "path")?,
        from_path: opt_text(row, "from_path")?,
        file_id: id_col(row, "file_id")?,
        size: u64_col(row, "size")?,
        sha256: opt_text(row, "uploaded_sha256")?,
        status: parse_status(&text(row, "status")?)?,
        at_ms: int(row, "at")?,
    })
}

pub(crate) fn version(row: &AnyRow) -> Result<Version, StoreError> {
    Ok(Version {
        rev: int(row, "rev")?,
        file_id: id_col(row, "file_id")?,
        size: u64_col(row, "size")?,
        sha256: opt_text(row, "uploaded_sha256")?,
        status: parse_status(&text(row, "status")?)?,
        created_at_ms: int(row, "created_at")?,
    })
}
