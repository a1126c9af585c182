//! The chunk sweep removes what nothing needs and nothing else, on both deployments' stores:
//! SQLite with a local directory, and PostgreSQL with S3.
use filestore_domain::tree::Expect;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filestore_adapters::meta::OutboxMessage;
use filestore_adapters::{LocalDirStore, MetadataStore, NewFile, ObjectStore, SqliteStore};
use filestore_domain::messages::ChunkEntry;
use filestore_domain::{ChunkId, FileEvent, FileId, OwnerId};
use filestore_tests::services::{Namespace, Services};
use filestore_tests::sha256_hex;
use filestore_worker::sweeper::{SweepReport, sweep_chunks};

const NO_GRACE: Duration = Duration::ZERO;
const AN_HOUR: Duration = Duration::from_secs(3600);

/// A tenant with files in the states the sweep rule cares about.
struct Tenant<'a> {
    store: &'a dyn MetadataStore,
    objects: &'a dyn ObjectStore,
    owner: OwnerId,
}

impl<'a> Tenant<'a> {
    fn new(store: &'a dyn MetadataStore, objects: &'a dyn ObjectStore, owner: &str) -> Self {
        Self {
            store,
            objects,
            owner: owner.parse().unwrap(),
        }
    }

    /// A file that is `processing`: its chunk stage may be storing or finding chunks.
    async fn processing_file(&self, size: u64) -> FileId {
        let f = NewFile {
            id: FileId::new(),
            owner: self.owner.clone(),
            path: format!("f/{}", FileId::new()),
            size,
            declared_sha256: None,
            content_type: "application/octet-stream".into(),
            expect: Expect::Any,
        };
        self.store
            .create_files(std::slice::from_ref(&f))
            .await
            .unwrap();
        let sha = sha256_hex(b"x");
        self.store
            .record_upload(&f.id, "raw/x", size, &sha)
            .await
            .unwrap();
        let announce = OutboxMessage {
            routing_key: "file.uploaded".into(),
            payload: vec![],
        };
        self.store
            .finalize_upload(&f.id, size, &sha, announce)
            .await
            .unwrap();
        f.id
    }

    /// Stores and records a chunk, as the chunk stage does.
    async fn store_chunk(&self, id: &ChunkId) {
        let write = self.store.begin_chunk_write(&id.to_string()).await.unwrap();
        self.put_object(id).await;
        write.record(&self.owner, 100, 90).await.unwrap();
    }

    async fn put_object(&self, id: &ChunkId) {
        self.objects
            .put_bytes(&id.object_key(), Bytes::from_static(b"sealed chunk"))
            .await
            .unwrap();
    }

    async fn has_object(&self, id: &ChunkId) -> bool {
        self.objects.head(&id.object_key()).await.unwrap().is_some()
    }

    async fn is_recorded(&self, id: &ChunkId) -> bool {
        !self
            .store
            .known_chunks(&self.owner, &[id.to_string()])
            .await
            .unwrap()
            .is_empty()
    }

    async fn sweep(&self, grace: Duration) -> SweepReport {
        sweep_chunks(self.store, self.objects, grace).await.unwrap()
    }
}

fn chunk(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn manifest_of(ids: &[ChunkId]) -> Vec<ChunkEntry> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| ChunkEntry {
            index: i as u32,
            offset: i as u64 * 100,
            length: 100,
            id: *id,
            sha256: [0; 32],
            stored_size: 90,
        })
        .collect()
}

