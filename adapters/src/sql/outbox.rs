//! The transactional outbox: messages written in the transaction that produced them, taken by
//! the relay (claims are the engine's, see `engine/outbox_claims.rs`) and removed once published.
use super::error::db;
use super::{SqlStore, params};
use crate::meta::{PendingOutbox, StoreError};

pub(super) async fn pending(
    store: &SqlStore,
    limit: u32,
) -> Result<Vec<PendingOutbox>, StoreError> {
    store.engine.claim_outbox(&store.pool, limit).await
}

pub(super) async fn release(store: &SqlStore, ids: &[i64]) -> Result<(), StoreError> {
    store.engine.release_outbox(&store.pool, ids).await
}

pub(super) async fn remove(store: &SqlStore, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let _turn = store.write_turn().await;
    let mut tx = store.begin().await?;
    for batch in ids.chunks(params::BATCH) {
        let sql = format!(
            "DELETE FROM outbox WHERE id IN ({})",
            params::list(1, batch.len())
        );
        params::bind_all(sqlx::query(&sql), batch)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
