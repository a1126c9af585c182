//! `POST /v1/files/bundle`: the contents of many small registered files in one request, each
//! stored, checked and finalized as if it had come through its own `PUT .../content` and
//! `POST .../finalize`. A malformed bundle stores nothing; after that each file stands alone.
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use filestore_domain::bundle::{self, Part};
use futures::StreamExt;

use crate::auth::User;
use crate::dto::rules::Binary;
use crate::dto::{BundleResult, BundleResults, FinalizeResponse};
use crate::encoding::BodyEncoding;
use crate::error::{ApiError, InternalErrors, Problem, ProblemCode};
use crate::routes::ApiBytes;
use crate::routes::upload::{attempt_key, finalize_file, record_attempt, taking_content};
use crate::state::AppState;

/// The media type of a bundle (the server reads any body sent here as one).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.filestore.bundle";
/// The most content one bundle may carry, decoded.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;
/// Files of one bundle stored at once.
const PARALLEL: usize = 8;

/// Upload and finalize several small files in one request (see `filestore_domain::bundle`
/// for the layout; the body may be sent with `Content-Encoding: zstd`). One result per file.
#[utoipa::path(post, path = "/v1/files/bundle",
    request_body(content = Binary, content_type = BUNDLE_MEDIA_TYPE,
        description = "A 4-byte big-endian length `n`; `n` bytes of JSON manifest, `{\"files\": [{\"fileId\", \"size\", \"sha256\"}, ...]}` naming registered files; then each file's bytes in manifest order, nothing before, between or after. At most 16 MiB decoded; may be sent with `Content-Encoding: zstd`. The example bundles one file, `hello`, padded so that every byte is ASCII."),
    responses(
        (status = 200, description = "One result per manifest file, in order: finalized (its status and revision), or refused with the problem its own upload and finalize would have answered.", body = BundleResults),
        (status = 400, description = "`bad_bundle` (not a bundle), `invalid_batch` (more files than the server's batch limit), `bad_encoding` or `body_read_failed`.", body = Problem),
        (status = 413, description = "`body_too_large`: over 16 MiB, sent or decoded.", body = Problem),
        (status = 415, description = "`unsupported_encoding`: a `Content-Encoding` other than identity or zstd.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn upload_bundle(
    State(state): State<AppState>,
    User(owner): User,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<(InternalErrors, Json<BundleResults>), ApiError> {
    let encoding = BodyEncoding::of(&headers)?;
    let (decoded, parts) = tokio::task::spawn_blocking(move || {
        let decoded = encoding.decode(body, MAX_BUNDLE_BYTES)?;
        let parts = bundle::decode(&decoded)
            .map_err(|e| ApiError::new(ProblemCode::BadBundle, e.to_string()))?;
        Ok::<_, ApiError>((Bytes::from(decoded), parts))
    })
    .await
    .map_err(ApiError::internal)??;
    if parts.len() > state.config.max_batch {
        return Err(ApiError::new(
            ProblemCode::InvalidBatch,
            format!(
                "a bundle holds 1 to {} files, got {}",
                state.config.max_batch,
                parts.len()
            ),
        ));
    }
    let outcomes: Vec<(String, Result<FinalizeResponse, ApiError>)> = futures::stream::iter(parts)
        .map(|part| {
            let (state, owner, decoded) = (&state, &owner, &decoded);
            async move {
                let file_id = part.item.file_id.clone();
                (
                    file_id,
                    store_and_finalize(state, owner, decoded, part).await,
                )
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut internal = InternalErrors::default();
    let results = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, (file_id, outcome))| {
            let (status, rev, error) = match outcome {
                Ok(done) => (Some(done.status), done.rev, None),
                Err(e) => (None, None, Some(e.into_item(&mut internal))),
            };
            BundleResult {
                index,
                file_id,
                status,
                rev,
                error,
            }
        })
        .collect();
    Ok((internal, Json(BundleResults { results })))
}

async fn store_and_finalize(
    state: &AppState,
    owner: &filestore_domain::OwnerId,
    decoded: &Bytes,
    part: Part,
) -> Result<FinalizeResponse, ApiError> {
    let file = taking_content(state, owner, &part.item.file_id).await?;
    if part.item.size != file.size {
        return Err(ApiError::new(
            ProblemCode::SizeMismatch,
            format!(
                "the bundle holds {} bytes; {} were declared at registration",
                part.item.size, file.size
            ),
        ));
    }
    let attempt_key = attempt_key(&file);
    let stored = state
        .objects
        .put_exact_bytes(&attempt_key, decoded.slice(part.range))
        .await?;
    if !stored.sha256_hex.eq_ignore_ascii_case(&part.item.sha256) {
        state.objects.delete(&attempt_key).await?;
        return Err(ApiError::new(
            ProblemCode::ChecksumMismatch,
            "the bytes do not match the SHA-256 the bundle names",
        ));
    }
    // Recording the attempt moved the file's raw key; finalize checks the object it names.
    let file = record_attempt(state, &file, &attempt_key, &stored).await?;
    metrics::counter!("filestore_upload_bytes_total").increment(stored.size);
    finalize_file(state, file, stored.size, &stored.sha256_hex).await
}
