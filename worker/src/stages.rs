//! The three stages. Each re-reads the file's state first, so a redelivered message for a file
//! that already moved on does nothing.

use std::sync::Arc;

use filestore_domain::chunking::{Chunk, StreamChunker};
use filestore_domain::keys::{TenantSecret, sha256};
use filestore_domain::messages::{
    self, ChunkEntry, ChunksCreated, FileMessage, MessageError, Stage, routing,
};
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use filestore_ports::chunk_writer::store_chunk as store_chunk_once;
use filestore_ports::objects::ObjectError;
use filestore_ports::queue::Delivery;
use filestore_ports::{FileRecord, StoreError};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::pipeline::Pipeline;
use crate::scanner::Verdict;
use crate::task::AbortOnDrop;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The message itself is unusable; retrying cannot help.
    #[error("poison message: {0}")]
    Poison(String),
    /// The file cannot be processed; retrying cannot help.
    #[error("file {0} failed: {1}")]
    Permanent(FileId, String),
    /// Something outside was unavailable; try again later.
    #[error("transient failure: {1}")]
    Transient(Option<FileId>, String),
}

impl From<MessageError> for StageError {
    fn from(e: MessageError) -> Self {
        StageError::Poison(e.to_string())
    }
}

const READ_BUF: usize = 1024 * 1024;

pub async fn handle(p: &Arc<Pipeline>, stage: Stage, d: &Delivery) -> Result<(), StageError> {
    match stage {
        Stage::Scan => scan(p, messages::parse(&d.body)?).await,
        Stage::Chunk => chunk(p, messages::parse(&d.body)?).await,
        Stage::Index => index(p, messages::parse(&d.body)?).await,
    }
}

fn transient(file: &FileId) -> impl Fn(&dyn std::fmt::Display) -> StageError + '_ {
    move |e| StageError::Transient(Some(*file), e.to_string())
}

/// The file this message is about, if it still needs this work.
async fn file_in_processing(
    p: &Pipeline,
    id: &FileId,
    owner: &OwnerId,
) -> Result<Option<FileRecord>, StageError> {
    let file = p.store.get_file(id).await.map_err(|e| transient(id)(&e))?;
    match file {
        None => Ok(None),
        Some(f) if &f.owner != owner => Err(StageError::Poison(format!(
            "message names the wrong owner for file {id}"
        ))),
        Some(f) if f.status != FileStatus::Processing => Ok(None),
        Some(f) => Ok(Some(f)),
    }
}

fn open_error(id: &FileId, e: ObjectError) -> StageError {
    match e {
        ObjectError::NotFound(key) => {
            StageError::Permanent(*id, format!("raw object {key} is missing"))
        }
        other => transient(id)(&other),
    }
}

/// Whether this worker runs the chunk and index stages too, so a clean file goes on through
/// them here rather than through the queue: two publishes, claims and acks and two re-reads of
/// the file fewer per file. A redelivered scan message redoes the whole path, which every step
/// of it allows (chunks are deduplicated, indexing a file twice changes nothing).
fn runs_every_stage_after_scan(p: &Pipeline) -> bool {
    [Stage::Chunk, Stage::Index]
        .iter()
        .all(|s| p.config.stages.contains(s))
}

