//! HTTP handlers, grouped by what the client is doing.
pub mod bundle;
pub mod delta;
pub mod download;
pub mod ops;
pub mod tree;
pub mod upload;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use filestore_adapters::FileRecord;
use filestore_domain::{FileId, FileStatus, OwnerId};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// `Json<T>` whose rejections are problem documents with the `invalid_request` code.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_request",
                rejection.body_text(),
            )),
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
            .map_err(|_| {
                ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "not_found",
                    "no such resource",
                )
            })
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
            .map_err(|rejection| ApiError::bad_request("invalid_request", rejection.body_text()))
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
