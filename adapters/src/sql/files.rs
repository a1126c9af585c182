//! Files and their state: registration, upload attempts, finalize, the state machine's events,
//! manifests, tenants' keys and the figures quotas read.
use filestore_domain::keys::WrappedSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::state::transition;
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use sqlx::AnyConnection;

use super::error::db;
use super::rows::{self, to_i64, u64_col};
use super::{SqlStore, params, tree};
use crate::clock::now_ms;
use crate::meta::{FileRecord, Finalized, NewFile, OutboxMessage, StoreError, UploadRecord, Usage};

/// Columns of one `file_chunks` row, as [`index`] writes them.
const MANIFEST_COLUMNS: usize = 7;

pub(super) async fn tenant_secret(
    store: &SqlStore,
    owner: &OwnerId,
) -> Result<Option<WrappedSecret>, StoreError> {
    let row = sqlx::query("SELECT key_id, wrapped_secret FROM tenants WHERE owner = $1")
        .bind(owner.as_str())
        .fetch_optional(&store.pool)
        .await
        .map_err(db)?;
    row.map(|r| {
        Ok(WrappedSecret {
            key_id: rows::text(&r, "key_id")?,
            blob: sqlx::Row::try_get(&r, "wrapped_secret").map_err(db)?,
        })
    })
    .transpose()
}

