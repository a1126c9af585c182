//! The chunk index: dedupe lookups, recorded writes, and the sweep's claims.
//!
//! A chunk object and its row are created and removed in an order that never leaves a row
//! without its object. Writers hold the chunk's lock (shared) from before the object is
//! written until its row commits; the sweep holds it alone from before it deletes the row until
//! the object is gone (the locks are the engine's, see `engine/chunk_locks.rs`). A crash on
//! either side leaves, at worst, an object without a row, which the next sweep removes.
use std::collections::HashSet;

use async_trait::async_trait;
use filestore_domain::OwnerId;

use super::engine::chunk_locks::WriteLock;
use super::error::db;
use super::rows::{self, to_i64, u64_col};
use super::{SqlStore, params};
use crate::clock::now_ms;
use crate::meta::{ChunkRemoval, ChunkWrite, StoreError};

/// The bounds of the chunk sweep rule, from its grace period.
pub(super) struct SweepWindow {
    /// Chunks last used before this (unix ms) are old enough to remove.
    unused_before: i64,
    /// A file that entered processing up to this long after a chunk's last use may still come
    /// to reference it; the same grace covers clock skew between the machines.
    grace_ms: i64,
}

impl SweepWindow {
    pub(super) fn new(grace: std::time::Duration) -> Self {
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
        Self {
            unused_before: now_ms().saturating_sub(grace_ms),
            grace_ms,
        }
    }
}

/// The sweep rule (`$1`: unused before, `$2`: grace in ms; `c` is the `chunks` row): nothing
/// references the chunk, and no file of its owner that is still processing entered processing
/// before the chunk's last use (plus grace), since that file's chunk stage may have found it
/// through dedupe.
const SWEEPABLE_CHUNK: &str = "c.last_used < $1
    AND NOT EXISTS (SELECT 1 FROM file_chunks fc WHERE fc.chunk_id = c.id)
    AND NOT EXISTS (SELECT 1 FROM files f
                    WHERE f.owner = c.owner AND f.status = 'processing'
                      AND f.updated_at <= c.last_used + $2)";

/// The chunk ids among `ids` that some tenant has recorded (`owner`'s only, if given).
async fn recorded_among(
    store: &SqlStore,
    owner: Option<&OwnerId>,
    ids: &[String],
) -> Result<HashSet<String>, StoreError> {
    let mut recorded = HashSet::new();
    for batch in ids.chunks(params::BATCH) {
        let sql = format!(
            "SELECT DISTINCT id FROM chunks WHERE ($1 IS NULL OR owner = $1) AND id IN ({})",
            params::list(2, batch.len())
        );
        let q = sqlx::query(&sql).bind(owner.map(OwnerId::as_str));
        let found = params::bind_all(q, batch)
            .fetch_all(&store.pool)
            .await
            .map_err(db)?;
        for row in &found {
            recorded.insert(rows::text(row, "id")?);
        }
    }
    Ok(recorded)
}

pub(super) async fn known(
    store: &SqlStore,
    owner: &OwnerId,
    ids: &[String],
) -> Result<Vec<(String, u64)>, StoreError> {
    // Where writers take turns, a look first spares the turn when nothing is found, the
    // common case.
    let candidates: Vec<String> = if store.engine.takes_turns() {
        let recorded = recorded_among(store, Some(owner), ids).await?;
        ids.iter()
            .filter(|id| recorded.contains(*id))
            .cloned()
            .collect()
    } else {
        ids.to_vec()
    };
    let mut known = Vec::new();
    if candidates.is_empty() {
        return Ok(known);
    }
    // Found and marked used in one statement, so the sweep cannot take a chunk between the
    // two. On the primary, never a replica: a lagging one could still show a chunk the sweep
    // has just removed.
    let _turn = store.write_turn().await;
    for batch in candidates.chunks(params::BATCH) {
        let sql = format!(
            "UPDATE chunks SET last_used = $1 WHERE owner = $2 AND id IN ({})
             RETURNING id, stored_size",
            params::list(3, batch.len())
        );
        let q = sqlx::query(&sql).bind(now_ms()).bind(owner.as_str());
        for row in params::bind_all(q, batch)
            .fetch_all(store.relaxed_pool())
            .await
            .map_err(db)?
        {
            known.push((rows::text(&row, "id")?, u64_col(&row, "stored_size")?));
        }
    }
    Ok(known)
}

