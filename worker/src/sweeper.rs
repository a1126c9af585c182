//! The chunk sweep: removes chunk objects nothing needs any more. Those are chunks no file
//! references (stored for a file that then failed, or whose files are gone) and objects whose
//! write was never recorded (a worker killed between storing a chunk and recording it). The
//! store's claims make it safe to run beside the workers and beside other sweeps.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use filestore_domain::ChunkId;
use filestore_ports::{MetadataStore, ObjectError, ObjectStore, StoreError};
use serde::Serialize;

/// Candidates asked for at once.
const BATCH: u32 = 500;
const CHUNK_PREFIX: &str = "chunks/";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Recorded chunks nothing referenced, removed with their objects.
    pub unreferenced_removed: u64,
    /// Objects without a record, removed.
    pub unrecorded_removed: u64,
    /// Candidates left alone because they were being written or came back into use.
    pub skipped: u64,
    /// Objects under `chunks/` looked at.
    pub objects_examined: u64,
    /// Objects under `chunks/` whose key no chunk would have; reported, never touched.
    pub foreign_objects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
}

/// The chunk an object key belongs to, if the key is exactly the one that chunk would have.
fn chunk_of(key: &str) -> Option<ChunkId> {
    let id: ChunkId = key.rsplit('/').next()?.parse().ok()?;
    (id.object_key() == key).then_some(id)
}

enum Reason {
    Unreferenced,
    Unrecorded,
}

async fn remove(
    store: &dyn MetadataStore,
    objects: &dyn ObjectStore,
    id: &ChunkId,
    grace: Duration,
    reason: Reason,
    report: &mut SweepReport,
) -> Result<(), SweepError> {
    let Some(claim) = store.claim_chunk_removal(&id.to_string(), grace).await? else {
        report.skipped += 1;
        return Ok(());
    };
    objects.delete(&id.object_key()).await?;
    claim.release().await?;
    let (counter, label) = match reason {
        Reason::Unreferenced => (&mut report.unreferenced_removed, "unreferenced"),
        Reason::Unrecorded => (&mut report.unrecorded_removed, "unrecorded"),
    };
    *counter += 1;
    metrics::counter!("filestore_chunks_swept_total", "reason" => label).increment(1);
    tracing::debug!(chunk = %id, reason = label, "swept a chunk");
    Ok(())
}

/// One sweep over the whole chunk index and the chunk objects. Chunks used within `grace` are
/// kept, which also absorbs clock skew between the machines that write and sweep.
pub async fn sweep_chunks(
    store: &dyn MetadataStore,
    objects: &dyn ObjectStore,
    grace: Duration,
) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let mut seen = HashSet::new();
    loop {
        let fresh: Vec<String> = store
            .unreferenced_chunks(grace, BATCH)
            .await?
            .into_iter()
            .filter(|id| seen.insert(id.clone()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for id in fresh {
            match id.parse::<ChunkId>() {
                Ok(chunk) => {
                    remove(
                        store,
                        objects,
                        &chunk,
                        grace,
                        Reason::Unreferenced,
                        &mut report,
                    )
                    .await?
                }
                Err(_) => report.skipped += 1,
            }
        }
    }

    let listed = objects.list(CHUNK_PREFIX).await?;
    report.objects_examined = listed.len() as u64;
    let mut ids = Vec::with_capacity(listed.len());
    for (key, _) in &listed {
        match chunk_of(key) {
            Some(id) => ids.push(id.to_string()),
            None => {
                report.foreign_objects += 1;
                tracing::warn!(%key, "an object in the chunk space that no chunk would write; left alone");
            }
        }
    }
    for batch in ids.chunks(BATCH as usize) {
        for id in store.unrecorded_chunks(batch).await? {
            if let Ok(chunk) = id.parse::<ChunkId>() {
                remove(
                    store,
                    objects,
                    &chunk,
                    grace,
                    Reason::Unrecorded,
                    &mut report,
                )
                .await?;
            }
        }
    }
    if report.unreferenced_removed + report.unrecorded_removed > 0 {
        tracing::info!(?report, "chunk sweep removed chunks");
    }
    Ok(report)
}

/// Runs [`sweep_chunks`] every `every`, forever; not at once, since a sweep right at start-up
/// would mostly repeat the one before the restart.
pub async fn run(
    store: Arc<dyn MetadataStore>,
    objects: Arc<dyn ObjectStore>,
    grace: Duration,
    every: Duration,
) {
    crate::periodic::run_every("chunk sweep", every, every, || {
        sweep_chunks(store.as_ref(), objects.as_ref(), grace)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_a_chunk_would_have_are_chunks() {
        let id = ChunkId([0xab; 32]);
        assert_eq!(chunk_of(&id.object_key()), Some(id));
        assert_eq!(chunk_of(&format!("chunks/cd/{id}")), None);
        assert_eq!(chunk_of(&format!("chunks/{id}")), None);
        assert_eq!(chunk_of("chunks/ab/not-a-chunk"), None);
    }
}
