//! The production metadata store: PostgreSQL through sqlx. Every state change reads the row
//! `FOR UPDATE` inside its transaction, so concurrent API replicas and workers serialise on the
//! file, never on the table; outbox relays claim rows with `FOR UPDATE SKIP LOCKED`.
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::keys::WrappedSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::state::transition;
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Postgres, Row, Transaction};

use crate::clock::now_ms;
use crate::meta::{
    ChunkRemoval, ChunkWrite, FileRecord, MetadataStore, NewFile, OutboxMessage, PendingOutbox,
    StoreError, UploadRecord, Usage,
};
use crate::rows::{SweepWindow, chunk_from_row, file_from_row, parse_status, to_i64, u64_col};

mod chunks;
mod tree;

/// How long a relay owns the outbox rows it claimed before another relay may take them.
const OUTBOX_CLAIM: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// A streaming replica for reads that tolerate lag (usage figures).
    pub replica_url: Option<String>,
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            replica_url: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The replica pool, or the primary pool again when there is no replica.
    lagging: PgPool,
}

impl PostgresStore {
    /// Connects and applies migrations (idempotently; concurrent starters serialise on an
    /// advisory lock inside sqlx's migrator).
    pub async fn connect(opts: &PostgresOptions) -> Result<Self, StoreError> {
        let pool = pool(&opts.url, opts).await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
                other => StoreError::Database(format!("migration failed: {other}")),
            })?;
        tree::backfill_path_keys(&pool).await?;
        let lagging = match &opts.replica_url {
            Some(url) => pool_lazy(url, opts)?,
            None => pool.clone(),
        };
        Ok(Self { pool, lagging })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// PostgreSQL takes concurrent writers; the tree's writes serialise on row locks instead.
    pub(crate) async fn write_turn(&self) -> crate::tree::WriteTurn<'_> {
        None
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let opts: PgConnectOptions = url
        .parse()
        .map_err(|e| StoreError::Database(format!("invalid database URL: {e}")))?;
    Ok(opts
        .application_name("filestore")
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

fn pool_options(opts: &PostgresOptions) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        // A connection that survived a restart or failover of the server is checked before use.
        .test_before_acquire(true)
}

async fn pool(url: &str, opts: &PostgresOptions) -> Result<PgPool, StoreError> {
    Ok(pool_options(opts)
        .connect_with(connect_options(url)?)
        .await?)
}

fn pool_lazy(url: &str, opts: &PostgresOptions) -> Result<PgPool, StoreError> {
    Ok(pool_options(opts).connect_lazy_with(connect_options(url)?))
}