struct SqlChunkWrite {
    store: SqlStore,
    id: String,
    lock: WriteLock,
}

pub(super) async fn begin_write(
    store: &SqlStore,
    id: &str,
) -> Result<Box<dyn ChunkWrite>, StoreError> {
    let lock = store.engine.lock_chunk_write(&store.pool, id).await?;
    Ok(Box::new(SqlChunkWrite {
        store: store.clone(),
        id: id.to_owned(),
        lock,
    }))
}

#[async_trait]
impl ChunkWrite for SqlChunkWrite {
    async fn record(
        self: Box<Self>,
        owner: &OwnerId,
        plain_size: u64,
        stored_size: u64,
    ) -> Result<(), StoreError> {
        let Self { store, id, lock } = *self;
        let insert = sqlx::query(
            "INSERT INTO chunks (owner, id, plain_size, stored_size, created_at, last_used)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (owner, id) DO UPDATE SET last_used = excluded.last_used",
        )
        .bind(owner.as_str())
        .bind(&id)
        .bind(to_i64(plain_size)?)
        .bind(to_i64(stored_size)?)
        .bind(now_ms());
        match lock {
            // The row commits while the lock's transaction still holds it.
            WriteLock::Transaction(mut tx) => {
                insert.execute(&mut *tx).await.map_err(db)?;
                tx.commit().await.map_err(db)
            }
            WriteLock::Stripe(_held) => {
                let _turn = store.write_turn().await;
                insert
                    .execute(store.relaxed_pool())
                    .await
                    .map_err(db)
                    .map(drop)
            }
        }
    }
}

pub(super) async fn unreferenced(
    store: &SqlStore,
    window: &SweepWindow,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let sql = format!("SELECT DISTINCT c.id FROM chunks c WHERE {SWEEPABLE_CHUNK} LIMIT $3");
    sqlx::query_scalar(&sql)
        .bind(window.unused_before)
        .bind(window.grace_ms)
        .bind(i64::from(limit))
        .fetch_all(&store.pool)
        .await
        .map_err(db)
}

pub(super) async fn unrecorded(
    store: &SqlStore,
    ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let recorded = recorded_among(store, None, ids).await?;
    Ok(ids
        .iter()
        .filter(|id| !recorded.contains(*id))
        .cloned()
        .collect())
}

pub(super) async fn claim_removal(
    store: &SqlStore,
    id: &str,
    window: &SweepWindow,
) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
    let Some(mut lock) = store.engine.try_lock_chunk_removal(&store.pool, id).await? else {
        return Ok(None);
    };
    let still_recorded = {
        let _turn = store.write_turn().await;
        let mut pooled = None;
        let conn = match lock.connection() {
            Some(conn) => conn,
            None => &mut **pooled.insert(store.pool.acquire().await.map_err(db)?),
        };
        // Committed, fully synchronously, before the object goes: a crash (or a power cut)
        // after this leaves an unrecorded object, never a record without its object.
        let sql = format!("DELETE FROM chunks AS c WHERE c.id = $3 AND {SWEEPABLE_CHUNK}");
        sqlx::query(&sql)
            .bind(window.unused_before)
            .bind(window.grace_ms)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        sqlx::query("SELECT 1 FROM chunks WHERE id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .is_some()
    };
    if still_recorded {
        Box::new(lock).release().await?;
        return Ok(None);
    }
    Ok(Some(Box::new(lock)))
}
