//! Registering uploads, receiving their bytes, and finalizing them.
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use filestore_domain::FileStatus;
use filestore_domain::messages::{FileMessage, routing};
use filestore_domain::tree::Expect;
use filestore_ports::ObjectError;
use filestore_ports::clock::now_secs;
use filestore_ports::meta::OutboxMessage;
use filestore_ports::{FileRecord, NewFile, StoreError, UploadRecord};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::AsyncReadExt;

use crate::auth::User;
use crate::dto::rules::Binary;
use crate::dto::{
    BatchItem, BatchRegistered, CompletedUpload, DirectPart, DirectUpload, FileMetadata,
    FinalizeRequest, FinalizeResponse, RegisterBatch, RegisterFile, Registered, UploadReceipt,
};
use crate::encoding::BodyEncoding;
use crate::error::{ApiError, InternalErrors, Problem, ProblemCode};
use crate::routes::{ApiJson, ApiPath, live_file, owned_file};
use crate::state::AppState;
use crate::validate;

/// S3 allows at most 10,000 parts, each at least 5 MiB (but the last).
const MAX_PARTS: u64 = 10_000;
const MIN_PART: u64 = 5 * 1024 * 1024;

/// The part size and count of a direct multipart upload of `size` bytes, or `None` when one
/// PUT suits the file better.
pub fn part_layout(size: u64, preferred_part: u64) -> Option<(u64, u64)> {
    let preferred = preferred_part.max(MIN_PART);
    if size <= preferred {
        return None;
    }
    let part = preferred.max(size.div_ceil(MAX_PARTS));
    Some((part, size.div_ceil(part)))
}

/// Presigned URLs for sending the file straight to object storage, where it offers them.
async fn direct_upload(state: &AppState, f: &NewFile) -> Result<Option<DirectUpload>, ApiError> {
    let ttl = state.config.signed_url_ttl;
    let key = f.id.raw_key();
    let expires_at = now_secs() + ttl;
    let preferred = state.config.direct_part_mib.saturating_mul(1024 * 1024);
    let Some((part, count)) = part_layout(f.size, preferred) else {
        return Ok(state
            .objects
            .presign_put(&key, Duration::from_secs(ttl))
            .await?
            .map(|url| DirectUpload {
                url: Some(url),
                method: "PUT".into(),
                expires_at,
                upload_id: None,
                parts: Vec::new(),
            }));
    };
    let count = u32::try_from(count).map_err(ApiError::internal)?;
    let Some(multipart) = state
        .objects
        .presign_multipart(&key, count, Duration::from_secs(ttl))
        .await?
    else {
        return Ok(None);
    };
    let parts = multipart
        .part_urls
        .into_iter()
        .zip(1u32..)
        .map(|(url, number)| {
            let offset = u64::from(number - 1) * part;
            DirectPart {
                number,
                offset,
                length: part.min(f.size - offset),
                url,
            }
        })
        .collect();
    Ok(Some(DirectUpload {
        url: None,
        method: "PUT".into(),
        expires_at,
        upload_id: Some(multipart.upload_id),
        parts,
    }))
}

async fn registered(state: &AppState, f: &NewFile) -> Result<Registered, ApiError> {
    let direct_upload = direct_upload(state, f).await?;
    Ok(Registered {
        file_id: f.id,
        status: FileStatus::Uploading,
        location: format!("/v1/files/{}/content", f.id),
        upload_method: "PUT".into(),
        direct_upload,
    })
}

/// Assembles the parts a client sent straight to storage into the file's raw object.
async fn complete_direct_multipart(
    state: &AppState,
    file: &FileRecord,
    mp: &CompletedUpload,
) -> Result<(), ApiError> {
    let invalid = |detail: String| ApiError::new(ProblemCode::InvalidMultipart, detail);
    if mp.parts.is_empty() {
        return Err(invalid("a multipart upload needs its parts".into()));
    }
    let mut parts = Vec::with_capacity(mp.parts.len());
    for p in &mp.parts {
        let n = i32::try_from(p.number)
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| invalid(format!("part number {} is out of range", p.number)))?;
        parts.push((n, p.etag.clone()));
    }
    parts.sort_by_key(|(n, _)| *n);
    state
        .objects
        .complete_multipart(&file.id.raw_key(), &mp.upload_id, &parts)
        .await
        .map_err(|e| match e {
            ObjectError::Unavailable(_) => ApiError::from(e),
            other => invalid(format!("storage refused to assemble the parts: {other}")),
        })
}

