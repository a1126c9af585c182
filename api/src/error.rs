//! Every error the API returns: `application/problem+json` with a stable machine `code`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filestore_ports::{ObjectError, StoreError, TenantKeyError};
use serde::Serialize;
use utoipa::ToSchema;

mod code;
pub mod logged;

pub use code::ProblemCode;
pub use logged::InternalErrors;

/// RFC 9457 problem details, the body of every error (`application/problem+json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:filestore:problem:invalid_path",
    "title": "Bad Request",
    "status": 400,
    "code": "invalid_path",
    "detail": "path components '.' and '..' are not allowed"
}))]
pub struct Problem {
    /// A URI naming the problem type (`urn:filestore:problem:<code>`).
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:filestore:problem:[a-z0-9_]+$")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status of the response (repeated in a batch item's own problem).
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// Stable machine-readable code; clients branch on this.
    #[schema(pattern = "^[a-z0-9_]+$")]
    pub code: String,
    /// What went wrong, for people.
    pub detail: String,
}

/// An error a handler answers with: its problem code (which decides the status) and what went
/// wrong for people. An internal error also carries its detail, for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ProblemCode,
    pub detail: String,
    internal: Option<String>,
}

impl ApiError {
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            internal: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The one answer for "missing" and "not yours", so ids reveal nothing.
    pub fn not_found() -> Self {
        Self::new(ProblemCode::NotFound, "no such file")
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::Unauthenticated, detail)
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::InvalidToken, detail)
    }

    /// A request body that stopped arriving (see `server::IdleTimeoutBody`).
    pub fn request_timeout() -> Self {
        Self::new(
            ProblemCode::RequestTimeout,
            "the request body stopped arriving; send it again",
        )
    }

    /// A body over what this route accepts.
    pub fn body_too_large(detail: impl Into<String>) -> Self {
        Self::new(ProblemCode::BodyTooLarge, detail)
    }

    /// A request body that could not be read: stalled (408) or broken off (400).
    pub fn body_read(err: &(dyn std::error::Error + 'static)) -> Self {
        if crate::server::is_body_timeout(err) {
            return Self::request_timeout();
        }
        Self::new(
            ProblemCode::BodyReadFailed,
            format!("reading the request body failed: {err}"),
        )
    }

    /// A fault of the server's: the client learns only that; `detail` is logged once, by the
    /// HTTP layer, when the error is answered (see [`logged`]).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            internal: Some(detail.to_string()),
            ..Self::new(ProblemCode::Internal, "an internal error occurred")
        }
    }

    /// What an internal error was, for the log; `None` for every other error.
    pub fn internal_detail(&self) -> Option<&str> {
        self.internal.as_deref()
    }

    /// The problem document of one item of a batch, whose internal detail (if any) goes to
    /// `internal` to be logged with the batch's response.
    pub fn into_item(self, internal: &mut InternalErrors) -> Problem {
        let problem = self.problem();
        if let Some(detail) = self.internal {
            internal.push(detail);
        }
        problem
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            kind: format!("urn:filestore:problem:{}", self.code),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: self.code.as_str().to_owned(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut internal = InternalErrors::default();
        let problem = self.into_item(&mut internal);
        let mut resp = (status, internal, axum::Json(problem)).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The client stalled mid-body: whatever it sends later is not a new request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(d) => {
                tracing::warn!(error = %d, "metadata database unavailable");
                Self::new(
                    ProblemCode::DatabaseUnavailable,
                    "the metadata database is unavailable; retry shortly",
                )
            }
            StoreError::NotFound(_) => Self::not_found(),
            StoreError::Illegal(t) => Self::new(ProblemCode::InvalidState, t.to_string()),
            StoreError::UploadMismatch => Self::new(ProblemCode::UploadConflict, e.to_string()),
            StoreError::NotUploading => Self::new(ProblemCode::NotUploading, e.to_string()),
            StoreError::RevConflict(_) => Self::new(ProblemCode::RevConflict, e.to_string()),
            StoreError::PathNotFound(_) => Self::new(ProblemCode::NotFound, e.to_string()),
            StoreError::PathTaken(_) => Self::new(ProblemCode::DestinationExists, e.to_string()),
            StoreError::ParentIsFile(_) => Self::new(ProblemCode::ParentIsFile, e.to_string()),
            StoreError::PathIsFolder(_) => Self::new(ProblemCode::PathIsFolder, e.to_string()),
            StoreError::InvalidMove(_) => Self::new(ProblemCode::InvalidMove, e.to_string()),
            StoreError::VersionUnavailable(_) => {
                Self::new(ProblemCode::VersionUnavailable, e.to_string())
            }
            StoreError::Busy(_) => Self::new(ProblemCode::Busy, e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::TooLarge { limit } => Self::new(
                ProblemCode::BodyTooLarge,
                format!("the body is larger than the {limit} bytes declared at registration"),
            ),
            ObjectError::SizeMismatch { expected, got } => Self::new(
                ProblemCode::SizeMismatch,
                format!("received {got} bytes; {expected} were declared"),
            ),
            ObjectError::Source(err) => Self::body_read(&err),
            ObjectError::Unavailable(d) => {
                tracing::warn!(error = %d, "object storage unavailable");
                Self::new(
                    ProblemCode::StorageUnavailable,
                    "object storage is unavailable; retry shortly",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<TenantKeyError> for ApiError {
    fn from(e: TenantKeyError) -> Self {
        match e {
            TenantKeyError::Store(s) => s.into(),
            other => Self::internal(other),
        }
    }
}
