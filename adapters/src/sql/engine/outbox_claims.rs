//! Taking outbox rows to publish. PostgreSQL serves several relays at once (one per API
//! replica), so each claims its rows for a while (`FOR UPDATE SKIP LOCKED`) and gives them back
//! if its publish fails; the embedded deployment has one relay, which just reads.
use std::time::Duration;

use sqlx::AnyPool;

use super::Engine;
use crate::clock::now_ms;
use crate::meta::{PendingOutbox, StoreError};
use crate::sql::error::db;
use crate::sql::{params, rows};

/// How long a relay owns the outbox rows it claimed before another relay may take them.
const OUTBOX_CLAIM: Duration = Duration::from_secs(10);

impl Engine {
    /// Up to `limit` rows to publish, oldest first.
    pub(crate) async fn claim_outbox(
        &self,
        pool: &AnyPool,
        limit: u32,
    ) -> Result<Vec<PendingOutbox>, StoreError> {
        let rows = match self {
            Engine::Postgres => {
                let now = now_ms();
                let claim_ms = i64::try_from(OUTBOX_CLAIM.as_millis()).unwrap_or(i64::MAX);
                sqlx::query(
                    "UPDATE outbox SET claimed_until = $1
                     WHERE id IN (SELECT id FROM outbox
                                  WHERE claimed_until IS NULL OR claimed_until < $2
                                  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING id, routing_key, payload",
                )
                .bind(now.saturating_add(claim_ms))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
            }
            Engine::Sqlite(_) => {
                sqlx::query("SELECT id, routing_key, payload FROM outbox ORDER BY id LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
            }
        }
        .map_err(db)?;
        let mut pending = rows
            .iter()
            .map(rows::outbox)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING keeps no order.
        pending.sort_by_key(|p| p.id);
        Ok(pending)
    }

    /// Gives claimed rows back at once (their publish failed), instead of when the claim runs
    /// out; unclaimed rows have nothing to give back.
    pub(crate) async fn release_outbox(
        &self,
        pool: &AnyPool,
        ids: &[i64],
    ) -> Result<(), StoreError> {
        if !matches!(self, Engine::Postgres) {
            return Ok(());
        }
        for batch in ids.chunks(params::BATCH) {
            let sql = format!(
                "UPDATE outbox SET claimed_until = NULL WHERE id IN ({})",
                params::list(1, batch.len())
            );
            params::bind_all(sqlx::query(&sql), batch)
                .execute(pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }
}
