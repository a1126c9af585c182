//! Every error the API returns: `application/problem+json` with a stable machine `code`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use filestore_ports::{ObjectError, StoreError, TenantKeyError};
use serde::Serialize;
use utoipa::ToSchema;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// The one answer for "missing" and "not yours", so ids reveal nothing.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such file")
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail)
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", detail)
    }

    /// A request body that stopped arriving (see `server::IdleTimeoutBody`).
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body stopped arriving; send it again",
        )
    }

    /// A body over what this route accepts.
    pub fn body_too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", detail)
    }

    /// A request body that could not be read: stalled (408) or broken off (400).
    pub fn body_read(err: &(dyn std::error::Error + 'static)) -> Self {
        if crate::server::is_body_timeout(err) {
            return Self::request_timeout();
        }
        Self::bad_request(
            "body_read_failed",
            format!("reading the request body failed: {err}"),
        )
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:filestore:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.problem())).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The client stalled mid-body: whatever it sends later is not a new request.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
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
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the metadata database is unavailable; retry shortly",
                )
            }
            StoreError::NotFound(_) => Self::not_found(),
            StoreError::Illegal(t) => Self::conflict("invalid_state", t.to_string()),
            StoreError::UploadMismatch => Self::conflict("upload_conflict", e.to_string()),
            StoreError::NotUploading => Self::conflict("not_uploading", e.to_string()),
            StoreError::RevConflict(_) => Self::conflict("rev_conflict", e.to_string()),
            StoreError::PathNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StoreError::PathTaken(_) => Self::conflict("destination_exists", e.to_string()),
            StoreError::ParentIsFile(_) => Self::conflict("parent_is_file", e.to_string()),
            StoreError::PathIsFolder(_) => Self::conflict("path_is_folder", e.to_string()),
            StoreError::InvalidMove(_) => Self::bad_request("invalid_move", e.to_string()),
            StoreError::VersionUnavailable(_) => {
                Self::conflict("version_unavailable", e.to_string())
            }
            StoreError::Busy(_) => Self::conflict("busy", e.to_string()),
            other => Self::internal(other),
        }
    }
}

impl From<ObjectError> for ApiError {
    fn from(e: ObjectError) -> Self {
        match e {
            ObjectError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than the {limit} bytes declared at registration"),
            ),
            ObjectError::SizeMismatch { expected, got } => Self::bad_request(
                "size_mismatch",
                format!("received {got} bytes; {expected} were declared"),
            ),
            ObjectError::Source(err) => Self::body_read(&err),
            ObjectError::Unavailable(d) => {
                tracing::warn!(error = %d, "object storage unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
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
