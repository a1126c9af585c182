//! The stable machine codes of the API's problems, and the HTTP status each one answers with:
//! one `match` decides both, so a code can never drift to another status at one call site.
use axum::http::StatusCode;

/// What went wrong, as clients branch on it (`Problem::code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemCode {
    // 400: the request itself is wrong.
    InvalidRequest,
    InvalidSize,
    InvalidChecksum,
    InvalidContentType,
    InvalidPath,
    InvalidName,
    PathTooLong,
    InvalidParentRev,
    InvalidBatch,
    InvalidMultipart,
    InvalidLimit,
    InvalidCursor,
    InvalidMove,
    InvalidChunkLength,
    /// More chunk hashes in one request than a request may ask about.
    TooManyChunks,
    SizeMismatch,
    ChecksumMismatch,
    BadBundle,
    BadEncoding,
    BodyReadFailed,
    // 401 and 403: who may ask.
    Unauthenticated,
    InvalidToken,
    MissingSignature,
    InvalidSignature,
    UrlExpired,
    FileQuarantined,
    // 404 and 408.
    NotFound,
    NoRoute,
    RequestTimeout,
    // 409: the state of the file or the tree does not allow it.
    AlreadyFinalized,
    UploadConflict,
    UploadIncomplete,
    NotUploading,
    NotReady,
    FileFailed,
    ChunkMissing,
    InvalidState,
    RevConflict,
    DestinationExists,
    ParentIsFile,
    PathIsFolder,
    VersionUnavailable,
    Busy,
    // 413, 415, 416: the body or the range.
    BodyTooLarge,
    FileTooLarge,
    ChunkTooLarge,
    /// An assembly naming more chunks than the server assembles: the same code as
    /// [`Self::TooManyChunks`], but the body is too large rather than malformed.
    TooManyChunksToAssemble,
    UnsupportedEncoding,
    RangeNotSatisfiable,
    // 5xx: the server's side.
    Internal,
    DatabaseUnavailable,
    StorageUnavailable,
    UploadBudgetExceeded,
}

impl ProblemCode {
    pub const ALL: [ProblemCode; 53] = [
        Self::InvalidRequest,
        Self::InvalidSize,
        Self::InvalidChecksum,
        Self::InvalidContentType,
        Self::InvalidPath,
        Self::InvalidName,
        Self::PathTooLong,
        Self::InvalidParentRev,
        Self::InvalidBatch,
        Self::InvalidMultipart,
        Self::InvalidLimit,
        Self::InvalidCursor,
        Self::InvalidMove,
        Self::InvalidChunkLength,
        Self::TooManyChunks,
        Self::SizeMismatch,
        Self::ChecksumMismatch,
        Self::BadBundle,
        Self::BadEncoding,
        Self::BodyReadFailed,
        Self::Unauthenticated,
        Self::InvalidToken,
        Self::MissingSignature,
        Self::InvalidSignature,
        Self::UrlExpired,
        Self::FileQuarantined,
        Self::NotFound,
        Self::NoRoute,
        Self::RequestTimeout,
        Self::AlreadyFinalized,
        Self::UploadConflict,
        Self::UploadIncomplete,
        Self::NotUploading,
        Self::NotReady,
        Self::FileFailed,
        Self::ChunkMissing,
        Self::InvalidState,
        Self::RevConflict,
        Self::DestinationExists,
        Self::ParentIsFile,
        Self::PathIsFolder,
        Self::VersionUnavailable,
        Self::Busy,
        Self::BodyTooLarge,
        Self::FileTooLarge,
        Self::ChunkTooLarge,
        Self::TooManyChunksToAssemble,
        Self::UnsupportedEncoding,
        Self::RangeNotSatisfiable,
        Self::Internal,
        Self::DatabaseUnavailable,
        Self::StorageUnavailable,
        Self::UploadBudgetExceeded,
    ];

