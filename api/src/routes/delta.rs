//! Delta uploads: a client that chunks a new version with the server's parameters asks which
//! chunks the server lacks, sends only those, and has the server assemble the file's raw
//! object from its chunks. The file then goes through finalize and the pipeline like any
//! other (scanned, re-chunked, indexed), so a delta upload is checked exactly as a full one.
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use filestore_domain::codec::CodecOptions;
use filestore_domain::keys::sha256;
use filestore_domain::messages::ChunkEntry;
use filestore_ports::chunk_writer::store_chunk;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::User;
use crate::dto::UploadReceipt;
use crate::dto::rules::{Binary, Sha256Hex};
use crate::encoding::BodyEncoding;
use crate::error::{ApiError, Problem, ProblemCode};
use crate::routes::download::open_chunk;
use crate::routes::upload::{attempt_key, record_attempt, taking_content};
use crate::routes::{ApiBytes, ApiJson, ApiPath};
use crate::state::AppState;
use crate::validate;

/// Chunks asked about, or listed for an assembly, in one request at most.
const MAX_CHUNKS: usize = 100_000;
/// Chunks decrypted ahead while assembling.
const ASSEMBLY_PREFETCH: usize = 4;

/// The content-defined chunking parameters this server uses; a client that cuts with the same
/// ones finds the same chunks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chunking {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChunkHashes {
    /// Plaintext SHA-256 (hex) of each chunk, at most 100,000.
    #[schema(value_type = Vec<Sha256Hex>, max_items = 100000)]
    pub sha256: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkRef {
    #[schema(value_type = Sha256Hex)]
    pub sha256: String,
    /// 1 to the chunking's `maxSize` bytes.
    #[schema(minimum = 1, maximum = 8388608)]
    #[serde(deserialize_with = "crate::dto::whole::u32")]
    pub length: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Assembly {
    /// The file's chunks in order; together exactly the registered size; at most the server's
    /// `--max-assemble-chunks`.
    #[schema(max_items = 100000)]
    pub chunks: Vec<ChunkRef>,
}

/// Chunking parameters.
#[utoipa::path(get, path = "/v1/chunking",
    responses((status = 200, description = "The parameters of this server's chunking.", body = Chunking)),
    security(("bearer" = [])))]
pub async fn chunking(State(state): State<AppState>, _user: User) -> Json<Chunking> {
    let p = state.chunk_params;
    Json(Chunking {
        algorithm: "fastcdc-2020".into(),
        min_size: p.min,
        avg_size: p.avg,
        max_size: p.max,
    })
}

fn hashes(list: &[String]) -> Result<Vec<[u8; 32]>, ApiError> {
    if list.len() > MAX_CHUNKS {
        return Err(ApiError::new(
            ProblemCode::TooManyChunks,
            format!("at most {MAX_CHUNKS} chunks a request, got {}", list.len()),
        ));
    }
    list.iter()
        .map(|h| {
            let hex_text = validate::sha256_hex(h)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(hex_text, &mut out)
                .map_err(|e| ApiError::new(ProblemCode::InvalidChecksum, e.to_string()))?;
            Ok(out)
        })
        .collect()
}

/// Which of these chunks the server does not have yet (for the caller).
#[utoipa::path(post, path = "/v1/chunks/missing", request_body = ChunkHashes,
    responses(
        (status = 200, description = "The hashes the server lacks, in request order, in lowercase.", body = ChunkHashes),
        (status = 400, description = "`invalid_request`, `invalid_checksum` or `too_many_chunks`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn missing(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<ChunkHashes>,
) -> Result<Json<ChunkHashes>, ApiError> {
    let wanted = hashes(&req.sha256)?;
    let tenant = state.tenants.secret_for(&owner).await?;
    let ids: Vec<String> = wanted
        .iter()
        .map(|h| tenant.chunk_id(h).to_string())
        .collect();
    let known: std::collections::HashSet<String> = state
        .store
        .known_chunks(&owner, &ids)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let sha256 = req
        .sha256
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !known.contains(*id))
        .map(|(h, _)| h.to_ascii_lowercase())
        .collect();
    Ok(Json(ChunkHashes { sha256 }))
}

