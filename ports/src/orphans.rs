//! Objects the metadata no longer refers to (the raw bytes of purged versions that never became
//! chunks), removed from the object store. The metadata records them in the transaction that
//! orphans them, so this may run at any time, as often as wanted, and after any crash.
use crate::meta::{MetadataStore, StoreError};
use crate::objects::ObjectStore;

/// How many keys are read at a time.
pub const BATCH: u32 = 500;

/// Removes up to `at_most` recorded orphaned objects, oldest first; returns how many went. An
/// object the store cannot remove now stays recorded for the next call.
pub async fn remove_orphaned_objects(
    store: &dyn MetadataStore,
    objects: &dyn ObjectStore,
    at_most: usize,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    while removed < at_most {
        let want = u32::try_from(at_most - removed).map_or(BATCH, |left| left.min(BATCH));
        let keys = store.orphaned_objects(want).await?;
        let mut stuck = false;
        for key in &keys {
            match objects.delete(key).await {
                Ok(()) => {
                    store.forget_orphaned_object(key).await?;
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "could not remove an orphaned object; the next pass retries");
                    stuck = true;
                }
            }
        }
        if stuck || keys.len() < want as usize {
            break;
        }
    }
    if removed > 0 {
        metrics::counter!("filestore_orphaned_objects_removed_total").increment(removed as u64);
    }
    Ok(removed)
}