/// A client that sent its bytes straight to object storage: hash what arrived and record it
/// as the file's upload, so finalize checks it like any other.
async fn adopt_direct_upload(state: &AppState, file: FileRecord) -> Result<FileRecord, ApiError> {
    let key = file.id.raw_key();
    let Some(size) = state.objects.head(&key).await? else {
        return Ok(file);
    };
    if size != file.size {
        return Err(ApiError::new(
            ProblemCode::SizeMismatch,
            format!(
                "the object in storage has {size} bytes; {} were declared",
                file.size
            ),
        ));
    }
    let mut reader = state.objects.open(&key).await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| ApiError::from(ObjectError::Io(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sha = hex::encode(hasher.finalize());
    match state.store.record_upload(&file.id, &key, size, &sha).await {
        Ok(_) => {}
        Err(StoreError::NotUploading) => {}
        Err(e) => return Err(e.into()),
    }
    state
        .store
        .get_file(&file.id)
        .await?
        .ok_or_else(|| ApiError::internal("the file vanished while finalizing"))
}

/// Register one upload.
#[utoipa::path(post, path = "/v1/file", request_body = RegisterFile,
    responses(
        (status = 201, description = "Registered: send the bytes to `location`.", body = Registered),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name`, `path_too_long`, `invalid_size`, `invalid_checksum`, `invalid_content_type` or `invalid_parent_rev`.", body = Problem),
        (status = 409, description = "`rev_conflict`: `parentRev` is not the path's revision.", body = Problem),
        (status = 413, description = "`file_too_large`: over the server's limit per file.", body = Problem),
        (status = 507, description = "`upload_budget_exceeded`: the caller's registered, unfinalized bytes would pass the server's budget.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn register_one(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<RegisterFile>,
) -> Result<(axum::http::StatusCode, Json<Registered>), ApiError> {
    let file = validate::registration(&owner, &req, state.config.max_file_size)?;
    check_parent(&state, &file).await?;
    let pending = state.store.pending_upload_bytes(&owner).await?;
    within_budget(&state, pending, file.size)?;
    state
        .store
        .create_files(std::slice::from_ref(&file))
        .await?;
    metrics::counter!("filestore_files_registered_total").increment(1);
    Ok((
        axum::http::StatusCode::CREATED,
        Json(registered(&state, &file).await?),
    ))
}

/// Refuses a registration of `size` bytes that would take the caller's bytes registered and
/// not finalized (`pending`) past `--max-pending-upload-bytes`: each pending byte is one the
/// server may be made to store (a small compressed body, or an assembly of chunks it already
/// has, can expand to the whole declared size), and unfinalized uploads live until they expire.
/// Concurrent registrations may overshoot it by what they add together.
fn within_budget(state: &AppState, pending: u64, size: u64) -> Result<(), ApiError> {
    let budget = state.config.max_pending_upload_bytes;
    if pending.saturating_add(size) <= budget {
        return Ok(());
    }
    Err(ApiError::new(
        ProblemCode::UploadBudgetExceeded,
        format!(
            "{pending} bytes are registered and not finalized; {size} more would pass the budget of {budget} bytes: finalize or let pending uploads expire first"
        ),
    ))
}

/// Register a batch of uploads; every item gets its own result.
#[utoipa::path(post, path = "/v1/files", request_body = RegisterBatch,
    responses(
        (status = 200, description = "One result per file, in request order: registered, or refused with the problem `POST /v1/file` would have answered.", body = BatchRegistered),
        (status = 400, description = "`invalid_request`, or `invalid_batch`: no files, or more than the server's batch limit.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn register_batch(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<RegisterBatch>,
) -> Result<(InternalErrors, Json<BatchRegistered>), ApiError> {
    if req.files.is_empty() || req.files.len() > state.config.max_batch {
        return Err(ApiError::new(
            ProblemCode::InvalidBatch,
            format!(
                "a batch holds 1 to {} files, got {}",
                state.config.max_batch,
                req.files.len()
            ),
        ));
    }
    let mut checked: Vec<Result<NewFile, ApiError>> = Vec::with_capacity(req.files.len());
    for f in &req.files {
        let file = validate::registration(&owner, f, state.config.max_file_size);
        checked.push(match file {
            Ok(file) => check_parent(&state, &file).await.map(|()| file),
            Err(e) => Err(e),
        });
    }
    // Items are admitted in order while the budget lasts; the rest are refused one by one.
    let mut pending = state.store.pending_upload_bytes(&owner).await?;
    for item in &mut checked {
        if let Ok(f) = item {
            match within_budget(&state, pending, f.size) {
                Ok(()) => pending += f.size,
                Err(e) => *item = Err(e),
            }
        }
    }
    let valid: Vec<NewFile> = checked
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    if !valid.is_empty() {
        state.store.create_files(&valid).await?;
        metrics::counter!("filestore_files_registered_total").increment(valid.len() as u64);
    }
    let mut results = Vec::with_capacity(checked.len());
    let mut internal = InternalErrors::default();
    for (index, r) in checked.into_iter().enumerate() {
        results.push(match r {
            Ok(f) => BatchItem {
                index,
                registered: Some(registered(&state, &f).await?),
                error: None,
            },
            Err(e) => BatchItem {
                index,
                registered: None,
                error: Some(e.into_item(&mut internal)),
            },
        });
    }
    Ok((internal, Json(BatchRegistered { results })))
}

/// Stream the raw bytes of a registered file. Returns once they are durably stored. The body
/// may be sent with `Content-Encoding: zstd`; size and SHA-256 are those of the decoded bytes.
#[utoipa::path(put, path = "/v1/files/{id}/content", params(("id" = String, Path, description = "The file id registration answered.")),
    request_body(content = Binary, content_type = "application/octet-stream", description = "Exactly the registered size, as is or with `Content-Encoding: zstd`."),
    responses(
        (status = 200, description = "Stored: what the server received.", body = UploadReceipt),
        (status = 400, description = "`size_mismatch` (fewer bytes than registered), `checksum_mismatch` (not the declared SHA-256), `bad_encoding` or `body_read_failed`.", body = Problem),
        (status = 404, description = "`not_found`: no such file of the caller's.", body = Problem),
        (status = 409, description = "`not_uploading`: the file was finalized; its content cannot change.", body = Problem),
        (status = 413, description = "`body_too_large`: more bytes than registered.", body = Problem),
        (status = 415, description = "`unsupported_encoding`: a `Content-Encoding` other than identity or zstd.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn put_content(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadReceipt>, ApiError> {
    let encoding = BodyEncoding::of(&headers)?;
    let file = taking_content(&state, &owner, &id).await?;
    let attempt_key = attempt_key(&file);
    let stored = state
        .objects
        .put_stream_exact(&attempt_key, encoding.decode_stream(body), file.size)
        .await?;
    record_attempt(&state, &file, &attempt_key, &stored).await?;
    metrics::counter!("filestore_upload_bytes_total").increment(stored.size);
    Ok(Json(UploadReceipt::new(file.id, &stored)))
}

/// A fresh object key for one upload attempt of `file`.
pub(crate) fn attempt_key(file: &FileRecord) -> String {
    file.id.attempt_key(rand::random::<u64>())
}

/// The caller's file, if it still takes content (it is `uploading`).
pub(crate) async fn taking_content(
    state: &AppState,
    owner: &filestore_domain::OwnerId,
    id: &str,
) -> Result<FileRecord, ApiError> {
    let file = owned_file(state, owner, id).await?;
    if file.status != FileStatus::Uploading {
        return Err(ApiError::new(
            ProblemCode::NotUploading,
            format!(
                "the file is {}; its content can no longer change",
                file.status
            ),
        ));
    }
    Ok(file)
}

/// Makes the object one upload attempt stored at `attempt_key` the file's content, if it is
/// what registration declared and the file still takes content; otherwise removes it. Returns
/// the file as it now is.
pub(crate) async fn record_attempt(
    state: &AppState,
    file: &FileRecord,
    attempt_key: &str,
    stored: &filestore_ports::PutOutcome,
) -> Result<FileRecord, ApiError> {
    if file
        .declared_sha256
        .as_deref()
        .is_some_and(|d| d != stored.sha256_hex)
    {
        state.objects.delete(attempt_key).await?;
        return Err(ApiError::new(
            ProblemCode::ChecksumMismatch,
            "the bytes do not match the SHA-256 declared at registration",
        ));
    }
    let recorded = state
        .store
        .record_upload(&file.id, attempt_key, stored.size, &stored.sha256_hex)
        .await;
    match recorded {
        Ok(UploadRecord::Recorded { superseded }) => {
            if let Some(old) = superseded {
                state.objects.delete(&old).await?;
            }
            Ok(FileRecord {
                raw_key: attempt_key.to_owned(),
                uploaded_size: Some(stored.size),
                uploaded_sha256: Some(stored.sha256_hex.clone()),
                ..file.clone()
            })
        }
        Ok(UploadRecord::AlreadyHad) => {
            state.objects.delete(attempt_key).await?;
            // The file moved on meanwhile (a retry of content it already has): as it is now.
            Ok(state.store.get_file(&file.id).await?.ok_or_else(|| {
                ApiError::internal("the file vanished while recording its upload")
            })?)
        }
        Err(e) => {
            state.objects.delete(attempt_key).await?;
            Err(match e {
                StoreError::NotUploading => ApiError::new(
                    ProblemCode::NotUploading,
                    "the file was finalized meanwhile; its content can no longer change",
                ),
                other => other.into(),
            })
        }
    }
}

/// What finalize must see before a file may move on.
fn check_upload(file: &FileRecord, size: u64, sha: &str) -> Result<(), ApiError> {
    if size != file.size {
        return Err(ApiError::new(
            ProblemCode::SizeMismatch,
            format!(
                "finalize says {size} bytes; {} were declared at registration",
                file.size
            ),
        ));
    }
    let (Some(up_size), Some(up_sha)) = (file.uploaded_size, file.uploaded_sha256.as_deref())
    else {
        return Err(ApiError::new(
            ProblemCode::UploadIncomplete,
            "no content has been uploaded for this file yet",
        ));
    };
    if up_size != size {
        return Err(ApiError::new(
            ProblemCode::SizeMismatch,
            format!("the stored object has {up_size} bytes, not {size}"),
        ));
    }
    if up_sha != sha {
        return Err(ApiError::new(
            ProblemCode::ChecksumMismatch,
            "the stored object does not match the checksum",
        ));
    }
    Ok(())
}

/// Verify the uploaded object and start processing; repeating it is harmless.
#[utoipa::path(post, path = "/v1/files/{id}/finalize", params(("id" = String, Path, description = "The file id registration answered.")), request_body = FinalizeRequest,
    responses(
        (status = 200, description = "Finalized (or finalized before with this content): its status and revision.", body = FinalizeResponse),
        (status = 400, description = "`invalid_request`, `invalid_checksum`, `invalid_size`, `invalid_multipart`, `size_mismatch` or `checksum_mismatch` (not what was registered or uploaded).", body = Problem),
        (status = 404, description = "`not_found`: no such file of the caller's.", body = Problem),
        (status = 409, description = "`upload_incomplete`, `upload_conflict`, `already_finalized` (with other content), `rev_conflict`, `parent_is_file`, `path_is_folder` or `destination_exists`.", body = Problem),
        (status = 413, description = "`file_too_large`: a size over the server's limit per file.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn finalize(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<FinalizeRequest>,
) -> Result<Json<FinalizeResponse>, ApiError> {
    let mut file = owned_file(&state, &owner, &id).await?;
    let sha = validate::checksum(&req.checksum)?;
    let size = validate::size(&req.size, state.config.max_file_size)?;
    if file.status == FileStatus::Uploading && file.uploaded_size.is_none() {
        if let Some(mp) = &req.multipart {
            complete_direct_multipart(&state, &file, mp).await?;
        }
        file = adopt_direct_upload(&state, file).await?;
    }
    Ok(Json(finalize_file(&state, file, size, &sha).await?))
}

/// Finalizes `file` (its content recorded) as `size` bytes with SHA-256 `sha` (hex): checks
/// the stored object and moves the file on, announcing it in the same transaction.
pub(crate) async fn finalize_file(
    state: &AppState,
    file: FileRecord,
    size: u64,
    sha: &str,
) -> Result<FinalizeResponse, ApiError> {
    if file.status != FileStatus::Uploading {
        // A repeated finalize of the same content reports where the file is now.
        return match check_upload(&file, size, sha) {
            Ok(()) => Ok(FinalizeResponse {
                file_id: file.id,
                status: file.status,
                rev: head_rev(state, &file).await?,
            }),
            Err(_) => Err(ApiError::new(
                ProblemCode::AlreadyFinalized,
                "this file was finalized with other content",
            )),
        };
    }
    check_upload(&file, size, sha)?;
    if state.objects.head(&file.raw_key).await? != Some(size) {
        return Err(ApiError::new(
            ProblemCode::UploadIncomplete,
            "the uploaded object is missing or incomplete",
        ));
    }
    let announce = OutboxMessage {
        routing_key: routing::FILE_UPLOADED.into(),
        payload: serde_json::to_vec(&FileMessage::new(file.id, file.owner.clone()))
            .map_err(ApiError::internal)?,
    };
    let finalized = state
        .store
        .finalize_upload(&file.id, size, sha, announce)
        .await
        .map_err(|e| match e {
            StoreError::UploadMismatch => ApiError::new(
                ProblemCode::UploadConflict,
                "another upload of this file was recorded meanwhile; finalize with its checksum or upload again",
            ),
            other => other.into(),
        })?;
    state.outbox_wake.notify_one();
    state.tree_wake.notify_waiters();
    metrics::counter!("filestore_files_finalized_total").increment(1);
    let rev = match finalized.rev {
        Some(rev) => Some(rev),
        // A concurrent finalize of the same content committed first.
        None => head_rev(state, &file).await?,
    };
    Ok(FinalizeResponse {
        file_id: file.id,
        status: finalized.status,
        rev,
    })
}

/// The revision `file` has as its path's head, if it still is the head.
async fn head_rev(state: &AppState, file: &FileRecord) -> Result<Option<i64>, ApiError> {
    let head = state.store.entry(&file.owner, &file.path).await?;
    Ok(head.filter(|e| e.file_id == file.id).map(|e| e.rev))
}

/// Refuses early an upload whose `parentRev` already fails, before its bytes are sent;
/// finalize checks again, atomically.
async fn check_parent(state: &AppState, f: &NewFile) -> Result<(), ApiError> {
    if f.expect == Expect::Any {
        return Ok(());
    }
    let live = state
        .store
        .entry(&f.owner, &f.path)
        .await?
        .filter(|e| e.trashed_at_ms.is_none())
        .map(|e| e.rev);
    f.expect.check(live).map_err(StoreError::RevConflict)?;
    Ok(())
}

/// File information and processing status.
#[utoipa::path(get, path = "/v1/files/{id}/metadata", params(("id" = String, Path, description = "A file id.")),
    responses(
        (status = 200, description = "The file and its processing status.", body = FileMetadata),
        (status = 404, description = "`not_found`: no such file of the caller's (or it is in trash).", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn metadata(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<FileMetadata>, ApiError> {
    let file = live_file(&state, &owner, &id).await?;
    Ok(Json(FileMetadata::from(&file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn small_files_take_one_put_and_large_ones_parts_within_s3_limits() {
        assert_eq!(part_layout(10 * MIB, 64 * MIB), None);
        assert_eq!(part_layout(64 * MIB, 64 * MIB), None);
        assert_eq!(part_layout(64 * MIB + 1, 64 * MIB), Some((64 * MIB, 2)));
        // Below S3's 5 MiB minimum part, the minimum is used.
        assert_eq!(part_layout(12 * MIB, MIB), Some((5 * MIB, 3)));
        // A terabyte needs bigger parts to stay within 10,000.
        let (part, count) = part_layout(1 << 40, 64 * MIB).unwrap();
        assert!(count <= 10_000 && part * count >= 1 << 40);
    }
}