/// Store one chunk (its plaintext, checked against the SHA-256 it is named by), sent as is or
/// with `Content-Encoding: zstd`.
#[utoipa::path(put, path = "/v1/chunks/{id}/content",
    params(("id" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "The chunk's plaintext SHA-256.")),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The chunk's plaintext (at most the chunking's `maxSize` bytes), as is or with `Content-Encoding: zstd`."),
    responses(
        (status = 204, description = "Stored (or already stored)."),
        (status = 400, description = "`checksum_mismatch` (the bytes are not the chunk the path names), `bad_encoding` or `body_read_failed`.", body = Problem),
        (status = 413, description = "`chunk_too_large` or `body_too_large`.", body = Problem),
        (status = 415, description = "`unsupported_encoding`: a `Content-Encoding` other than identity or zstd.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn put_chunk(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<StatusCode, ApiError> {
    let [claimed] = hashes(std::slice::from_ref(&name))?[..] else {
        return Err(ApiError::internal("one hash in, one out"));
    };
    let sent = body.len() as u64;
    let encoding = BodyEncoding::of(&headers)?;
    let max = state.chunk_params.max;
    let (actual, plain) = tokio::task::spawn_blocking(move || {
        encoding
            .decode(body, max as usize)
            .map(|plain| (sha256(&plain), plain))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e.code {
        ProblemCode::BodyTooLarge => ApiError::new(
            ProblemCode::ChunkTooLarge,
            format!("a chunk is at most {max} bytes"),
        ),
        _ => e,
    })?;
    if actual != claimed {
        return Err(ApiError::new(
            ProblemCode::ChecksumMismatch,
            "the chunk does not match the SHA-256 it was sent under",
        ));
    }
    let tenant = state.tenants.secret_for(&owner).await?;
    let stored = store_chunk(
        state.store.as_ref(),
        state.objects.as_ref(),
        &tenant,
        &owner,
        plain,
        claimed,
        CodecOptions::default(),
    )
    .await
    .map_err(|e| match e {
        filestore_ports::chunk_writer::ChunkWriteError::Store(s) => ApiError::from(s),
        filestore_ports::chunk_writer::ChunkWriteError::Objects(o) => ApiError::from(o),
        other => ApiError::internal(other),
    })?;
    if !stored.deduplicated {
        metrics::counter!("filestore_delta_chunk_bytes_received_total").increment(sent);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Build a registered file's raw object from chunks the server has; then finalize it.
#[utoipa::path(post, path = "/v1/files/{id}/assemble", params(("id" = String, Path, description = "The file id registration answered.")),
    request_body = Assembly,
    responses(
        (status = 200, description = "Assembled and stored, as if uploaded; finalize next.", body = UploadReceipt),
        (status = 400, description = "`invalid_request`, `invalid_checksum`, `invalid_chunk_length` or `size_mismatch` (the lengths do not add up to the registered size).", body = Problem),
        (status = 404, description = "`not_found`: no such file of the caller's.", body = Problem),
        (status = 409, description = "`not_uploading` or `chunk_missing` (send it first).", body = Problem),
        (status = 413, description = "`too_many_chunks`: more than the server's limit (`--max-assemble-chunks`).", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn assemble(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<Assembly>,
) -> Result<Json<UploadReceipt>, ApiError> {
    // Everything that bounds what this request may make the server write is checked before
    // a byte is written: how many chunks it names, each one's length, and their total.
    if req.chunks.len() > state.config.max_assemble_chunks {
        return Err(ApiError::new(
            ProblemCode::TooManyChunksToAssemble,
            format!(
                "an assembly names at most {} chunks, got {}",
                state.config.max_assemble_chunks,
                req.chunks.len()
            ),
        ));
    }
    let max = state.chunk_params.max;
    if let Some((i, c)) = req
        .chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.length == 0 || c.length > max)
    {
        return Err(ApiError::new(
            ProblemCode::InvalidChunkLength,
            format!("chunk {i} says {} bytes; a chunk has 1 to {max}", c.length),
        ));
    }
    let file = taking_content(&state, &owner, &id).await?;
    let shas = hashes(
        &req.chunks
            .iter()
            .map(|c| c.sha256.clone())
            .collect::<Vec<_>>(),
    )?;
    let total: u64 = req.chunks.iter().map(|c| u64::from(c.length)).sum();
    if total != file.size {
        return Err(ApiError::new(
            ProblemCode::SizeMismatch,
            format!(
                "the chunks add up to {total} bytes; {} were declared",
                file.size
            ),
        ));
    }
    let tenant = state.tenants.secret_for(&owner).await?;
    let ids: Vec<String> = shas
        .iter()
        .map(|h| tenant.chunk_id(h).to_string())
        .collect();
    let known: std::collections::HashMap<String, u64> = state
        .store
        .known_chunks(&owner, &ids)
        .await?
        .into_iter()
        .collect();
    if let Some(i) = ids.iter().position(|id| !known.contains_key(id)) {
        return Err(ApiError::new(
            ProblemCode::ChunkMissing,
            format!(
                "chunk {} ({}) is not stored; send it first",
                i, req.chunks[i].sha256
            ),
        ));
    }
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(shas.len());
    for (i, (h, c)) in shas.iter().zip(&req.chunks).enumerate() {
        entries.push(ChunkEntry {
            index: u32::try_from(i).map_err(ApiError::internal)?,
            offset,
            length: c.length,
            id: tenant.chunk_id(h),
            sha256: *h,
            stored_size: 0,
        });
        offset += u64::from(c.length);
    }
    let attempt_key = attempt_key(&file);
    let source = state.clone();
    let body = futures::stream::iter(entries)
        .map(move |entry| open_chunk(source.clone(), tenant.clone(), entry))
        .buffered(ASSEMBLY_PREFETCH);
    let stored = state
        .objects
        .put_stream_exact(&attempt_key, Box::pin(body), file.size)
        .await?;
    record_attempt(&state, &file, &attempt_key, &stored).await?;
    Ok(Json(UploadReceipt::new(file.id, &stored)))
}
