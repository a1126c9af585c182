//! The embedded metadata store: SQLite through sqlx, WAL, `synchronous=FULL`.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::keys::WrappedSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::state::transition;
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use tokio::sync::Mutex;

use crate::clock::now_ms;
use crate::meta::{
    ChunkRemoval, ChunkWrite, FileRecord, MetadataStore, NewFile, OutboxMessage, PendingOutbox,
    StoreError, UploadRecord, Usage,
};
use crate::rows::{SweepWindow, chunk_from_row, file_from_row, parse_status, to_i64, u64_col};

mod chunks;
mod tree;
use chunks::ChunkLocks;

/// SQLite has one writer at a time; taking turns inside the process avoids busy errors on
/// read-then-write transactions, and `busy_timeout` covers other processes.
///
/// Two pools on one database: `pool` commits with `synchronous=FULL` (every commit fsyncs the
/// WAL) for what a client was told succeeded; `relaxed` commits with `synchronous=NORMAL` for
/// bookkeeping whose loss in a power cut only means redoing idempotent work (queue claims, acks,
/// stage-to-stage messages, the dedupe index). The WAL is one ordered log, so the next FULL
/// commit makes every earlier relaxed one durable too: a message published before the outbox
/// row that produced it is removed can never be lost while that removal survives.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    relaxed: SqlitePool,
    writer: Arc<Mutex<()>>,
    chunk_locks: ChunkLocks,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        tree::backfill_path_keys(&pool).await?;
        let relaxed = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(Self {
            pool,
            relaxed,
            writer: Arc::new(Mutex::new(())),
            chunk_locks: ChunkLocks::new(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// For bookkeeping that may be redone after a power cut (see the type's documentation).
    pub fn relaxed_pool(&self) -> &SqlitePool {
        &self.relaxed
    }

    pub(crate) fn writer(&self) -> &Mutex<()> {
        &self.writer
    }

    pub(crate) async fn write_turn(&self) -> crate::tree::WriteTurn<'_> {
        Some(self.writer.lock().await)
    }

    fn chunk_locks(&self) -> &ChunkLocks {
        &self.chunk_locks
    }
}

/// A file's status, read inside the transaction that is about to change it.
async fn status_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &FileId,
) -> Result<FileStatus, StoreError> {
    let row = sqlx::query("SELECT status FROM files WHERE id = ?")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound(*id))?;
    let status: String = row.try_get("status")?;
    parse_status(&status)
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn tenant_secret(&self, owner: &OwnerId) -> Result<Option<WrappedSecret>, StoreError> {
        let row = sqlx::query("SELECT key_id, wrapped_secret FROM tenants WHERE owner = ?")
            .bind(owner.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(WrappedSecret {
                key_id: r.try_get("key_id")?,
                blob: r.try_get("wrapped_secret")?,
            })
        })
        .transpose()
    }

    async fn insert_tenant_secret(
        &self,
        owner: &OwnerId,
        wrapped: WrappedSecret,
    ) -> Result<WrappedSecret, StoreError> {
        {
            let _w = self.writer.lock().await;
            sqlx::query(
                "INSERT INTO tenants (owner, key_id, wrapped_secret, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (owner) DO NOTHING",
            )
            .bind(owner.as_str())
            .bind(&wrapped.key_id)
            .bind(&wrapped.blob)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        }
        self.tenant_secret(owner)
            .await?
            .ok_or_else(|| StoreError::Corrupt("tenant secret vanished after insert".into()))
    }

    async fn create_files(&self, files: &[NewFile]) -> Result<(), StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        for f in files {
            sqlx::query(
                "INSERT INTO files (id, owner, path, size, declared_sha256, content_type, status, raw_key, created_at, updated_at, parent_rev)
                 VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?, ?, ?, ?)",
            )
            .bind(f.id.to_string())
            .bind(f.owner.as_str())
            .bind(&f.path)
            .bind(to_i64(f.size)?)
            .bind(&f.declared_sha256)
            .bind(&f.content_type)
            .bind(f.id.raw_key())
            .bind(now)
            .bind(now)
            .bind(f.expect.parent_rev())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_file(&self, id: &FileId) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM files WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    async fn record_upload(
        &self,
        id: &FileId,
        raw_key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<UploadRecord, StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT status, raw_key, uploaded_size, uploaded_sha256 FROM files WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound(*id))?;
        let status: String = row.try_get("status")?;
        if status != FileStatus::Uploading.as_str() {
            // The same bytes again is a harmless retry; other bytes come too late.
            let had_size: Option<i64> = row.try_get("uploaded_size")?;
            let had_sha: Option<String> = row.try_get("uploaded_sha256")?;
            return if had_size == Some(to_i64(size)?) && had_sha.as_deref() == Some(sha256_hex) {
                Ok(UploadRecord::AlreadyHad)
            } else {
                Err(StoreError::NotUploading)
            };
        }
        let previous: String = row.try_get("raw_key")?;
        sqlx::query(
            "UPDATE files SET raw_key = ?, uploaded_size = ?, uploaded_sha256 = ?, updated_at = ? WHERE id = ?",
        )
        .bind(raw_key)
        .bind(to_i64(size)?)
        .bind(sha256_hex)
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UploadRecord::Recorded {
            superseded: (previous != raw_key).then_some(previous),
        })
    }

    async fn finalize_upload(
        &self,
        id: &FileId,
        size: u64,
        sha256_hex: &str,
        announce: OutboxMessage,
    ) -> Result<FileStatus, StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let from = status_in(&mut tx, id).await?;
        let to = transition(from, FileEvent::Finalized)?;
        if to == from {
            return Ok(to);
        }
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE files SET status = ?, status_reason = NULL, updated_at = ?
             WHERE id = ? AND uploaded_size = ? AND uploaded_sha256 = ?",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(id.to_string())
        .bind(to_i64(size)?)
        .bind(sha256_hex)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::UploadMismatch);
        }
        tree::commit_version(&mut tx, id).await?;
        sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES (?, ?, ?)")
            .bind(&announce.routing_key)
            .bind(&announce.payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(to)
    }

    async fn apply_event(
        &self,
        id: &FileId,
        event: FileEvent,
        reason: Option<&str>,
    ) -> Result<FileStatus, StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let from = status_in(&mut tx, id).await?;
        let to = transition(from, event)?;
        if to != from {
            let now = now_ms();
            sqlx::query(
                "UPDATE files SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?",
            )
            .bind(to.as_str())
            .bind(reason)
            .bind(now)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(to)
    }

    async fn known_chunks(
        &self,
        owner: &OwnerId,
        ids: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        chunks::known(self, owner, ids).await
    }

    async fn begin_chunk_write(&self, id: &str) -> Result<Box<dyn ChunkWrite>, StoreError> {
        chunks::begin_write(self, id).await
    }

    async fn unreferenced_chunks(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        chunks::unreferenced(self, &SweepWindow::new(grace), limit).await
    }

    async fn unrecorded_chunks(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        chunks::unrecorded(self, ids).await
    }

    async fn claim_chunk_removal(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
        chunks::claim_removal(self, id, &SweepWindow::new(grace)).await
    }

    async fn index_file(
        &self,
        id: &FileId,
        chunks: &[ChunkEntry],
    ) -> Result<FileStatus, StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        let from = status_in(&mut tx, id).await?;
        let to = transition(from, FileEvent::Indexed)?;
        if from == to {
            return Ok(to);
        }
        let file_id = id.to_string();
        sqlx::query("DELETE FROM file_chunks WHERE file_id = ?")
            .bind(&file_id)
            .execute(&mut *tx)
            .await?;
        for c in chunks {
            sqlx::query(
                "INSERT INTO file_chunks (file_id, idx, offset, length, chunk_id, sha256, stored_size)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&file_id)
            .bind(i64::from(c.index))
            .bind(to_i64(c.offset)?)
            .bind(i64::from(c.length))
            .bind(c.id.to_string())
            .bind(hex::encode(c.sha256))
            .bind(to_i64(c.stored_size)?)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE files SET status = ?, status_reason = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(to.as_str())
        .bind(now_ms())
        .bind(&file_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(to)
    }

    async fn file_chunks(&self, id: &FileId) -> Result<Vec<ChunkEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM file_chunks WHERE file_id = ? ORDER BY idx")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn usage(&self, owner: &OwnerId) -> Result<Usage, StoreError> {
        let files = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM files WHERE owner = ? AND status != 'deleted'",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?;
        let chunks = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(plain_size), 0) AS plain, COALESCE(SUM(stored_size), 0) AS stored
             FROM chunks WHERE owner = ?",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(Usage {
            files: u64_col(&files, "n")?,
            logical_bytes: u64_col(&files, "bytes")?,
            chunks: u64_col(&chunks, "n")?,
            chunk_plain_bytes: u64_col(&chunks, "plain")?,
            chunk_stored_bytes: u64_col(&chunks, "stored")?,
        })
    }

    async fn pending_upload_bytes(&self, owner: &OwnerId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(size), 0) AS bytes FROM files WHERE owner = ? AND status = 'uploading'",
        )
        .bind(owner.as_str())
        .fetch_one(&self.pool)
        .await?;
        u64_col(&row, "bytes")
    }

    async fn in_trash(&self, owner: &OwnerId, id: &FileId) -> Result<bool, StoreError> {
        tree::in_trash(&self.pool, owner, id).await
    }

    async fn stale_uploads(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM files WHERE status = 'uploading' AND updated_at < ? ORDER BY updated_at LIMIT ?",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<PendingOutbox>, StoreError> {
        let rows = sqlx::query("SELECT id, routing_key, payload FROM outbox ORDER BY id LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingOutbox {
                    id: r.try_get("id")?,
                    message: OutboxMessage {
                        routing_key: r.try_get("routing_key")?,
                        payload: r.try_get("payload")?,
                    },
                })
            })
            .collect()
    }

    async fn outbox_remove(&self, ids: &[i64]) -> Result<(), StoreError> {
        let _w = self.writer.lock().await;
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
