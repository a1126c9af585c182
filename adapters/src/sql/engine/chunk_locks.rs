//! Chunk locks: writers of a chunk share one from before its object is written until its row
//! commits; the sweep holds it alone from before it deletes the row until the object is gone
//! (see `sql/chunks.rs` for the order this protects).
//!
//! PostgreSQL serves many processes, so the locks are advisory locks: a writer's is shared and
//! held by its transaction, the sweep's exclusive and held by a session. The embedded
//! deployment is one process, so SQLite's are a set of in-process read-write locks.
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::Engine;
use crate::meta::{ChunkRemoval, StoreError};
use crate::sql::error::db;

/// Advisory lock class of chunk locks (the first key of the two-key form): "FSch".
const CHUNK_LOCK_CLASS: i32 = 0x4653_6368;

/// In-process lock stripes; chunks sharing one only wait for each other now and then.
const STRIPES: usize = 64;

/// Writers of a chunk read-lock its stripe; the sweep write-locks it.
#[derive(Clone)]
pub(crate) struct ChunkLocks(Arc<Vec<Arc<RwLock<()>>>>);

impl ChunkLocks {
    pub(crate) fn new() -> Self {
        Self(Arc::new(
            (0..STRIPES).map(|_| Arc::new(RwLock::new(()))).collect(),
        ))
    }

    fn stripe(&self, id: &str) -> Arc<RwLock<()>> {
        let hash = usize::try_from(chunk_lock_hash(id)).unwrap_or_default();
        self.0[hash % self.0.len()].clone()
    }
}

/// A cheap hash of a chunk id, to pick the lock that writers and the sweep share for it.
/// Distinct chunks may share one; that only makes a writer wait for, or a sweep skip, an
/// unrelated chunk now and then.
fn chunk_lock_hash(id: &str) -> u32 {
    id.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

/// The second advisory lock key for a chunk.
fn advisory_key(id: &str) -> i32 {
    i32::from_ne_bytes(chunk_lock_hash(id).to_ne_bytes())
}

/// A writer's hold on a chunk.
pub(crate) enum WriteLock {
    /// The transaction that holds the shared advisory lock; the chunk's row must commit in it.
    Transaction(Transaction<'static, Any>),
    Stripe(OwnedRwLockReadGuard<()>),
}

/// The sweep's hold on a chunk. Dropped unreleased it ends too: the advisory lock's connection
/// is closed rather than pooled, which ends the session and so the lock.
pub(crate) enum RemovalLock {
    Session {
        conn: Option<PoolConnection<Any>>,
        key: i32,
    },
    Stripe {
        _held: OwnedRwLockWriteGuard<()>,
    },
}

impl Engine {
    /// Waits until no sweep holds chunk `id`, then holds it against sweeps.
    pub(crate) async fn lock_chunk_write(
        &self,
        pool: &AnyPool,
        id: &str,
    ) -> Result<WriteLock, StoreError> {
        match self {
            Engine::Postgres => {
                let mut tx = pool.begin().await.map_err(db)?;
                sqlx::query("SELECT pg_advisory_xact_lock_shared($1, $2)")
                    .bind(CHUNK_LOCK_CLASS)
                    .bind(advisory_key(id))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                Ok(WriteLock::Transaction(tx))
            }
            Engine::Sqlite(s) => Ok(WriteLock::Stripe(
                s.chunk_locks.stripe(id).read_owned().await,
            )),
        }
    }

    /// Holds chunk `id` alone, if nobody else holds it now.
    pub(crate) async fn try_lock_chunk_removal(
        &self,
        pool: &AnyPool,
        id: &str,
    ) -> Result<Option<RemovalLock>, StoreError> {
        match self {
            Engine::Postgres => {
                let key = advisory_key(id);
                let mut conn = pool.acquire().await.map_err(db)?;
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                    .bind(CHUNK_LOCK_CLASS)
                    .bind(key)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
                Ok(locked.then_some(RemovalLock::Session {
                    conn: Some(conn),
                    key,
                }))
            }
            Engine::Sqlite(s) => Ok(s
                .chunk_locks
                .stripe(id)
                .try_write_owned()
                .ok()
                .map(|held| RemovalLock::Stripe { _held: held })),
        }
    }
}

impl RemovalLock {
    /// The session that holds the lock, where there is one. The claim's statements run on it,
    /// so a claim never waits for a second connection while the writers it blocks hold the rest.
    pub(crate) fn connection(&mut self) -> Option<&mut AnyConnection> {
        match self {
            RemovalLock::Session { conn, .. } => conn.as_deref_mut(),
            RemovalLock::Stripe { .. } => None,
        }
    }
}

impl Drop for RemovalLock {
    fn drop(&mut self) {
        if let RemovalLock::Session {
            conn: Some(conn), ..
        } = self
        {
            conn.close_on_drop();
        }
    }
}

#[async_trait]
impl ChunkRemoval for RemovalLock {
    async fn release(mut self: Box<Self>) -> Result<(), StoreError> {
        if let RemovalLock::Session { conn, key } = &mut *self
            && let Some(mut conn) = conn.take()
        {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(CHUNK_LOCK_CLASS)
                .bind(*key)
                .execute(&mut *conn)
                .await;
            if let Err(e) = unlocked {
                conn.close_on_drop();
                return Err(db(e));
            }
        }
        Ok(())
    }
}
