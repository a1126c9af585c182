//! Health, readiness, metrics, the OpenAPI document, and the caller's usage.
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::User;
use crate::dto::UsageResponse;
use crate::error::{ApiError, ProblemCode};
use crate::state::AppState;

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive.", content_type = "text/plain", body = String, example = "ok\n")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the metadata database answers.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready.", content_type = "text/plain", body = String, example = "ready\n"),
    (status = 503, description = "`database_unavailable`: the metadata database does not answer.", body = crate::error::Problem),
))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    state.store.ping().await?;
    Ok("ready\n")
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}

/// What the caller stores: logical bytes, and what deduplicated, compressed chunks take.
#[utoipa::path(get, path = "/v1/usage",
    responses((status = 200, description = "The caller's files and the bytes they take.", body = UsageResponse)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<AppState>,
    User(owner): User,
) -> Result<Json<UsageResponse>, ApiError> {
    Ok(Json(state.store.usage(&owner).await?.into()))
}

/// The OpenAPI document, stating this server's own limits.
pub async fn openapi(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi_for(&state.config, state.chunk_params))
}

pub async fn no_route() -> ApiError {
    ApiError::new(ProblemCode::NoRoute, "no such route")
}