pub(super) async fn insert_tenant_secret(
    store: &SqlStore,
    owner: &OwnerId,
    wrapped: WrappedSecret,
) -> Result<WrappedSecret, StoreError> {
    {
        let _turn = store.write_turn().await;
        sqlx::query(
            "INSERT INTO tenants (owner, key_id, wrapped_secret, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner.as_str())
        .bind(&wrapped.key_id)
        .bind(&wrapped.blob)
        .bind(now_ms())
        .execute(&store.pool)
        .await
        .map_err(db)?;
    }
    tenant_secret(store, owner)
        .await?
        .ok_or_else(|| StoreError::Corrupt("tenant secret vanished after insert".into()))
}

pub(super) async fn create(store: &SqlStore, files: &[NewFile]) -> Result<(), StoreError> {
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    let now = now_ms();
    for f in files {
        sqlx::query(
            "INSERT INTO files (id, owner, path, size, declared_sha256, content_type, status, raw_key, created_at, updated_at, parent_rev)
             VALUES ($1, $2, $3, $4, $5, $6, 'uploading', $7, $8, $8, $9)",
        )
        .bind(f.id.to_string())
        .bind(f.owner.as_str())
        .bind(&f.path)
        .bind(to_i64(f.size)?)
        .bind(&f.declared_sha256)
        .bind(&f.content_type)
        .bind(f.id.raw_key())
        .bind(now)
        .bind(f.expect.parent_rev())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

pub(super) async fn get(store: &SqlStore, id: &FileId) -> Result<Option<FileRecord>, StoreError> {
    let row = sqlx::query("SELECT * FROM files WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&store.pool)
        .await
        .map_err(db)?;
    row.as_ref().map(rows::file).transpose()
}

/// A file's status, locked for the rest of the transaction that is about to change it.
async fn lock_status(
    store: &SqlStore,
    conn: &mut AnyConnection,
    id: &FileId,
) -> Result<FileStatus, StoreError> {
    let sql = format!(
        "SELECT status FROM files WHERE id = $1{}",
        store.engine.for_update()
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound(*id))?;
    rows::parse_status(&rows::text(&row, "status")?)
}

pub(super) async fn record_upload(
    store: &SqlStore,
    id: &FileId,
    raw_key: &str,
    size: u64,
    sha256_hex: &str,
) -> Result<UploadRecord, StoreError> {
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    let sql = format!(
        "SELECT status, raw_key, uploaded_size, uploaded_sha256 FROM files WHERE id = $1{}",
        store.engine.for_update()
    );
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?
        .ok_or(StoreError::NotFound(*id))?;
    if rows::text(&row, "status")? != FileStatus::Uploading.as_str() {
        // The same bytes again is a harmless retry; other bytes come too late.
        let had_size = rows::opt_int(&row, "uploaded_size")?;
        let had_sha = rows::opt_text(&row, "uploaded_sha256")?;
        return if had_size == Some(to_i64(size)?) && had_sha.as_deref() == Some(sha256_hex) {
            Ok(UploadRecord::AlreadyHad)
        } else {
            Err(StoreError::NotUploading)
        };
    }
    let previous = rows::text(&row, "raw_key")?;
    sqlx::query(
        "UPDATE files SET raw_key = $1, uploaded_size = $2, uploaded_sha256 = $3, updated_at = $4 WHERE id = $5",
    )
    .bind(raw_key)
    .bind(to_i64(size)?)
    .bind(sha256_hex)
    .bind(now_ms())
    .bind(id.to_string())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(UploadRecord::Recorded {
        superseded: (previous != raw_key).then_some(previous),
    })
}

pub(super) async fn finalize(
    store: &SqlStore,
    id: &FileId,
    size: u64,
    sha256_hex: &str,
    announce: OutboxMessage,
) -> Result<Finalized, StoreError> {
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    let from = lock_status(store, &mut tx, id).await?;
    let to = transition(from, FileEvent::Finalized)?;
    if to == from {
        return Ok(Finalized {
            status: to,
            rev: None,
        });
    }
    let now = now_ms();
    let updated = sqlx::query(
        "UPDATE files SET status = $1, status_reason = NULL, updated_at = $2
         WHERE id = $3 AND uploaded_size = $4 AND uploaded_sha256 = $5",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(id.to_string())
    .bind(to_i64(size)?)
    .bind(sha256_hex)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::UploadMismatch);
    }
    let rev = tree::commit_version(&mut tx, id).await?;
    sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)")
        .bind(&announce.routing_key)
        .bind(&announce.payload)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Finalized {
        status: to,
        rev: Some(rev),
    })
}

pub(super) async fn apply_event(
    store: &SqlStore,
    id: &FileId,
    event: FileEvent,
    reason: Option<&str>,
) -> Result<FileStatus, StoreError> {
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    let from = lock_status(store, &mut tx, id).await?;
    let to = transition(from, event)?;
    if to != from {
        sqlx::query(
            "UPDATE files SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(to)
}

/// Writes the manifest and marks the file ready, atomically and idempotently.
pub(super) async fn index(
    store: &SqlStore,
    id: &FileId,
    chunks: &[ChunkEntry],
) -> Result<FileStatus, StoreError> {
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    let from = lock_status(store, &mut tx, id).await?;
    let to = transition(from, FileEvent::Indexed)?;
    if from == to {
        return Ok(to);
    }
    drop_manifest(&mut tx, id).await?;
    let file_id = id.to_string();
    // A few round trips for the whole manifest, however many chunks it has.
    for batch in chunks.chunks(params::BATCH) {
        let sql = format!(
            r#"INSERT INTO file_chunks (file_id, idx, "offset", length, chunk_id, sha256, stored_size)
               VALUES {}"#,
            params::rows(1, MANIFEST_COLUMNS, batch.len())
        );
        let mut q = sqlx::query(&sql);
        for c in batch {
            q = q
                .bind(&file_id)
                .bind(i64::from(c.index))
                .bind(to_i64(c.offset)?)
                .bind(i64::from(c.length))
                .bind(c.id.to_string())
                .bind(hex::encode(c.sha256))
                .bind(to_i64(c.stored_size)?);
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    sqlx::query(
        "UPDATE files SET status = $1, status_reason = NULL, updated_at = $2 WHERE id = $3",
    )
    .bind(to.as_str())
    .bind(now_ms())
    .bind(&file_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(to)
}

/// Deletes the file's manifest (a purge, or an index stage run again).
pub(super) async fn drop_manifest(conn: &mut AnyConnection, id: &FileId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM file_chunks WHERE file_id = $1")
        .bind(id.to_string())
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn manifest(store: &SqlStore, id: &FileId) -> Result<Vec<ChunkEntry>, StoreError> {
    let rows = sqlx::query("SELECT * FROM file_chunks WHERE file_id = $1 ORDER BY idx")
        .bind(id.to_string())
        .fetch_all(&store.pool)
        .await
        .map_err(db)?;
    rows.iter().map(rows::chunk).collect()
}

pub(super) async fn usage(store: &SqlStore, owner: &OwnerId) -> Result<Usage, StoreError> {
    let files = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM files
         WHERE owner = $1 AND status != 'deleted'",
    )
    .bind(owner.as_str())
    .fetch_one(&store.lagging)
    .await
    .map_err(db)?;
    let chunks = sqlx::query(
        "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(plain_size), 0) AS BIGINT) AS plain,
                CAST(COALESCE(SUM(stored_size), 0) AS BIGINT) AS stored
         FROM chunks WHERE owner = $1",
    )
    .bind(owner.as_str())
    .fetch_one(&store.lagging)
    .await
    .map_err(db)?;
    Ok(Usage {
        files: u64_col(&files, "n")?,
        logical_bytes: u64_col(&files, "bytes")?,
        chunks: u64_col(&chunks, "n")?,
        chunk_plain_bytes: u64_col(&chunks, "plain")?,
        chunk_stored_bytes: u64_col(&chunks, "stored")?,
    })
}

pub(super) async fn pending_upload_bytes(
    store: &SqlStore,
    owner: &OwnerId,
) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes FROM files
         WHERE owner = $1 AND status = 'uploading'",
    )
    .bind(owner.as_str())
    .fetch_one(&store.pool)
    .await
    .map_err(db)?;
    u64_col(&row, "bytes")
}

pub(super) async fn stale_uploads(
    store: &SqlStore,
    before_ms: i64,
    limit: u32,
) -> Result<Vec<FileRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM files WHERE status = 'uploading' AND updated_at < $1
         ORDER BY updated_at LIMIT $2",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    rows.iter().map(rows::file).collect()
}
