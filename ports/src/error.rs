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
