//! Storing one chunk of a tenant: unless the tenant has it already, the encrypted object first,
//! then its record in the dedupe index, so an indexed chunk always has its object. The write
//! holds the sweep off that chunk until it is recorded. The pipeline's chunk stage and the
//! API's delta uploads both store chunks this one way.
use bytes::Bytes;
use filestore_domain::codec::{CodecOptions, encode_hashed};
use filestore_domain::keys::TenantSecret;
use filestore_domain::{ChunkId, OwnerId};

use crate::meta::{MetadataStore, StoreError};
use crate::objects::{ObjectError, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum ChunkWriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("encoding the chunk stopped: {0}")]
    Encode(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredChunk {
    pub id: ChunkId,
    pub stored_size: u64,
    /// The tenant had it already: nothing was written.
    pub deduplicated: bool,
}

/// Stores `plain` (whose SHA-256 is `sha256`) for `owner`, unless already stored.
pub async fn store_chunk(
    store: &dyn MetadataStore,
    objects: &dyn ObjectStore,
    tenant: &TenantSecret,
    owner: &OwnerId,
    plain: Vec<u8>,
    sha256: [u8; 32],
    codec: CodecOptions,
) -> Result<StoredChunk, ChunkWriteError> {
    let id = tenant.chunk_id(&sha256);
    let id_text = id.to_string();
    let known = store
        .known_chunks(owner, std::slice::from_ref(&id_text))
        .await?;
    if let Some((_, stored_size)) = known.first() {
        metrics::counter!("filestore_chunks_deduplicated_total").increment(1);
        return Ok(StoredChunk {
            id,
            stored_size: *stored_size,
            deduplicated: true,
        });
    }
    let plain_len = plain.len() as u64;
    let tenant = tenant.clone();
    let encoded =
        tokio::task::spawn_blocking(move || encode_hashed(&tenant, &plain, sha256, codec)).await?;
    let stored_size = encoded.bytes.len() as u64;
    let write = store.begin_chunk_write(&id_text).await?;
    objects
        .put_bytes(&id.object_key(), Bytes::from(encoded.bytes))
        .await?;
    write.record(owner, plain_len, stored_size).await?;
    metrics::counter!("filestore_chunks_stored_total").increment(1);
    metrics::counter!("filestore_chunk_bytes_stored_total").increment(stored_size);
    Ok(StoredChunk {
        id,
        stored_size,
        deduplicated: false,
    })
}
