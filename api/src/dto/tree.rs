//! Bodies of the tree routes: listings, moves, trash, versions and the change feed.
use filestore_domain::tree::ChangeKind;
use filestore_domain::{FileId, FileStatus};
use filestore_ports::{Change, Entry, Version};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use super::rules::{FilePath, PathPrefix};
use super::whole;

/// The head of one path.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryInfo {
    pub path: String,
    #[schema(value_type = String)]
    pub file_id: FileId,
    /// Names this state of the path; send it as `parentRev` to edit, move or delete it.
    pub rev: i64,
    pub size: u64,
    pub sha256: Option<String>,
    pub content_type: String,
    /// The head version's processing status; its content downloads once `ready`.
    #[schema(value_type = String)]
    pub status: FileStatus,
    pub modified_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trashed_at: Option<String>,
}

impl From<&Entry> for EntryInfo {
    fn from(e: &Entry) -> Self {
        Self {
            path: e.path.clone(),
            file_id: e.file_id,
            rev: e.rev,
            size: e.size,
            sha256: e.sha256.clone(),
            content_type: e.content_type.clone(),
            status: e.status,
            modified_at: rfc3339(e.modified_at_ms),
            trashed_at: e.trashed_at_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only paths starting with this (`photos/` for a folder's contents).
    #[param(value_type = Option<PathPrefix>)]
    pub prefix: Option<String>,
    /// The `nextAfter` of the previous page.
    pub after: Option<String>,
    /// Entries per page, 1 to 10,000 (default 1,000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListingPage {
    pub entries: Vec<EntryInfo>,
    /// The change feed position this page is consistent with: follow `/v1/changes` from the
    /// first page's cursor to miss nothing.
    pub cursor: i64,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathParam {
    #[param(value_type = FilePath)]
    pub path: String,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MoveRequest {
    #[schema(value_type = FilePath)]
    pub from: String,
    #[schema(value_type = FilePath)]
    pub to: String,
    /// For a file: its revision the client saw (409 `rev_conflict` if it changed).
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    #[serde(default, deserialize_with = "whole::option_i64")]
    pub parent_rev: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRequest {
    /// A file, or a folder: every live file in it goes to trash.
    #[schema(value_type = FilePath)]
    pub path: String,
    /// For a file: its revision the client saw (409 `rev_conflict` if it changed).
    #[schema(minimum = 0, maximum = 9223372036854775807_i64)]
    #[serde(default, deserialize_with = "whole::option_i64")]
    pub parent_rev: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TrashRequest {
    /// A trashed file, or a folder whose trashed files to act on.
    #[schema(value_type = FilePath)]
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Purged {
    /// Versions removed for good.
    pub purged: u64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RestoreVersionRequest {
    #[schema(value_type = FilePath)]
    pub path: String,
    /// The revision to restore, as `/v1/versions` lists it (404 for one it does not list).
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    #[serde(deserialize_with = "whole::i64")]
    pub rev: i64,
}

/// One change in the feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeInfo {
    /// The change's position in the feed, and the revision it gave `path`.
    pub rev: i64,
    /// create, update, move or delete.
    #[schema(value_type = String)]
    pub kind: ChangeKind,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub size: u64,
    pub sha256: Option<String>,
    /// The version's processing status now.
    #[schema(value_type = String)]
    pub status: FileStatus,
    pub at: String,
}

impl From<&Change> for ChangeInfo {
    fn from(c: &Change) -> Self {
        Self {
            rev: c.seq,
            kind: c.kind,
            path: c.path.clone(),
            from_path: c.from_path.clone(),
            file_id: c.file_id,
            size: c.size,
            sha256: c.sha256.clone(),
            status: c.status,
            at: rfc3339(c.at_ms),
        }
    }
}

/// What a move, delete or restore did, one change per file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangesMade {
    pub changes: Vec<ChangeInfo>,
}

impl ChangesMade {
    pub fn of(changes: &[Change]) -> Self {
        Self {
            changes: changes.iter().map(ChangeInfo::from).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// The `cursor` of the last answer (or of a listing); 0 for everything.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub cursor: Option<i64>,
    /// Changes per answer, 1 to 10,000 (default 1,000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
    /// Seconds to wait for a change when there is none yet (long-poll); longer waits are
    /// cut to 300.
    #[param(minimum = 0)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangesPage {
    pub changes: Vec<ChangeInfo>,
    /// Ask from here next time.
    pub cursor: i64,
    /// More changes wait after this page: ask again at once.
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub rev: i64,
    #[schema(value_type = String)]
    pub file_id: FileId,
    pub size: u64,
    pub sha256: Option<String>,
    #[schema(value_type = String)]
    pub status: FileStatus,
    pub created_at: String,
}

impl From<&Version> for VersionInfo {
    fn from(v: &Version) -> Self {
        Self {
            rev: v.rev,
            file_id: v.file_id,
            size: v.size,
            sha256: v.sha256.clone(),
            status: v.status,
            created_at: rfc3339(v.created_at_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionList {
    pub path: String,
    /// Newest first.
    pub versions: Vec<VersionInfo>,
}
