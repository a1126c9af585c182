//! The user's tree on the metadata store: the head of each path, its versions, trash, and the
//! change feed a sync client follows. The rules are in `filestore_domain::tree`; `sql/tree` is
//! where they meet the database.
use async_trait::async_trait;
use filestore_domain::tree::{ChangeKind, Expect};
use filestore_domain::{FileId, FileStatus, OwnerId};

use crate::meta::StoreError;

/// The head of one path: the version a listing shows and a download serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub file_id: FileId,
    pub rev: i64,
    /// When it went to trash (unix ms); `None` for a live file.
    pub trashed_at_ms: Option<i64>,
    pub modified_at_ms: i64,
    pub size: u64,
    pub sha256: Option<String>,
    pub content_type: String,
    pub status: FileStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Paths that start with this (`docs/` for a folder's contents); empty for all.
    pub prefix: String,
    /// Only paths after this one, for the next page.
    pub after: Option<String>,
    pub limit: u32,
    /// The trash instead of the live tree.
    pub trashed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    /// The change feed position this listing is consistent with: following the feed from here
    /// misses nothing that happened after it.
    pub cursor: i64,
}

/// One change in the owner's feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its position in the feed, and the revision it gave `path`.
    pub seq: i64,
    pub kind: ChangeKind,
    pub path: String,
    pub from_path: Option<String>,
    pub file_id: FileId,
    pub size: u64,
    pub sha256: Option<String>,
    pub status: FileStatus,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// Where to ask from next time.
    pub cursor: i64,
    pub has_more: bool,
}

/// One version a path had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub rev: i64,
    pub file_id: FileId,
    pub size: u64,
    pub sha256: Option<String>,
    pub status: FileStatus,
    pub created_at_ms: i64,
}

/// The tree operations; every metadata store has them.
#[async_trait]
pub trait TreeStore: Send + Sync {
    /// The path's head, live or in trash.
    async fn entry(&self, owner: &OwnerId, path: &str) -> Result<Option<Entry>, StoreError>;

    async fn list_tree(&self, owner: &OwnerId, query: &ListQuery) -> Result<Listing, StoreError>;

    /// Moves a file, or a folder with everything in it; versions move along.
    async fn move_path(
        &self,
        owner: &OwnerId,
        from: &str,
        to: &str,
        expect: Expect,
    ) -> Result<Vec<Change>, StoreError>;

    /// Moves a file, or every live file in a folder, to trash.
    async fn trash_path(
        &self,
        owner: &OwnerId,
        path: &str,
        expect: Expect,
    ) -> Result<Vec<Change>, StoreError>;

    /// Brings a file, or every trashed file in a folder, back from trash.
    async fn restore_path(&self, owner: &OwnerId, path: &str) -> Result<Vec<Change>, StoreError>;

    /// Removes a trashed file (or folder) and all its versions for good; returns how many
    /// versions went. Their chunks are left to the sweep; their raw objects (kept for a
    /// quarantined or failed version) join the orphaned objects, in the same transaction.
    async fn purge_path(&self, owner: &OwnerId, path: &str) -> Result<u64, StoreError>;

    /// Up to `limit` keys of objects nothing refers to any more, oldest first.
    async fn orphaned_objects(&self, limit: u32) -> Result<Vec<String>, StoreError>;

    /// The object at `key` is gone from the object store: stop tracking it.
    async fn forget_orphaned_object(&self, key: &str) -> Result<(), StoreError>;

    /// The path's versions, newest first.
    async fn versions(&self, owner: &OwnerId, path: &str) -> Result<Vec<Version>, StoreError>;

    /// Makes an earlier version of `path` its head again, as a new revision.
    async fn restore_version(
        &self,
        owner: &OwnerId,
        path: &str,
        rev: i64,
    ) -> Result<Change, StoreError>;

    /// Up to `limit` changes after `cursor`, oldest first.
    async fn changes(
        &self,
        owner: &OwnerId,
        cursor: i64,
        limit: u32,
    ) -> Result<ChangePage, StoreError>;
}