/// A file's status, locked for the rest of the transaction that is about to change it.
async fn lock_status(
    tx: &mut Transaction<'_, Postgres>,
    id: &FileId,
) -> Result<FileStatus, StoreError> {
    let row = sqlx::query("SELECT status FROM files WHERE id = $1 FOR UPDATE")
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound(*id))?;
    parse_status(&row.try_get::<String, _>("status")?)
}

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn tenant_secret(&self, owner: &OwnerId) -> Result<Option<WrappedSecret>, StoreError> {
        let row = sqlx::query("SELECT key_id, wrapped_secret FROM tenants WHERE owner = $1")
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
        sqlx::query(
            "INSERT INTO tenants (owner, key_id, wrapped_secret, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner.as_str())
        .bind(&wrapped.key_id)
        .bind(&wrapped.blob)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.tenant_secret(owner)
            .await?
            .ok_or_else(|| StoreError::Corrupt("tenant secret vanished after insert".into()))
    }

    async fn create_files(&self, files: &[NewFile]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
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
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_file(&self, id: &FileId) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM files WHERE id = $1")
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
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT status, raw_key, uploaded_size, uploaded_sha256 FROM files WHERE id = $1 FOR UPDATE",
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
            "UPDATE files SET raw_key = $1, uploaded_size = $2, uploaded_sha256 = $3, updated_at = $4 WHERE id = $5",
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
        let mut tx = self.pool.begin().await?;
        let from = lock_status(&mut tx, id).await?;
        let to = transition(from, FileEvent::Finalized)?;
        if to == from {
            return Ok(to);
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
        .await?;
        if updated.rows_affected() != 1 {
            return Err(StoreError::UploadMismatch);
        }
        tree::commit_version(&mut tx, id).await?;
        sqlx::query("INSERT INTO outbox (routing_key, payload, created_at) VALUES ($1, $2, $3)")
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
        let mut tx = self.pool.begin().await?;
        let from = lock_status(&mut tx, id).await?;
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
        chunks::known(&self.pool, owner, ids).await
    }

    async fn begin_chunk_write(&self, id: &str) -> Result<Box<dyn ChunkWrite>, StoreError> {
        chunks::begin_write(&self.pool, id).await
    }

    async fn unreferenced_chunks(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        chunks::unreferenced(&self.pool, &SweepWindow::new(grace), limit).await
    }

    async fn unrecorded_chunks(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        chunks::unrecorded(&self.pool, ids).await
    }

    async fn claim_chunk_removal(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
        chunks::claim_removal(&self.pool, id, &SweepWindow::new(grace)).await
    }

    async fn index_file(
        &self,
        id: &FileId,
        chunks: &[ChunkEntry],
    ) -> Result<FileStatus, StoreError> {
        let mut tx = self.pool.begin().await?;
        let from = lock_status(&mut tx, id).await?;
        let to = transition(from, FileEvent::Indexed)?;
        if from == to {
            return Ok(to);
        }
        let file_id = id.to_string();
        sqlx::query("DELETE FROM file_chunks WHERE file_id = $1")
            .bind(&file_id)
            .execute(&mut *tx)
            .await?;
        // One round trip for the whole manifest, however many chunks it has.
        let mut idx = Vec::with_capacity(chunks.len());
        let mut offset = Vec::with_capacity(chunks.len());
        let mut length = Vec::with_capacity(chunks.len());
        let mut chunk_id = Vec::with_capacity(chunks.len());
        let mut sha = Vec::with_capacity(chunks.len());
        let mut stored = Vec::with_capacity(chunks.len());
        for c in chunks {
            idx.push(i64::from(c.index));
            offset.push(to_i64(c.offset)?);
            length.push(i64::from(c.length));
            chunk_id.push(c.id.to_string());
            sha.push(hex::encode(c.sha256));
            stored.push(to_i64(c.stored_size)?);
        }
        sqlx::query(
            r#"INSERT INTO file_chunks (file_id, idx, "offset", length, chunk_id, sha256, stored_size)
               SELECT $1, * FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::BIGINT[])"#,
        )
        .bind(&file_id)
        .bind(&idx)
        .bind(&offset)
        .bind(&length)
        .bind(&chunk_id)
        .bind(&sha)
        .bind(&stored)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE files SET status = $1, status_reason = NULL, updated_at = $2 WHERE id = $3",
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
        let rows = sqlx::query("SELECT * FROM file_chunks WHERE file_id = $1 ORDER BY idx")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(chunk_from_row).collect()
    }

    async fn usage(&self, owner: &OwnerId) -> Result<Usage, StoreError> {
        let files = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0)::BIGINT AS bytes FROM files
             WHERE owner = $1 AND status != 'deleted'",
        )
        .bind(owner.as_str())
        .fetch_one(&self.lagging)
        .await?;
        let chunks = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(plain_size), 0)::BIGINT AS plain,
                    COALESCE(SUM(stored_size), 0)::BIGINT AS stored
             FROM chunks WHERE owner = $1",
        )
        .bind(owner.as_str())
        .fetch_one(&self.lagging)
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
            "SELECT COALESCE(SUM(size), 0)::BIGINT AS bytes FROM files WHERE owner = $1 AND status = 'uploading'",
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
            "SELECT * FROM files WHERE status = 'uploading' AND updated_at < $1
             ORDER BY updated_at LIMIT $2",
        )
        .bind(before_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<PendingOutbox>, StoreError> {
        let now = now_ms();
        let claim_ms = i64::try_from(OUTBOX_CLAIM.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "UPDATE outbox SET claimed_until = $1
             WHERE id IN (SELECT id FROM outbox
                          WHERE claimed_until IS NULL OR claimed_until < $2
                          ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id, routing_key, payload",
        )
        .bind(now.saturating_add(claim_ms))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut pending = rows
            .iter()
            .map(|r| {
                Ok(PendingOutbox {
                    id: r.try_get("id")?,
                    message: OutboxMessage {
                        routing_key: r.try_get("routing_key")?,
                        payload: r.try_get("payload")?,
                    },
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        pending.sort_by_key(|p| p.id);
        Ok(pending)
    }

    async fn outbox_release(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn outbox_remove(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
