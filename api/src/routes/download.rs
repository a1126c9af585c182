//! Download descriptors, the plaintext stream, and signed chunk objects.
use std::collections::HashSet;
use std::io;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use filestore_domain::codec::decode;
use filestore_domain::keys::TenantSecret;
use filestore_domain::messages::ChunkEntry;
use filestore_domain::signing::SignatureError;
use filestore_domain::{ChunkId, FileStatus, OwnerId};
use filestore_ports::FileRecord;
use filestore_ports::clock::now_secs;
use futures::StreamExt;

use crate::auth::User;
use crate::dto::rules::{Binary, IdList};
use crate::dto::{ChunkLink, Descriptor, DescriptorBatch, DescriptorItem, IdsQuery};
use crate::error::{ApiError, InternalErrors, Problem, ProblemCode};
use crate::range::{RangeRequest, parse_range};
use crate::routes::{ApiPath, ApiQuery, live_file};
use crate::state::AppState;

/// Chunks decrypted ahead of the one being sent, to keep the stream busy.
const STREAM_PREFETCH: usize = 4;
const MAX_BATCH_IDS: usize = 100;

fn ensure_downloadable(file: &FileRecord) -> Result<(), ApiError> {
    match file.status {
        FileStatus::Ready => Ok(()),
        FileStatus::Quarantined => Err(ApiError::new(
            ProblemCode::FileQuarantined,
            file.status_reason
                .clone()
                .unwrap_or_else(|| "the file was quarantined as malware".into()),
        )),
        FileStatus::Failed => Err(ApiError::new(
            ProblemCode::FileFailed,
            file.status_reason
                .clone()
                .unwrap_or_else(|| "processing the file failed".into()),
        )),
        other => Err(ApiError::new(
            ProblemCode::NotReady,
            format!("the file is {other}; try again when it is ready"),
        )),
    }
}

/// What a chunk URL's signature covers: the chunk id as the URL spells it.
fn chunk_resource(id: impl std::fmt::Display) -> String {
    format!("chunk:{id}")
}

async fn build_descriptor(
    state: &AppState,
    owner: &OwnerId,
    id: &str,
) -> Result<Descriptor, ApiError> {
    let file = live_file(state, owner, id).await?;
    ensure_downloadable(&file)?;
    let tenant = state.tenants.secret_for(owner).await?;
    let chunks = state.store.file_chunks(&file.id).await?;
    let expires_at = now_secs() + state.config.signed_url_ttl;
    let base = state
        .config
        .public_url
        .as_deref()
        .unwrap_or("")
        .trim_end_matches('/');
    let ttl = std::time::Duration::from_secs(state.config.signed_url_ttl);
    let mut links = Vec::with_capacity(chunks.len());
    for c in &chunks {
        // Straight from object storage where it can sign a URL; through the API otherwise.
        let url = match state.objects.presign_get(&c.id.object_key(), ttl).await? {
            Some(url) => url,
            None => format!(
                "{base}/v1/chunks/{}?exp={expires_at}&sig={}",
                c.id,
                state.signer.sign(&chunk_resource(c.id), expires_at)
            ),
        };
        links.push(ChunkLink {
            index: c.index,
            offset: c.offset,
            length: c.length,
            id: c.id,
            url,
            key: tenant.chunk_key(&c.sha256).to_hex(),
            sha256: hex::encode(c.sha256),
            stored_size: c.stored_size,
        });
    }
    Ok(Descriptor {
        file_id: file.id,
        path: file.path.clone(),
        size: file.size,
        sha256: file.uploaded_sha256.clone().unwrap_or_default(),
        content_type: file.content_type.clone(),
        expires_at,
        chunks: links,
    })
}