async fn scan(p: &Arc<Pipeline>, msg: FileMessage) -> Result<(), StageError> {
    let id = msg.file_id;
    let Some(file) = file_in_processing(p, &id, &msg.owner).await? else {
        return Ok(());
    };
    let (Some(size), Some(sha)) = (file.uploaded_size, file.uploaded_sha256.as_deref()) else {
        return Err(StageError::Permanent(
            id,
            "no verified upload is recorded".into(),
        ));
    };
    let reader = p
        .objects
        .open(&file.raw_key)
        .await
        .map_err(|e| open_error(&id, e))?;
    let verdict = p
        .scanner
        .scan(reader, size, sha)
        .await
        .map_err(|e| transient(&id)(&e))?;
    match verdict {
        Verdict::Clean if runs_every_stage_after_scan(p) => {
            let created = chunk_file(p, &file).await?;
            index_manifest(p, &file, &created.chunks).await?;
        }
        Verdict::Clean => {
            let body = serde_json::to_vec(&msg).map_err(|e| transient(&id)(&e))?;
            p.queue
                .publish(routing::FILE_SCANNED, &body)
                .await
                .map_err(|e| transient(&id)(&e))?;
        }
        Verdict::Infected(signature) => {
            metrics::counter!("filestore_files_quarantined_total").increment(1);
            let reason = format!(
                "malware detected by {} scanner: {signature}",
                p.scanner.name()
            );
            tracing::warn!(file = %id, %signature, "quarantined");
            p.store
                .apply_event(&id, FileEvent::MalwareFound, Some(&reason))
                .await
                .map_err(|e| transient(&id)(&e))?;
        }
    }
    Ok(())
}

async fn chunk(p: &Arc<Pipeline>, msg: FileMessage) -> Result<(), StageError> {
    let Some(file) = file_in_processing(p, &msg.file_id, &msg.owner).await? else {
        return Ok(());
    };
    let created = chunk_file(p, &file).await?;
    let body = serde_json::to_vec(&created).map_err(|e| transient(&file.id)(&e))?;
    p.queue
        .publish(routing::CHUNK_CREATED, &body)
        .await
        .map_err(|e| transient(&file.id)(&e))
}

/// Splits `file`'s raw object into chunks and stores those its owner does not have yet; the
/// manifest that indexing records.
async fn chunk_file(p: &Arc<Pipeline>, file: &FileRecord) -> Result<ChunksCreated, StageError> {
    let id = file.id;
    let (Some(expected_size), Some(expected_sha)) =
        (file.uploaded_size, file.uploaded_sha256.clone())
    else {
        return Err(StageError::Permanent(
            id,
            "no verified upload is recorded".into(),
        ));
    };
    let tenant = p
        .tenants
        .secret_for(&file.owner)
        .await
        .map_err(|e| transient(&id)(&e))?;
    let mut reader = p
        .objects
        .open(&file.raw_key)
        .await
        .map_err(|e| open_error(&id, e))?;

    let mut chunker = StreamChunker::new(p.params);
    let mut whole = Sha256::new();
    let mut read = 0u64;
    let mut buf = vec![0u8; READ_BUF];
    let mut eof = false;
    let mut in_flight = FuturesOrdered::new();
    let mut entries = Vec::new();
    let mut index = 0u32;
    loop {
        while !eof && chunker.wants_more() {
            let want = chunker.room().clamp(1, READ_BUF);
            let n = reader
                .read(&mut buf[..want])
                .await
                .map_err(|e| transient(&id)(&e))?;
            if n == 0 {
                eof = true;
            } else {
                whole.update(&buf[..n]);
                chunker.push(&buf[..n]);
                read += n as u64;
            }
        }
        let Some(c) = chunker.next_chunk(eof) else {
            break;
        };
        if in_flight.len() >= p.config.chunk_parallelism.max(1)
            && let Some(done) = in_flight.next().await
        {
            entries.push(done?);
        }
        // Spawned, so each chunk's store and index writes proceed while this loop reads on.
        let job = store_chunk(p.clone(), tenant.clone(), file.owner.clone(), id, index, c);
        in_flight.push_back(async move {
            AbortOnDrop::spawn(job).await.unwrap_or_else(|e| {
                Err(StageError::Transient(
                    Some(id),
                    format!("chunk task died: {e}"),
                ))
            })
        });
        index += 1;
    }
    while let Some(done) = in_flight.next().await {
        entries.push(done?);
    }
    // The raw object must still be exactly what the client uploaded and finalize verified.
    if read != expected_size || hex::encode(whole.finalize()) != expected_sha {
        return Err(StageError::Permanent(
            id,
            "raw object no longer matches the verified upload".into(),
        ));
    }
    Ok(ChunksCreated {
        v: messages::SCHEMA_VERSION,
        file_id: id,
        owner: file.owner.clone(),
        chunks: entries,
    })
}