async fn sweeps_only_what_nothing_needs(store: &dyn MetadataStore, objects: &dyn ObjectStore) {
    let t = Tenant::new(store, objects, "erin");

    // A chunk a ready file references stays, however old.
    let ready = t.processing_file(100).await;
    t.store_chunk(&chunk(1)).await;
    store
        .index_file(&ready, &manifest_of(&[chunk(1)]))
        .await
        .unwrap();

    // A chunk stored for a file still processing stays: its manifest is not written yet.
    let busy = t.processing_file(100).await;
    t.store_chunk(&chunk(2)).await;

    // A write in progress: the object is there, the record is not yet.
    let in_progress = store
        .begin_chunk_write(&chunk(3).to_string())
        .await
        .unwrap();
    t.put_object(&chunk(3)).await;

    // A write whose worker died between the object and the record.
    let abandoned = store
        .begin_chunk_write(&chunk(4).to_string())
        .await
        .unwrap();
    t.put_object(&chunk(4)).await;
    drop(abandoned);

    // Something in the chunk space that no chunk would be.
    objects
        .put_bytes("chunks/zz/notes.txt", Bytes::from_static(b"not a chunk"))
        .await
        .unwrap();

    let report = t.sweep(NO_GRACE).await;
    assert_eq!(report.unrecorded_removed, 1, "{report:?}");
    assert_eq!(report.unreferenced_removed, 0, "{report:?}");
    assert_eq!(report.foreign_objects, 1, "{report:?}");
    assert!(
        !t.has_object(&chunk(4)).await,
        "the abandoned write is swept"
    );
    for kept in [1, 2, 3] {
        assert!(t.has_object(&chunk(kept)).await, "chunk {kept} is kept");
    }
    assert!(objects.head("chunks/zz/notes.txt").await.unwrap().is_some());

    // The write completes after all; the busy file gives up.
    in_progress.record(&t.owner, 100, 90).await.unwrap();
    store
        .apply_event(&busy, FileEvent::ProcessingFailed, Some("test"))
        .await
        .unwrap();
    // Chunks 2 and 3 are referenced by nothing now, but were used within the grace period.
    let report = t.sweep(AN_HOUR).await;
    assert_eq!(report.unreferenced_removed, 0, "{report:?}");
    assert!(t.is_recorded(&chunk(2)).await && t.is_recorded(&chunk(3)).await);

    // Looking a chunk up counts as using it, and even without grace a chunk used in the sweep's
    // own millisecond is kept: let the clock move on.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let report = t.sweep(NO_GRACE).await;
    assert_eq!(report.unreferenced_removed, 2, "{report:?}");
    for gone in [2, 3] {
        assert!(!t.has_object(&chunk(gone)).await, "chunk {gone} is swept");
        assert!(
            !t.is_recorded(&chunk(gone)).await,
            "chunk {gone} is unrecorded"
        );
    }
    assert!(t.has_object(&chunk(1)).await && t.is_recorded(&chunk(1)).await);

    // Nothing is left to do.
    let report = t.sweep(NO_GRACE).await;
    assert_eq!(
        (report.unrecorded_removed, report.unreferenced_removed),
        (0, 0)
    );
}

async fn can_claim(store: &dyn MetadataStore, id: &ChunkId) -> bool {
    store
        .claim_chunk_removal(&id.to_string(), NO_GRACE)
        .await
        .unwrap()
        .is_some()
}

/// A chunk being swept cannot be written until the sweep has removed its object, so a fresh
/// copy is never deleted by a sweep that decided on the old one.
async fn a_writer_waits_for_a_removal_in_progress(
    store: Arc<dyn MetadataStore>,
    objects: &dyn ObjectStore,
) {
    let t = Tenant::new(store.as_ref(), objects, "fred");
    let id = chunk(9);
    t.put_object(&id).await;
    let claim = store
        .claim_chunk_removal(&id.to_string(), NO_GRACE)
        .await
        .unwrap()
        .expect("an unrecorded object can be claimed");
    assert!(!can_claim(store.as_ref(), &id).await, "one sweep at a time");
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.begin_chunk_write(&id.to_string()).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for the sweep");
    objects.delete(&id.object_key()).await.unwrap();
    claim.release().await.unwrap();
    let write = writer.await.unwrap().unwrap();
    t.put_object(&id).await;
    assert!(
        !can_claim(store.as_ref(), &id).await,
        "a chunk being written cannot be claimed"
    );
    write.record(&t.owner, 100, 90).await.unwrap();
    assert!(t.has_object(&id).await && t.is_recorded(&id).await);
}

#[tokio::test]
async fn the_embedded_sweep_removes_only_what_nothing_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    let objects = LocalDirStore::open(&dir.path().join("objects"))
        .await
        .unwrap();
    sweeps_only_what_nothing_needs(&store, &objects).await;
    a_writer_waits_for_a_removal_in_progress(Arc::new(store), &objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_sweep_removes_only_what_nothing_needs() {
    let ns = Namespace::create(Services::shared(), "sweep").await;
    let store = ns.postgres().await;
    let objects = ns.s3();
    sweeps_only_what_nothing_needs(&store, &objects).await;
    a_writer_waits_for_a_removal_in_progress(Arc::new(store), &objects).await;
}