/// Download descriptor: every chunk with a signed URL, its key and its plaintext hash.
#[utoipa::path(get, path = "/v1/file/{id}", params(("id" = String, Path, description = "A file id.")),
    responses(
        (status = 200, description = "How to fetch, decrypt and check each chunk.", body = Descriptor),
        (status = 403, description = "`file_quarantined`: the scan found malware.", body = Problem),
        (status = 404, description = "`not_found`: no such file of the caller's (or it is in trash).", body = Problem),
        (status = 409, description = "`not_ready` (still uploading or processing) or `file_failed`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn descriptor(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Descriptor>, ApiError> {
    build_descriptor(&state, &owner, &id).await.map(Json)
}

/// Descriptors of several files (`?id=a,b,c`); each item succeeds or fails on its own.
#[utoipa::path(get, path = "/v1/files", params(("id" = IdList, Query)),
    responses(
        (status = 200, description = "One item per distinct id, in request order: a descriptor, or the problem `GET /v1/file/{id}` would have answered.", body = DescriptorBatch),
        (status = 400, description = "`invalid_request`, or `invalid_batch`: no ids, or more than 100.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn descriptor_batch(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(q): ApiQuery<IdsQuery>,
) -> Result<(InternalErrors, Json<DescriptorBatch>), ApiError> {
    let ids = distinct_ids(&q.id);
    if ids.is_empty() || ids.len() > MAX_BATCH_IDS {
        return Err(ApiError::new(
            ProblemCode::InvalidBatch,
            format!("ask for 1 to {MAX_BATCH_IDS} ids, got {}", ids.len()),
        ));
    }
    let mut files = Vec::with_capacity(ids.len());
    let mut internal = InternalErrors::default();
    for id in ids {
        let item = match build_descriptor(&state, &owner, id).await {
            Ok(d) => DescriptorItem {
                id: id.to_owned(),
                descriptor: Some(d),
                error: None,
            },
            Err(e) if e.status().is_server_error() => {
                return Err(e);
            }
            Err(e) => DescriptorItem {
                id: id.to_owned(),
                descriptor: None,
                error: Some(e.into_item(&mut internal)),
            },
        };
        files.push(item);
    }
    Ok((internal, Json(DescriptorBatch { files })))
}

/// Distinct ids in request order (a repeated id is answered once).
pub fn distinct_ids(list: &str) -> Vec<&str> {
    let mut seen = HashSet::new();
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && seen.insert(*s))
        .collect()
}

/// Fetches, decrypts and verifies one chunk.
pub(crate) async fn open_chunk(
    state: AppState,
    tenant: TenantSecret,
    entry: ChunkEntry,
) -> Result<Bytes, io::Error> {
    let stored = state
        .objects
        .get_bytes(&entry.id.object_key())
        .await
        .map_err(io::Error::other)?;
    tokio::task::spawn_blocking(move || {
        let key = tenant.chunk_key(&entry.sha256);
        decode(
            &stored,
            &entry.id,
            &key,
            &entry.sha256,
            entry.length as usize,
        )
        .map(Bytes::from)
        .map_err(|e| {
            metrics::counter!("filestore_integrity_failures_total").increment(1);
            tracing::error!(chunk = %entry.id, error = %e, "stored chunk failed verification");
            io::Error::new(io::ErrorKind::InvalidData, e)
        })
    })
    .await
    .map_err(io::Error::other)?
}

fn etag_matches(if_none_match: Option<&HeaderValue>, etag: &str) -> bool {
    if_none_match
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// The plaintext, streamed and verified chunk by chunk; supports one `Range` and `ETag`.
///
/// A chunk that fails verification aborts the stream: the client sees a truncated transfer
/// (short of `Content-Length`), never wrong bytes.
#[utoipa::path(get, path = "/v1/files/{id}/content",
    params(
        ("id" = String, Path, description = "A file id."),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`; anything else is ignored."),
        ("If-None-Match" = Option<String>, Header, description = "ETags (the file's quoted SHA-256) or `*`."),
    ),
    responses(
        (status = 200, description = "The whole file, in its content type.", content_type = "*/*", body = Binary,
            headers(("ETag" = String, description = "The file's SHA-256, quoted."), ("Accept-Ranges" = String, description = "`bytes`."))),
        (status = 206, description = "The requested range.", content_type = "*/*", body = Binary,
            headers(("Content-Range" = String, description = "`bytes first-last/size`."), ("ETag" = String, description = "The file's SHA-256, quoted."))),
        (status = 304, description = "Not modified: `If-None-Match` names the file's ETag.",
            headers(("ETag" = String, description = "The file's SHA-256, quoted."))),
        (status = 403, description = "`file_quarantined`: the scan found malware.", body = Problem),
        (status = 404, description = "`not_found`: no such file of the caller's (or it is in trash).", body = Problem),
        (status = 409, description = "`not_ready` (still uploading or processing) or `file_failed`.", body = Problem),
        (status = 416, description = "`range_not_satisfiable`: the range starts past the end.", body = Problem,
            headers(("Content-Range" = String, description = "`bytes */size`."))),
    ),
    security(("bearer" = [])))]
pub async fn content(
    State(state): State<AppState>,
    User(owner): User,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let file = live_file(&state, &owner, &id).await?;
    ensure_downloadable(&file)?;
    let etag = format!(
        "\"{}\"",
        file.uploaded_sha256.as_deref().unwrap_or_default()
    );
    let etag_value = HeaderValue::from_str(&etag).map_err(ApiError::internal)?;
    if etag_matches(headers.get(header::IF_NONE_MATCH), &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match parse_range(range_header, file.size) {
        RangeRequest::Full => (StatusCode::OK, 0, file.size),
        RangeRequest::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end + 1),
        RangeRequest::Unsatisfiable => {
            let mut resp = ApiError::new(
                ProblemCode::RangeNotSatisfiable,
                format!("the file has {} bytes", file.size),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", file.size)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let tenant = state.tenants.secret_for(&owner).await?;
    let wanted: Vec<(ChunkEntry, usize, usize)> = state
        .store
        .file_chunks(&file.id)
        .await?
        .into_iter()
        .filter(|c| c.offset < end && c.offset + u64::from(c.length) > start)
        .map(|c| {
            let lo = start.saturating_sub(c.offset) as usize;
            let hi = (end.min(c.offset + u64::from(c.length)) - c.offset) as usize;
            (c, lo, hi)
        })
        .collect();
    let body = futures::stream::iter(wanted)
        .map(move |(entry, lo, hi)| {
            let fetch = open_chunk(state.clone(), tenant.clone(), entry);
            async move { fetch.await.map(|plain| plain.slice(lo..hi)) }
        })
        .buffered(STREAM_PREFETCH);
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &file.content_type)
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag_value)
        .header(header::CACHE_CONTROL, "private, no-cache");
    if status == StatusCode::PARTIAL_CONTENT {
        resp = resp.header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", start, end - 1, file.size),
        );
    }
    resp.body(Body::from_stream(body))
        .map_err(ApiError::internal)
}

/// The query of a signed chunk URL, read leniently so that a missing or malformed part gets
/// its own stable code instead of the query parser's message.
#[derive(Debug, serde::Deserialize)]
pub struct SignatureParams {
    exp: Option<String>,
    sig: Option<String>,
}

/// Checks a signed chunk URL's signature; returns the seconds it stays valid.
fn check_signature(state: &AppState, id: &str, q: &SignatureParams) -> Result<u64, ApiError> {
    let (Some(exp), Some(sig)) = (q.exp.as_deref(), q.sig.as_deref()) else {
        return Err(ApiError::new(
            ProblemCode::MissingSignature,
            "a chunk URL needs its exp and sig parameters; take it from a download descriptor",
        ));
    };
    let invalid = |e: SignatureError| ApiError::new(ProblemCode::InvalidSignature, e.to_string());
    let exp: u64 = exp.parse().map_err(|_| invalid(SignatureError::Invalid))?;
    let now = now_secs();
    state
        .signer
        .verify(&chunk_resource(id), exp, sig, now)
        .map_err(|e| match e {
            SignatureError::Expired => ApiError::new(ProblemCode::UrlExpired, e.to_string()),
            SignatureError::Invalid => invalid(e),
        })?;
    Ok(exp.saturating_sub(now))
}

/// A stored chunk (ciphertext) by signed URL, cacheable only while the URL is valid.
#[utoipa::path(get, path = "/v1/chunks/{id}",
    params(
        ("id" = String, Path, description = "A chunk id, as a descriptor lists it."),
        ("exp" = u64, Query, description = "Unix seconds after which the URL stops working."),
        ("sig" = String, Query, description = "The URL's signature."),
    ),
    responses(
        (status = 200, description = "The stored (encrypted) chunk.", content_type = "application/octet-stream", body = Binary,
            headers(("Cache-Control" = String, description = "`private, max-age=<seconds the URL stays valid>`."), ("ETag" = String, description = "The chunk id, quoted."))),
        (status = 400, description = "`invalid_request`: a parameter given twice.", body = Problem),
        (status = 401, description = "`missing_signature`: `exp` or `sig` is missing.", body = Problem),
        (status = 403, description = "`invalid_signature` or `url_expired`.", body = Problem),
        (status = 404, description = "`not_found`: no such chunk.", body = Problem),
    ))]
pub async fn chunk(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SignatureParams>,
) -> Result<Response, ApiError> {
    // The signature first: without a valid one, no answer says anything about the id.
    let valid_for = check_signature(&state, &id, &q)?;
    let chunk_id: ChunkId = id
        .parse()
        .map_err(|_| ApiError::new(ProblemCode::NotFound, "no such chunk"))?;
    let bytes = state
        .objects
        .get_bytes(&chunk_id.object_key())
        .await
        .map_err(|e| match e {
            filestore_ports::ObjectError::NotFound(_) => {
                ApiError::new(ProblemCode::NotFound, "no such chunk")
            }
            other => other.into(),
        })?;
    // The bytes never change (a chunk's id names its content), but the URL is a grant that
    // ends: a shared cache that kept the answer past `exp` would keep serving it to anyone
    // holding the URL, after expiry and after a purge. So only the client's own cache may
    // keep it, and no longer than the signature is valid.
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("private, max-age={valid_for}"),
            ),
            (header::ETAG, format!("\"{chunk_id}\"")),
        ],
        bytes,
    )
        .into_response())
}
