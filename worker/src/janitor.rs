//! Uploads that were registered but never finalized would keep their raw bytes forever; the
//! janitor moves them to `deleted` and removes those bytes. Each pass also removes the objects
//! the metadata recorded as orphaned (the raw bytes of purged versions).
use std::sync::Arc;
use std::time::Duration;

use filestore_domain::FileEvent;
use filestore_ports::clock::now_ms;
use filestore_ports::orphans::remove_orphaned_objects;
use filestore_ports::{MetadataStore, ObjectStore, StoreError};

const BATCH: u32 = 500;

/// Expires uploads untouched for longer than `expiry`; returns how many it expired.
pub async fn expire_stale_uploads(
    store: &dyn MetadataStore,
    objects: &dyn ObjectStore,
    expiry: Duration,
) -> Result<usize, StoreError> {
    let cutoff = now_ms().saturating_sub(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX));
    let reason = format!(
        "upload abandoned: not finalized within {}s",
        expiry.as_secs()
    );
    let mut expired = 0;
    for file in store.stale_uploads(cutoff, BATCH).await? {
        // Deleted first: a PUT that lands now is refused and removes its own bytes.
        match store
            .apply_event(&file.id, FileEvent::Deleted, Some(&reason))
            .await
        {
            Ok(_) => {}
            Err(StoreError::Illegal(_) | StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = objects.delete(&file.raw_key).await {
            tracing::warn!(file = %file.id, error = %e, "could not remove an abandoned upload's bytes");
        }
        expired += 1;
    }
    if expired > 0 {
        metrics::counter!("filestore_uploads_expired_total").increment(expired as u64);
        tracing::info!(expired, "expired abandoned uploads");
    }
    Ok(expired)
}

/// Runs [`expire_stale_uploads`] now and every `every`, forever.
pub async fn run(
    store: Arc<dyn MetadataStore>,
    objects: Arc<dyn ObjectStore>,
    expiry: Duration,
    every: Duration,
) {
    crate::periodic::run_every("janitor pass", Duration::ZERO, every, || async {
        // Each job runs whatever the other's fate; the first error is the pass's.
        let expired = expire_stale_uploads(store.as_ref(), objects.as_ref(), expiry).await;
        let removed = remove_orphaned_objects(store.as_ref(), objects.as_ref(), usize::MAX).await;
        expired.and(removed)
    })
    .await;
}
