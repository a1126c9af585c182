//! Filestore's REST API (DESIGN §5): JWT-authenticated, owner-checked, problem+json errors.
#![forbid(unsafe_code)]

pub mod apidoc;
pub mod auth;
pub mod config;
pub mod dto;
pub mod encoding;
pub mod error;
pub mod range;
pub mod routes;
pub mod server;
pub mod state;
pub mod validate;

use std::time::Instant;

use apidoc::{BundleExample, SharedResponses};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use filestore_domain::chunking::ChunkParams;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

pub use config::ApiConfig;
pub use state::{AppState, Inner};

/// JSON bodies (registration batches) stay under this; file content is streamed, not buffered.
pub(crate) const JSON_BODY_LIMIT: usize = 16 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Filestore API", version = "1", description = "Upload, process and download files. Errors are application/problem+json with a stable `code`."),
    paths(
        routes::upload::register_one,
        routes::upload::register_batch,
        routes::upload::put_content,
        routes::bundle::upload_bundle,
        routes::upload::finalize,
        routes::upload::metadata,
        routes::download::descriptor,
        routes::download::descriptor_batch,
        routes::download::content,
        routes::download::chunk,
        routes::delta::chunking,
        routes::delta::missing,
        routes::delta::put_chunk,
        routes::delta::assemble,
        routes::tree::list,
        routes::tree::list_trash,
        routes::tree::entry,
        routes::tree::move_path,
        routes::tree::delete,
        routes::tree::restore,
        routes::tree::purge,
        routes::tree::versions,
        routes::tree::restore_version,
        routes::tree::changes,
        routes::ops::usage,
        routes::ops::healthz,
        routes::ops::readyz,
    ),
    components(schemas(
        error::Problem,
        dto::rules::FilePath,
        dto::rules::PathPrefix,
        dto::rules::IdList,
        dto::rules::Sha256Hex,
        dto::rules::Binary
    )),
    modifiers(&BearerAuth, &SharedResponses, &BundleExample)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document, generated from the handlers, with the default limits.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_for(&ApiConfig::default(), ChunkParams::DEFAULT)
}

/// The OpenAPI document of a server running with `config` and `chunking`: the limits it
/// states are its own.
pub fn openapi_for(config: &ApiConfig, chunking: ChunkParams) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    apidoc::apply_limits(
        &mut doc,
        apidoc::Limits {
            max_file_size: config.max_file_size,
            max_batch: config.max_batch,
            max_assemble_chunks: config.max_assemble_chunks,
            max_chunk: chunking.max,
        },
    );
    doc
}

pub fn router(state: AppState) -> Router {
    use routes::{bundle, delta, download, ops, tree, upload};
    Router::new()
        .route("/v1/file", post(upload::register_one))
        .route("/v1/file/{id}", get(download::descriptor))
        .route(
            "/v1/files",
            post(upload::register_batch).get(download::descriptor_batch),
        )
        .route(
            "/v1/files/{id}/content",
            get(download::content).put(upload::put_content),
        )
        .route(
            "/v1/files/bundle",
            post(bundle::upload_bundle).layer(DefaultBodyLimit::max(
                bundle::MAX_BUNDLE_BYTES + 1024 * 1024,
            )),
        )
        .route("/v1/files/{id}/finalize", post(upload::finalize))
        .route("/v1/files/{id}/metadata", get(upload::metadata))
        .route("/v1/chunks/{id}", get(download::chunk))
        .route(
            "/v1/chunks/{id}/content",
            axum::routing::put(delta::put_chunk),
        )
        .route("/v1/chunks/missing", post(delta::missing))
        .route("/v1/chunking", get(delta::chunking))
        .route("/v1/files/{id}/assemble", post(delta::assemble))
        .route("/v1/tree", get(tree::list))
        .route("/v1/tree/move", post(tree::move_path))
        .route("/v1/tree/delete", post(tree::delete))
        .route("/v1/entry", get(tree::entry))
        .route("/v1/trash", get(tree::list_trash))
        .route("/v1/trash/restore", post(tree::restore))
        .route("/v1/trash/purge", post(tree::purge))
        .route("/v1/versions", get(tree::versions))
        .route("/v1/versions/restore", post(tree::restore_version))
        .route("/v1/changes", get(tree::changes))
        .route("/v1/usage", get(ops::usage))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/openapi.json", get(ops::openapi))
        .fallback(ops::no_route)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(error::logged::log_internal_errors))
        .layer(middleware::from_fn(track_http))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// The operations listener's routes (`--metrics-listen`): Prometheus metrics, liveness and
/// readiness. Metrics stay off the public listener: they name routes, volumes and errors.
pub fn metrics_router(state: AppState) -> Router {
    use routes::ops;
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(middleware::from_fn(error::logged::log_internal_errors))
        .with_state(state)
}

async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("filestore_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("filestore_http_request_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}
