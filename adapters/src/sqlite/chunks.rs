//! The chunk index on SQLite: dedupe lookups, recorded writes, and the sweep's claims.
//!
//! The embedded deployment is one process, so the exclusion between chunk writers and the sweep
//! is a set of in-process read-write locks. The sweep rule (`rows::SWEEPABLE_CHUNK`) and the
//! order of row and object changes are the PostgreSQL store's (see `postgres/chunks.rs`).
use std::sync::Arc;

use async_trait::async_trait;
use filestore_domain::OwnerId;
use sqlx::Row;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::SqliteStore;
use crate::clock::now_ms;
use crate::meta::{ChunkRemoval, ChunkWrite, StoreError};
use crate::rows::{SWEEPABLE_CHUNK, SweepWindow, chunk_lock_hash, to_i64, u64_col};

/// Lock stripes; chunks sharing one only wait for each other now and then.
const STRIPES: usize = 64;

/// Writers of a chunk read-lock its stripe; the sweep write-locks it.
#[derive(Clone)]
pub(super) struct ChunkLocks(Arc<Vec<Arc<RwLock<()>>>>);

impl ChunkLocks {
    pub fn new() -> Self {
        Self(Arc::new(
            (0..STRIPES).map(|_| Arc::new(RwLock::new(()))).collect(),
        ))
    }

    fn stripe(&self, id: &str) -> Arc<RwLock<()>> {
        let hash = usize::try_from(chunk_lock_hash(id)).unwrap_or_default();
        self.0[hash % self.0.len()].clone()
    }
}

/// SQLite limits bound parameters; 500 per query is well inside it.
const BATCH: usize = 500;

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

pub(super) async fn known(
    store: &SqliteStore,
    owner: &OwnerId,
    ids: &[String],
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut known = Vec::new();
    for batch in ids.chunks(BATCH) {
        let sql = format!(
            "SELECT id, stored_size FROM chunks WHERE owner = ? AND id IN ({})",
            placeholders(batch.len())
        );
        let mut q = sqlx::query(&sql).bind(owner.as_str());
        for id in batch {
            q = q.bind(id);
        }
        for row in q.fetch_all(store.pool()).await? {
            known.push((row.try_get("id")?, u64_col(&row, "stored_size")?));
        }
    }
    if known.is_empty() {
        return Ok(known);
    }
    // Marked used only when found, so the common miss costs no write.
    let _w = store.writer().lock().await;
    for batch in known.chunks(BATCH) {
        let sql = format!(
            "UPDATE chunks SET last_used = ? WHERE owner = ? AND id IN ({})",
            placeholders(batch.len())
        );
        let mut q = sqlx::query(&sql).bind(now_ms()).bind(owner.as_str());
        for (id, _) in batch {
            q = q.bind(id);
        }
        q.execute(store.relaxed_pool()).await?;
    }
    Ok(known)
}

struct SqliteChunkWrite {
    store: SqliteStore,
    id: String,
    _lock: OwnedRwLockReadGuard<()>,
}

pub(super) async fn begin_write(
    store: &SqliteStore,
    id: &str,
) -> Result<Box<dyn ChunkWrite>, StoreError> {
    let lock = store.chunk_locks().stripe(id).read_owned().await;
    Ok(Box::new(SqliteChunkWrite {
        store: store.clone(),
        id: id.to_owned(),
        _lock: lock,
    }))
}

#[async_trait]
impl ChunkWrite for SqliteChunkWrite {
    async fn record(
        self: Box<Self>,
        owner: &OwnerId,
        plain_size: u64,
        stored_size: u64,
    ) -> Result<(), StoreError> {
        let _w = self.store.writer().lock().await;
        sqlx::query(
            "INSERT INTO chunks (owner, id, plain_size, stored_size, created_at, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)
             ON CONFLICT (owner, id) DO UPDATE SET last_used = excluded.last_used",
        )
        .bind(owner.as_str())
        .bind(&self.id)
        .bind(to_i64(plain_size)?)
        .bind(to_i64(stored_size)?)
        .bind(now_ms())
        .execute(self.store.relaxed_pool())
        .await?;
        Ok(())
    }
}

pub(super) async fn unreferenced(
    store: &SqliteStore,
    window: &SweepWindow,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let sql = format!("SELECT DISTINCT c.id FROM chunks c WHERE {SWEEPABLE_CHUNK} LIMIT $3");
    Ok(sqlx::query_scalar(&sql)
        .bind(window.unused_before)
        .bind(window.grace_ms)
        .bind(i64::from(limit))
        .fetch_all(store.pool())
        .await?)
}

pub(super) async fn unrecorded(
    store: &SqliteStore,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut recorded = std::collections::HashSet::new();
    for batch in ids.chunks(BATCH) {
        let sql = format!(
            "SELECT DISTINCT id FROM chunks WHERE id IN ({})",
            placeholders(batch.len())
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in batch {
            q = q.bind(id);
        }
        recorded.extend(q.fetch_all(store.pool()).await?);
    }
    Ok(ids
        .iter()
        .filter(|id| !recorded.contains(*id))
        .cloned()
        .collect())
}

struct SqliteChunkRemoval {
    _lock: OwnedRwLockWriteGuard<()>,
}

#[async_trait]
impl ChunkRemoval for SqliteChunkRemoval {
    async fn release(self: Box<Self>) -> Result<(), StoreError> {
        Ok(())
    }
}

pub(super) async fn claim_removal(
    store: &SqliteStore,
    id: &str,
    window: &SweepWindow,
) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
    let Ok(lock) = store.chunk_locks().stripe(id).try_write_owned() else {
        return Ok(None);
    };
    {
        let _w = store.writer().lock().await;
        // Fully synchronous: the object goes next, and a record that outlived it in a power cut
        // would point at nothing.
        let sql = format!("DELETE FROM chunks AS c WHERE c.id = $3 AND {SWEEPABLE_CHUNK}");
        sqlx::query(&sql)
            .bind(window.unused_before)
            .bind(window.grace_ms)
            .bind(id)
            .execute(store.pool())
            .await?;
    }
    let still_recorded: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chunks WHERE id = ?)")
            .bind(id)
            .fetch_one(store.pool())
            .await?;
    if still_recorded {
        return Ok(None);
    }
    Ok(Some(Box::new(SqliteChunkRemoval { _lock: lock })))
}