    /// The HTTP status and the code string: the one place either is decided.
    fn parts(self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Self::InvalidRequest => (S::BAD_REQUEST, "invalid_request"),
            Self::InvalidSize => (S::BAD_REQUEST, "invalid_size"),
            Self::InvalidChecksum => (S::BAD_REQUEST, "invalid_checksum"),
            Self::InvalidContentType => (S::BAD_REQUEST, "invalid_content_type"),
            Self::InvalidPath => (S::BAD_REQUEST, "invalid_path"),
            Self::InvalidName => (S::BAD_REQUEST, "invalid_name"),
            Self::PathTooLong => (S::BAD_REQUEST, "path_too_long"),
            Self::InvalidParentRev => (S::BAD_REQUEST, "invalid_parent_rev"),
            Self::InvalidBatch => (S::BAD_REQUEST, "invalid_batch"),
            Self::InvalidMultipart => (S::BAD_REQUEST, "invalid_multipart"),
            Self::InvalidLimit => (S::BAD_REQUEST, "invalid_limit"),
            Self::InvalidCursor => (S::BAD_REQUEST, "invalid_cursor"),
            Self::InvalidMove => (S::BAD_REQUEST, "invalid_move"),
            Self::InvalidChunkLength => (S::BAD_REQUEST, "invalid_chunk_length"),
            Self::TooManyChunks => (S::BAD_REQUEST, "too_many_chunks"),
            Self::SizeMismatch => (S::BAD_REQUEST, "size_mismatch"),
            Self::ChecksumMismatch => (S::BAD_REQUEST, "checksum_mismatch"),
            Self::BadBundle => (S::BAD_REQUEST, "bad_bundle"),
            Self::BadEncoding => (S::BAD_REQUEST, "bad_encoding"),
            Self::BodyReadFailed => (S::BAD_REQUEST, "body_read_failed"),
            Self::Unauthenticated => (S::UNAUTHORIZED, "unauthenticated"),
            Self::InvalidToken => (S::UNAUTHORIZED, "invalid_token"),
            Self::MissingSignature => (S::UNAUTHORIZED, "missing_signature"),
            Self::InvalidSignature => (S::FORBIDDEN, "invalid_signature"),
            Self::UrlExpired => (S::FORBIDDEN, "url_expired"),
            Self::FileQuarantined => (S::FORBIDDEN, "file_quarantined"),
            Self::NotFound => (S::NOT_FOUND, "not_found"),
            Self::NoRoute => (S::NOT_FOUND, "no_route"),
            Self::RequestTimeout => (S::REQUEST_TIMEOUT, "request_timeout"),
            Self::AlreadyFinalized => (S::CONFLICT, "already_finalized"),
            Self::UploadConflict => (S::CONFLICT, "upload_conflict"),
            Self::UploadIncomplete => (S::CONFLICT, "upload_incomplete"),
            Self::NotUploading => (S::CONFLICT, "not_uploading"),
            Self::NotReady => (S::CONFLICT, "not_ready"),
            Self::FileFailed => (S::CONFLICT, "file_failed"),
            Self::ChunkMissing => (S::CONFLICT, "chunk_missing"),
            Self::InvalidState => (S::CONFLICT, "invalid_state"),
            Self::RevConflict => (S::CONFLICT, "rev_conflict"),
            Self::DestinationExists => (S::CONFLICT, "destination_exists"),
            Self::ParentIsFile => (S::CONFLICT, "parent_is_file"),
            Self::PathIsFolder => (S::CONFLICT, "path_is_folder"),
            Self::VersionUnavailable => (S::CONFLICT, "version_unavailable"),
            Self::Busy => (S::CONFLICT, "busy"),
            Self::BodyTooLarge => (S::PAYLOAD_TOO_LARGE, "body_too_large"),
            Self::FileTooLarge => (S::PAYLOAD_TOO_LARGE, "file_too_large"),
            Self::ChunkTooLarge => (S::PAYLOAD_TOO_LARGE, "chunk_too_large"),
            Self::TooManyChunksToAssemble => (S::PAYLOAD_TOO_LARGE, "too_many_chunks"),
            Self::UnsupportedEncoding => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding"),
            Self::RangeNotSatisfiable => (S::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, "internal"),
            Self::DatabaseUnavailable => (S::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::StorageUnavailable => (S::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::UploadBudgetExceeded => (S::INSUFFICIENT_STORAGE, "upload_budget_exceeded"),
        }
    }

    pub fn status(self) -> StatusCode {
        self.parts().0
    }

    /// The code clients see.
    pub fn as_str(self) -> &'static str {
        self.parts().1
    }

    /// The problem a code a server answered names, for a client to branch on (the 400 one
    /// for `too_many_chunks`); `None` for a code this build does not know.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_code_is_a_stable_name_with_an_error_status() {
        for code in ProblemCode::ALL {
            let text = code.as_str();
            assert!(
                !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{text}"
            );
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code}"
            );
        }
    }

    #[test]
    fn codes_parse_back() {
        for code in ProblemCode::ALL {
            let back = ProblemCode::from_code(code.as_str());
            assert_eq!(back.map(ProblemCode::as_str), Some(code.as_str()));
        }
        assert_eq!(ProblemCode::from_code("bogus"), None);
    }

    #[test]
    fn a_code_names_one_variant_but_too_many_chunks() {
        let mut by_text: HashMap<&str, Vec<ProblemCode>> = HashMap::new();
        for code in ProblemCode::ALL {
            by_text.entry(code.as_str()).or_default().push(code);
        }
        let shared: Vec<_> = by_text.values().filter(|v| v.len() > 1).collect();
        assert_eq!(
            shared,
            [&vec![
                ProblemCode::TooManyChunks,
                ProblemCode::TooManyChunksToAssemble
            ]]
        );
    }
}
