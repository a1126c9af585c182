//! HTTP handlers, grouped by what the client is doing.
pub mod bundle;
pub mod delta;
pub mod download;
pub mod ops;
pub mod tree;
pub mod upload;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use filestore_domain::{FileId, FileStatus, OwnerId};
use filestore_ports::FileRecord;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ProblemCode};
use crate::state::AppState;

/// `Json<T>` whose rejections are problem documents: `invalid_request` for what does not
/// parse, `body_too_large` (413) past the route's limit, `request_timeout` (408) for a body
/// that stopped arriving.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            // Every body this API takes is an object. Serde would also read a struct from an
            // array of its fields in order, which no schema allows, so only objects go on.
            Ok(axum::Json(v)) if !v.is_object() => Err(ApiError::new(
                ProblemCode::InvalidRequest,
                "the JSON body must be an object",
            )),
            Ok(axum::Json(v)) => serde_json::from_value(v).map(Self).map_err(|e| {
                ApiError::new(
                    ProblemCode::InvalidRequest,
                    format!("Failed to deserialize the JSON body into the target type: {e}"),
                )
            }),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::body_too_large("the JSON body is larger than this route accepts"),
            ),
            Err(rejection) if crate::server::is_body_timeout(&rejection) => {
                Err(ApiError::request_timeout())
            }
            Err(rejection) => Err(ApiError::new(
                ProblemCode::InvalidRequest,
                rejection.body_text(),
            )),
        }
    }
}

/// A whole body in memory, whose rejections are problem documents: `body_too_large` (413)
/// past the route's limit, `request_timeout` (408) or `body_read_failed` (400) otherwise.
pub struct ApiBytes(pub bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(Self(b)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::body_too_large("the body is larger than this route accepts"),
            ),
            Err(rejection) => Err(ApiError::body_read(&rejection)),
        }
    }
}

/// `Path<T>` whose rejections (say, a path segment that is not UTF-8) answer like a missing
/// resource: a name that cannot be an id names nothing.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Self(v))
            .map_err(|_| ApiError::new(ProblemCode::NotFound, "no such resource"))
    }
}

/// `Query<T>` whose rejections are problem documents with the `invalid_request` code.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|rejection| ApiError::new(ProblemCode::InvalidRequest, rejection.body_text()))
    }
}

/// The caller's file, or 404: a foreign id and a missing id get the same answer.
pub async fn owned_file(
    state: &AppState,
    owner: &OwnerId,
    id: &str,
) -> Result<FileRecord, ApiError> {
    let id: FileId = id.parse().map_err(|_| ApiError::not_found())?;
    match state.store.get_file(&id).await? {
        Some(f) if &f.owner == owner && f.status != FileStatus::Deleted => Ok(f),
        _ => Err(ApiError::not_found()),
    }
}

/// The caller's file unless it is in trash: a trashed file's descriptor, content and metadata
/// answer exactly like a missing file's (the trash and versions routes still reach it by path).
pub async fn live_file(
    state: &AppState,
    owner: &OwnerId,
    id: &str,
) -> Result<FileRecord, ApiError> {
    let file = owned_file(state, owner, id).await?;
    // Most files are still the head of the path they were registered at: one key lookup.
    // Moved files and older versions take the slower query over the owner's versions.
    let trashed = match state.store.entry(owner, &file.path).await? {
        Some(head) if head.file_id == file.id => head.trashed_at_ms.is_some(),
        _ => state.store.in_trash(owner, &file.id).await?,
    };
    if trashed {
        return Err(ApiError::not_found());
    }
    Ok(file)
}
