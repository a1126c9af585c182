//! The metadata store, written once for PostgreSQL (production) and SQLite (embedded) through
//! sqlx's `Any` driver: one SQL text per statement, `$N` placeholders (sqlx binds them by number
//! on SQLite too), only the types both engines share. What truly differs sits behind the narrow
//! seam in [`engine`]: connecting and migrating, row locks versus SQLite's one writer, outbox
//! claims, chunk locks and listing snapshots.
//!
//! Every state change reads the file's row inside its transaction, locked: `FOR UPDATE` on
//! PostgreSQL, so concurrent API replicas and workers serialise on the file, never on the
//! table; SQLite's write turn covers the whole transaction.
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::keys::WrappedSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use sqlx::{Any, AnyPool, Transaction};

use crate::meta::{
    ChunkRemoval, ChunkWrite, FileRecord, Finalized, MetadataStore, NewFile, OutboxMessage,
    PendingOutbox, StoreError, UploadRecord, Usage,
};
use crate::postgres::PostgresOptions;
use engine::{Engine, WriteTurn};
use error::db;

mod chunks;
mod engine;
pub(crate) mod error;
mod files;
mod outbox;
mod params;
mod rows;
mod tree;

type Tx = Transaction<'static, Any>;

/// The metadata store on either engine; [`crate::PostgresStore`] and [`crate::SqliteStore`]
/// name it by how it is opened.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    /// A replica's pool for reads that tolerate lag (usage figures), or `pool` again.
    lagging: AnyPool,
    engine: Engine,
}

impl SqlStore {
    /// Connects to PostgreSQL and applies migrations (idempotently; concurrent starters
    /// serialise on an advisory lock inside sqlx's migrator).
    pub async fn connect(opts: &PostgresOptions) -> Result<Self, StoreError> {
        Self::ready(engine::connect::postgres(opts).await?).await
    }

    /// Opens the SQLite database at `path`, creating it if missing, and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::ready(engine::connect::sqlite(path).await?).await
    }

    async fn ready(c: engine::connect::Connected) -> Result<Self, StoreError> {
        let store = Self {
            pool: c.pool,
            lagging: c.lagging,
            engine: c.engine,
        };
        tree::backfill_path_keys(&store).await?;
        Ok(store)
    }

    /// The pool the store commits through, for raw SQL in tests and tools.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// For bookkeeping that may be redone after a power cut: on SQLite a pool that commits
    /// with `synchronous=NORMAL`; on PostgreSQL the store's own pool.
    pub fn relaxed_pool(&self) -> &AnyPool {
        self.engine.relaxed(&self.pool)
    }

    /// This process's turn to write, where the engine takes one writer at a time (SQLite);
    /// everything that writes through the store's pools takes it first.
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        self.engine.write_turn().await
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.pool.begin().await.map_err(db)
    }
}

#[async_trait]
impl MetadataStore for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn tenant_secret(&self, owner: &OwnerId) -> Result<Option<WrappedSecret>, StoreError> {
        files::tenant_secret(self, owner).await
    }

    async fn insert_tenant_secret(
        &self,
        owner: &OwnerId,
        wrapped: WrappedSecret,
    ) -> Result<WrappedSecret, StoreError> {
        files::insert_tenant_secret(self, owner, wrapped).await
    }

    async fn create_files(&self, files: &[NewFile]) -> Result<(), StoreError> {
        files::create(self, files).await
    }

    async fn get_file(&self, id: &FileId) -> Result<Option<FileRecord>, StoreError> {
        files::get(self, id).await
    }

    async fn record_upload(
        &self,
        id: &FileId,
        raw_key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<UploadRecord, StoreError> {
        files::record_upload(self, id, raw_key, size, sha256_hex).await
    }

    async fn finalize_upload(
        &self,
        id: &FileId,
        size: u64,
        sha256_hex: &str,
        announce: OutboxMessage,
    ) -> Result<Finalized, StoreError> {
        files::finalize(self, id, size, sha256_hex, announce).await
    }

    async fn apply_event(
        &self,
        id: &FileId,
        event: FileEvent,
        reason: Option<&str>,
    ) -> Result<FileStatus, StoreError> {
        files::apply_event(self, id, event, reason).await
    }

    async fn known_chunks(
        &self,
        owner: &OwnerId,
        ids: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        chunks::known(self, owner, ids).await
    }

    async fn begin_chunk_write(&self, id: &str) -> Result<Box<dyn ChunkWrite>, StoreError> {
        chunks::begin_write(self, id).await
    }

    async fn unreferenced_chunks(
        &self,
        grace: Duration,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        chunks::unreferenced(self, &chunks::SweepWindow::new(grace), limit).await
    }

    async fn unrecorded_chunks(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        chunks::unrecorded(self, ids).await
    }

    async fn claim_chunk_removal(
        &self,
        id: &str,
        grace: Duration,
    ) -> Result<Option<Box<dyn ChunkRemoval>>, StoreError> {
        chunks::claim_removal(self, id, &chunks::SweepWindow::new(grace)).await
    }

    async fn index_file(
        &self,
        id: &FileId,
        chunks: &[ChunkEntry],
    ) -> Result<FileStatus, StoreError> {
        files::index(self, id, chunks).await
    }

    async fn file_chunks(&self, id: &FileId) -> Result<Vec<ChunkEntry>, StoreError> {
        files::manifest(self, id).await
    }

    async fn usage(&self, owner: &OwnerId) -> Result<Usage, StoreError> {
        files::usage(self, owner).await
    }

    async fn pending_upload_bytes(&self, owner: &OwnerId) -> Result<u64, StoreError> {
        files::pending_upload_bytes(self, owner).await
    }

    async fn in_trash(&self, owner: &OwnerId, id: &FileId) -> Result<bool, StoreError> {
        tree::in_trash(self, owner, id).await
    }

    async fn stale_uploads(
        &self,
        before_ms: i64,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        files::stale_uploads(self, before_ms, limit).await
    }

    async fn outbox_pending(&self, limit: u32) -> Result<Vec<PendingOutbox>, StoreError> {
        outbox::pending(self, limit).await
    }

    async fn outbox_remove(&self, ids: &[i64]) -> Result<(), StoreError> {
        outbox::remove(self, ids).await
    }

    async fn outbox_release(&self, ids: &[i64]) -> Result<(), StoreError> {
        outbox::release(self, ids).await
    }
}
