//! The metadata store's typed error, shared by the port and every engine behind it.
use filestore_domain::FileId;
use filestore_domain::state::IllegalTransition;
use filestore_domain::tree::RevMismatch;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    #[error("file {0} does not exist")]
    NotFound(FileId),
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    #[error("the upload was already recorded with a different size or checksum")]
    UploadMismatch,
    #[error("the file is no longer accepting content")]
    NotUploading,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata database error: {0}")]
    Database(String),
    #[error(transparent)]
    RevConflict(#[from] RevMismatch),
    #[error("no such path: {0}")]
    PathNotFound(String),
    #[error("{0} already holds a file")]
    PathTaken(String),
    #[error("{0} is a file, so nothing can go inside it")]
    ParentIsFile(String),
    #[error("{0} is a folder with files in it")]
    PathIsFolder(String),
    #[error("{0}")]
    InvalidMove(String),
    #[error("{0}")]
    VersionUnavailable(String),
    #[error("{0}")]
    Busy(String),
}

#[cfg(feature = "sqlx")]
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(e.to_string())
        }
    }
}

/// Errors that say the database cannot be reached or cannot take writes right now (a restart,
/// a failover in progress), as opposed to a fault in the request: worth a 503 and a retry.
#[cfg(feature = "sqlx")]
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 57P01-57P03: shutdown or not yet accepting
            // connections; 25006: read-only transaction (a standby, mid-failover); 53300: too
            // many connections.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "25006" | "53300"
                )
        }),
        _ => false,
    }
}
