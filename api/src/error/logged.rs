//! Internal errors are logged once, by the HTTP layer, with their detail; the client gets only
//! `internal`. A handler's error (or a batch item's) carries its detail on the response, and
//! [`log_internal_errors`] takes it off there, so no constructor or conversion logs on its own
//! and an error dropped or turned into another is not logged as if it had been answered.
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponseParts, Response, ResponseParts};

/// The details of the internal errors behind one response: its own, or those of the batch
/// items it answers. Kept in the response's extensions, never in its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalErrors(Vec<String>);

impl InternalErrors {
    pub fn push(&mut self, detail: String) {
        self.0.push(detail);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn details(&self) -> &[String] {
        &self.0
    }
}

impl IntoResponseParts for InternalErrors {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if !self.is_empty() {
            res.extensions_mut().insert(self);
        }
        Ok(res)
    }
}

/// Logs the internal errors a response carries, once each, with the route they came from.
pub async fn log_internal_errors(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let mut resp = next.run(req).await;
    if let Some(errors) = resp.extensions_mut().remove::<InternalErrors>() {
        for detail in errors.details() {
            tracing::error!(%method, %route, error = %detail, "internal error");
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::error::{ApiError, ProblemCode};

    #[tokio::test]
    async fn an_internal_detail_reaches_the_log_layer_and_never_the_client() {
        let resp = ApiError::internal("disk on fire").into_response();
        let carried = resp.extensions().get::<InternalErrors>().cloned();
        assert_eq!(
            carried.as_ref().map(InternalErrors::details),
            Some(&["disk on fire".to_owned()][..])
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("disk on fire"));

        let plain = ApiError::new(ProblemCode::NotFound, "no such file").into_response();
        assert!(plain.extensions().get::<InternalErrors>().is_none());

        // The layer takes the detail off (to log it) before the response goes out.
        let app = Router::new()
            .route("/", get(|| async { ApiError::internal("disk on fire") }))
            .layer(axum::middleware::from_fn(log_internal_errors));
        let req = axum::http::Request::builder()
            .uri("/")
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.extensions().get::<InternalErrors>().is_none());
    }

    #[test]
    fn a_batch_item_hands_its_internal_detail_to_the_batch() {
        let mut internal = InternalErrors::default();
        let problem = ApiError::internal("lost a shard").into_item(&mut internal);
        assert_eq!(problem.code, "internal");
        assert!(!problem.detail.contains("lost a shard"));
        assert_eq!(internal.details(), ["lost a shard".to_owned()]);
        ApiError::not_found().into_item(&mut internal);
        assert_eq!(internal.details().len(), 1);
    }
}