/// Hashes one chunk and stores it unless the tenant already has it (see
/// [`filestore_ports::chunk_writer`]).
async fn store_chunk(
    p: Arc<Pipeline>,
    tenant: TenantSecret,
    owner: OwnerId,
    file: FileId,
    index: u32,
    chunk: Chunk,
) -> Result<ChunkEntry, StageError> {
    let fail = transient(&file);
    let Chunk { offset, data } = chunk;
    let length = u32::try_from(data.len()).map_err(|e| fail(&e))?;
    let (h, data) = tokio::task::spawn_blocking(move || (sha256(&data), data))
        .await
        .map_err(|e| fail(&e))?;
    let stored = store_chunk_once(
        p.store.as_ref(),
        p.objects.as_ref(),
        &tenant,
        &owner,
        data,
        h,
        p.codec,
    )
    .await
    .map_err(|e| fail(&e))?;
    Ok(ChunkEntry {
        index,
        offset,
        length,
        id: stored.id,
        sha256: h,
        stored_size: stored.stored_size,
    })
}

/// A manifest must tile the file exactly: contiguous, in order, summing to its size.
pub fn manifest_problem(chunks: &[ChunkEntry], size: u64) -> Option<String> {
    let mut next = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        if c.index as usize != i || c.offset != next || c.length == 0 {
            return Some(format!("chunk {i} does not follow the one before it"));
        }
        next += u64::from(c.length);
    }
    (next != size).then(|| format!("chunks cover {next} bytes of a {size}-byte file"))
}

async fn index(p: &Pipeline, msg: ChunksCreated) -> Result<(), StageError> {
    let Some(file) = file_in_processing(p, &msg.file_id, &msg.owner).await? else {
        return Ok(());
    };
    index_manifest(p, &file, &msg.chunks).await
}

/// Records `chunks` as `file`'s content, which makes it ready, and drops the raw upload.
async fn index_manifest(
    p: &Pipeline,
    file: &FileRecord,
    chunks: &[ChunkEntry],
) -> Result<(), StageError> {
    let id = file.id;
    if let Some(problem) = manifest_problem(chunks, file.size) {
        return Err(StageError::Permanent(
            id,
            format!("bad chunk manifest: {problem}"),
        ));
    }
    match p.store.index_file(&id, chunks).await {
        Ok(_) => {}
        Err(StoreError::Illegal(_) | StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(transient(&id)(&e)),
    }
    metrics::counter!("filestore_files_ready_total").increment(1);
    // The chunks now hold the content; the raw upload would only be a second copy.
    p.objects
        .delete(&file.raw_key)
        .await
        .map_err(|e| transient(&id)(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u32, offset: u64, length: u32) -> ChunkEntry {
        ChunkEntry {
            index,
            offset,
            length,
            id: filestore_domain::ChunkId([index as u8; 32]),
            sha256: [0; 32],
            stored_size: 0,
        }
    }

    #[test]
    fn a_contiguous_manifest_is_accepted() {
        assert_eq!(
            manifest_problem(&[entry(0, 0, 10), entry(1, 10, 5)], 15),
            None
        );
        assert_eq!(manifest_problem(&[], 0), None);
    }

    #[test]
    fn gaps_overlaps_and_short_manifests_are_rejected() {
        assert!(manifest_problem(&[entry(0, 0, 10), entry(1, 11, 5)], 16).is_some());
        assert!(manifest_problem(&[entry(0, 0, 10), entry(2, 10, 5)], 15).is_some());
        assert!(manifest_problem(&[entry(0, 0, 10)], 11).is_some());
    }
}
