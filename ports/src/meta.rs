//! The metadata store port: files, their state, their chunks, tenants' keys and the outbox.
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::keys::WrappedSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::tree::Expect;
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};

pub use crate::error::StoreError;

/// A file as registered by a client, before any bytes arrive.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: FileId,
    pub owner: OwnerId,
    pub path: String,
    pub size: u64,
    pub declared_sha256: Option<String>,
    pub content_type: String,
    /// What finalize requires of the path's head before this file may become it.
    pub expect: Expect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub owner: OwnerId,
    pub path: String,
    pub size: u64,
    pub declared_sha256: Option<String>,
    pub content_type: String,
    pub status: FileStatus,
    pub status_reason: Option<String>,
    pub raw_key: String,
    pub uploaded_size: Option<u64>,
    pub uploaded_sha256: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What recording an upload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRecord {
    /// This attempt is now the file's content; an earlier attempt's object, if any, is unused.
    Recorded { superseded: Option<String> },
    /// The file had moved on with exactly these bytes already: a harmless retry.
    AlreadyHad,
}

/// What a finalize committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finalized {
    pub status: FileStatus,
    /// The revision the file became at its path; `None` when the file had been finalized
    /// already and this call changed nothing.
    pub rev: Option<i64>,
}

/// A message to publish once the transaction that produced it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub routing_key: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOutbox {
    pub id: i64,
    pub message: OutboxMessage,
}

/// What a tenant holds: logical bytes in files, and what the deduplicated chunks really take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub files: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    pub chunk_plain_bytes: u64,
    pub chunk_stored_bytes: u64,
}

/// A chunk object being written; see [`MetadataStore::begin_chunk_write`].
#[async_trait]
pub trait ChunkWrite: Send {
    /// Records the chunk, whose object is now stored, for `owner`, and ends the write.
    async fn record(
        self: Box<Self>,
        owner: &OwnerId,
        plain_size: u64,
        stored_size: u64,
    ) -> Result<(), StoreError>;
}

/// A chunk claimed for removal; see [`MetadataStore::claim_chunk_removal`].
#[async_trait]
pub trait ChunkRemoval: Send {
    /// Ends the claim once the object is deleted. Dropping the claim unreleased ends it too.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

#[async_trait]
pub trait MetadataStore: crate::tree::TreeStore + Send + Sync + 'static {
    /// Cheap liveness probe of the database.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn tenant_secret(&self, owner: &OwnerId) -> Result<Option<WrappedSecret>, StoreError>;
    /// Stores `wrapped` unless the tenant already has a secret; returns the one that is stored.
    async fn insert_tenant_secret(
        &self,
        owner: &OwnerId,
        wrapped: WrappedSecret,
    ) -> Result<WrappedSecret, StoreError>;

    async fn create_files(&self, files: &[NewFile]) -> Result<(), StoreError>;
    async fn get_file(&self, id: &FileId) -> Result<Option<FileRecord>, StoreError>;

    /// Records where one upload attempt's bytes are and what they turned out to be (size,
    /// SHA-256); only while `uploading`.
    async fn record_upload(
        &self,
        id: &FileId,
        raw_key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<UploadRecord, StoreError>;

    /// Finalize: `uploading -> processing`, the file as the new head of its path (if what it
    /// was registered against still holds: [`StoreError::RevConflict`] otherwise) and the
    /// announcement, in one transaction, only if the recorded upload is still the one the
    /// caller verified (`size`, `sha256_hex`).
    async fn finalize_upload(
        &self,
        id: &FileId,
        size: u64,
        sha256_hex: &str,
        announce: OutboxMessage,
    ) -> Result<Finalized, StoreError>;

    /// Applies `event` through the state machine in one transaction, recording `reason`.
    async fn apply_event(
        &self,
        id: &FileId,
        event: FileEvent,
        reason: Option<&str>,
    ) -> Result<FileStatus, StoreError>;

    /// Chunk ids among `ids` the tenant already stores, with their stored sizes. Each one found
    /// is marked used now, which keeps the sweep away from it while the file that found it is
    /// still processing.
    async fn known_chunks(
        &self,
        owner: &OwnerId,
        ids: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Starts writing the object of chunk `id`: until the returned write is recorded or dropped,
    /// no sweep can remove that object, and a sweep already removing it finishes first.
    async fn begin_chunk_write(&self, id: &str) -> Result<Box<dyn ChunkWrite>, StoreError>;

    /// Up to `limit` chunk ids that no file references and no file still processing may be about
    /// to reference, unused for `grace`: candidates for [`MetadataStore::claim_chunk_removal`].
    async fn unreferenced_chunks(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// The ids among `ids` that no tenant has recorded: objects left by a write that never
    /// got recorded, candidates for [`MetadataStore::claim_chunk_removal`].
    async fn unrecorded_chunks(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;

    /// Claims chunk `id` for removal, if nobody is writing it and it is either unrecorded, or
    /// recorded but swept by the rules of [`MetadataStore::unreferenced_chunks`] (its record is
    /// then deleted). The caller deletes the object, then releases the claim; writers of the
    /// chunk wait until then. `None`: the chunk is in use or being written; leave it.
    async fn claim_chunk_removal(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError>;

    /// Writes the chunk manifest and marks the file ready, atomically and idempotently.
    async fn index_file(
        &self,
        id: &FileId,
        chunks: &[ChunkEntry],
    ) -> Result<FileStatus, StoreError>;
    async fn file_chunks(&self, id: &FileId) -> Result<Vec<ChunkEntry>, StoreError>;

    async fn usage(&self, owner: &OwnerId) -> Result<Usage, StoreError>;

    /// The declared sizes of `owner`'s files still `uploading`: what registrations may yet
    /// make the server store for them.
    async fn pending_upload_bytes(&self, owner: &OwnerId) -> Result<u64, StoreError>;

    /// Whether `id` is a version (the head or an older one) of a path in `owner`'s trash.
    async fn in_trash(&self, owner: &OwnerId, id: &FileId) -> Result<bool, StoreError>;

    /// Files still `uploading` whose last change is older than `before_ms` (unix ms).
    async fn stale_uploads(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError>;

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<PendingOutbox>, StoreError>;
    async fn outbox_remove(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// Gives claimed rows back at once (their publish failed), instead of when the claim runs
    /// out; stores without claims have nothing to do.
    async fn outbox_release(&self, _ids: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }
}
