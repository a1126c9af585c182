//! The chunk index on PostgreSQL: dedupe lookups, recorded writes, and the sweep's claims.
//!
//! A chunk object and its row are created and removed in an order that never leaves a row
//! without its object. Writers hold a shared advisory lock on the chunk from before the object
//! is written until its row commits; the sweep holds the exclusive one from before it deletes
//! the row until the object is gone. A crash on either side leaves, at worst, an object without
//! a row, which the next sweep removes.
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::clock::now_ms;
use crate::meta::{ChunkRemoval, ChunkWrite, StoreError};
use crate::rows::{SWEEPABLE_CHUNK, SweepWindow, chunk_lock_hash, to_i64, u64_col};
use filestore_domain::OwnerId;

/// Advisory lock class of chunk locks (the first key of the two-key form): "FSch".
const CHUNK_LOCK_CLASS: i32 = 0x4653_6368;

/// The second advisory lock key for a chunk.
fn lock_key(id: &str) -> i32 {
    i32::from_ne_bytes(chunk_lock_hash(id).to_ne_bytes())
}

pub(super) async fn known(
    pool: &PgPool,
    owner: &OwnerId,
    ids: &[String],
) -> Result<Vec<(String, u64)>, StoreError> {
    // On the primary, not a replica: a lagging replica could still show a chunk the sweep has
    // just removed.
    let rows = sqlx::query(
        "UPDATE chunks SET last_used = $3 WHERE owner = $1 AND id = ANY($2)
         RETURNING id, stored_size",
    )
    .bind(owner.as_str())
    .bind(ids)
    .bind(now_ms())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, u64_col(row, "stored_size")?)))
        .collect()
}

struct PgChunkWrite {
    tx: Transaction<'static, Postgres>,
    id: String,
}

pub(super) async fn begin_write(
    pool: &PgPool,
    id: &str,
) -> Result<Box<dyn ChunkWrite>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1, $2)")
        .bind(CHUNK_LOCK_CLASS)
        .bind(lock_key(id))
        .execute(&mut *tx)
        .await?;
    Ok(Box::new(PgChunkWrite {
        tx,
        id: id.to_owned(),
    }))
}

#[async_trait]
impl ChunkWrite for PgChunkWrite {
    async fn record(
        mut self: Box<Self>,
        owner: &OwnerId,
        plain_size: u64,
        stored_size: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chunks (owner, id, plain_size, stored_size, created_at, last_used)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (owner, id) DO UPDATE SET last_used = EXCLUDED.last_used",
        )
        .bind(owner.as_str())
        .bind(&self.id)
        .bind(to_i64(plain_size)?)
        .bind(to_i64(stored_size)?)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

pub(super) async fn unreferenced(
    pool: &PgPool,
    window: &SweepWindow,
    limit: u32,
) -> Result<Vec<String>, StoreError> {
    let sql = format!("SELECT DISTINCT c.id FROM chunks c WHERE {SWEEPABLE_CHUNK} LIMIT $3");
    Ok(sqlx::query_scalar(&sql)
        .bind(window.unused_before)
        .bind(window.grace_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?)
}

pub(super) async fn unrecorded(pool: &PgPool, ids: &[String]) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT candidate FROM UNNEST($1::text[]) AS candidate
         WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE id = candidate)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// Holds the session-level exclusive lock on one pooled connection. Unreleased, the connection
/// is closed rather than pooled, which ends the session and so the lock.
struct PgChunkRemoval {
    conn: Option<PoolConnection<Postgres>>,
    key: i32,
}

impl Drop for PgChunkRemoval {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

#[async_trait]
impl ChunkRemoval for PgChunkRemoval {
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(CHUNK_LOCK_CLASS)
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                conn.close_on_drop();
                return Err(e.into());
            }
        }
        Ok(())
    }
}

pub(super) async fn claim_removal(
    pool: &PgPool,
    id: &str,
    window: &SweepWindow,
) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
    let key = lock_key(id);
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(CHUNK_LOCK_CLASS)
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(None);
    }
    let mut claim = PgChunkRemoval {
        conn: Some(conn),
        key,
    };
    if claim.delete_record_if_sweepable(id, window).await? {
        Ok(Some(Box::new(claim)))
    } else {
        Box::new(claim).release().await?;
        Ok(None)
    }
}

impl PgChunkRemoval {
    /// Deletes the chunk's record if the sweep rule allows; whether the chunk is now unrecorded.
    async fn delete_record_if_sweepable(
        &mut self,
        id: &str,
        window: &SweepWindow,
    ) -> Result<bool, StoreError> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Database("the chunk claim was already released".into()))?;
        // Committed before the object goes: a crash after this leaves an unrecorded object,
        // never a record without its object.
        let sql = format!("DELETE FROM chunks c WHERE c.id = $3 AND {SWEEPABLE_CHUNK}");
        sqlx::query(&sql)
            .bind(window.unused_before)
            .bind(window.grace_ms)
            .bind(id)
            .execute(&mut **conn)
            .await?;
        let still_recorded: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM chunks WHERE id = $1)")
                .bind(id)
                .fetch_one(&mut **conn)
                .await?;
        Ok(!still_recorded)
    }
}
