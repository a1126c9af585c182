//! The user's tree: list by prefix, look up a path, move, trash and restore, versions, and the
//! change feed a sync client follows (long-poll).
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use filestore_ports::ListQuery;

use crate::auth::User;
use crate::dto::tree::{
    ChangeInfo, ChangesMade, ChangesPage, ChangesParams, DeleteRequest, EntryInfo, ListParams,
    ListingPage, MoveRequest, PathParam, Purged, RestoreVersionRequest, TrashRequest, VersionInfo,
    VersionList,
};
use crate::error::{ApiError, Problem, ProblemCode};
use crate::routes::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::validate;

const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 10_000;
const MAX_LONG_POLL: Duration = Duration::from_secs(300);
/// Other API replicas commit changes too, and only this process's commits wake a waiting
/// long-poll; so it also looks again this often.
const LONG_POLL_RECHECK: Duration = Duration::from_secs(1);

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        n => Err(ApiError::new(
            ProblemCode::InvalidLimit,
            format!("limit is 1 to {MAX_PAGE}, got {n}"),
        )),
    }
}

async fn listing(
    state: &AppState,
    owner: &filestore_domain::OwnerId,
    params: ListParams,
    trashed: bool,
) -> Result<Json<ListingPage>, ApiError> {
    let limit = page_limit(params.limit)?;
    let query = ListQuery {
        prefix: validate::prefix(params.prefix.as_deref().unwrap_or(""))?,
        after: params.after,
        limit,
        trashed,
    };
    let listed = state.store.list_tree(owner, &query).await?;
    let next_after = (listed.entries.len() == limit as usize)
        .then(|| listed.entries.last().map(|e| e.path.clone()))
        .flatten();
    Ok(Json(ListingPage {
        entries: listed.entries.iter().map(EntryInfo::from).collect(),
        cursor: listed.cursor,
        next_after,
    }))
}

/// The live files whose path starts with `prefix`, in path order, a page at a time.
#[utoipa::path(get, path = "/v1/tree", params(ListParams),
    responses(
        (status = 200, description = "A page of live files.", body = ListingPage),
        (status = 400, description = "`invalid_request`, `invalid_limit`, or a prefix that is not the start of a valid path: `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListingPage>, ApiError> {
    listing(&state, &owner, params, false).await
}

/// The trashed files whose path starts with `prefix`.
#[utoipa::path(get, path = "/v1/trash", params(ListParams),
    responses(
        (status = 200, description = "A page of trashed files.", body = ListingPage),
        (status = 400, description = "`invalid_request`, `invalid_limit`, or a prefix that is not the start of a valid path: `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn list_trash(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<ListingPage>, ApiError> {
    listing(&state, &owner, params, true).await
}

/// The head of one path (live or in trash).
#[utoipa::path(get, path = "/v1/entry", params(PathParam),
    responses(
        (status = 200, description = "The path's head.", body = EntryInfo),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: no file at this path.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn entry(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(q): ApiQuery<PathParam>,
) -> Result<Json<EntryInfo>, ApiError> {
    let path = validate::path(&q.path)?;
    match state.store.entry(&owner, &path).await? {
        Some(e) => Ok(Json(EntryInfo::from(&e))),
        None => Err(ApiError::from(filestore_ports::StoreError::PathNotFound(
            path,
        ))),
    }
}

/// Move or rename a file, or a folder with everything in it; no bytes are uploaded again.
#[utoipa::path(post, path = "/v1/tree/move", request_body = MoveRequest,
    responses(
        (status = 200, description = "Moved: one change per file.", body = ChangesMade),
        (status = 400, description = "`invalid_request`, `invalid_parent_rev`, `invalid_move` (onto itself, or a folder into itself), `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: nothing at `from`.", body = Problem),
        (status = 409, description = "`rev_conflict`, `destination_exists`, `parent_is_file` or `busy`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn move_path(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<MoveRequest>,
) -> Result<Json<ChangesMade>, ApiError> {
    let from = validate::path(&req.from)?;
    let to = validate::path(&req.to)?;
    let expect = validate::parent_rev(req.parent_rev)?;
    let changes = state.store.move_path(&owner, &from, &to, expect).await?;
    state.tree_wake.notify_waiters();
    Ok(Json(ChangesMade::of(&changes)))
}

/// Move a file, or every live file of a folder, to trash.
#[utoipa::path(post, path = "/v1/tree/delete", request_body = DeleteRequest,
    responses(
        (status = 200, description = "Trashed: one change per file.", body = ChangesMade),
        (status = 400, description = "`invalid_request`, `invalid_parent_rev`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: nothing live at this path.", body = Problem),
        (status = 409, description = "`rev_conflict` or `busy`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<DeleteRequest>,
) -> Result<Json<ChangesMade>, ApiError> {
    let path = validate::path(&req.path)?;
    let expect = validate::parent_rev(req.parent_rev)?;
    let changes = state.store.trash_path(&owner, &path, expect).await?;
    state.tree_wake.notify_waiters();
    Ok(Json(ChangesMade::of(&changes)))
}

/// Bring a file, or a folder's trashed files, back from trash.
#[utoipa::path(post, path = "/v1/trash/restore", request_body = TrashRequest,
    responses(
        (status = 200, description = "Restored: one change per file.", body = ChangesMade),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: nothing in trash at this path.", body = Problem),
        (status = 409, description = "`destination_exists`, `parent_is_file` or `busy`: something took the path meanwhile.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn restore(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<TrashRequest>,
) -> Result<Json<ChangesMade>, ApiError> {
    let path = validate::path(&req.path)?;
    let changes = state.store.restore_path(&owner, &path).await?;
    state.tree_wake.notify_waiters();
    Ok(Json(ChangesMade::of(&changes)))
}

/// Remove a trashed file (or folder) and all its versions for good.
#[utoipa::path(post, path = "/v1/trash/purge", request_body = TrashRequest,
    responses(
        (status = 200, description = "Purged: how many versions went for good.", body = Purged),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: nothing in trash at this path.", body = Problem),
        (status = 409, description = "`busy`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn purge(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<TrashRequest>,
) -> Result<Json<Purged>, ApiError> {
    let path = validate::path(&req.path)?;
    let purged = state.store.purge_path(&owner, &path).await?;
    metrics::counter!("filestore_versions_purged_total").increment(purged);
    // The purge is committed and its bytes recorded as orphaned: removing them now frees the
    // space at once. A request does a bounded share (its own, as a rule); what is left, after
    // a crash or an object store outage, the janitor removes on its next pass.
    if let Err(e) = filestore_ports::orphans::remove_orphaned_objects(
        state.store.as_ref(),
        state.objects.as_ref(),
        usize::try_from(purged).unwrap_or(usize::MAX).max(1),
    )
    .await
    {
        tracing::warn!(error = %e, "orphaned objects stay for the janitor");
    }
    Ok(Json(Purged { purged }))
}

/// A path's versions, newest first.
#[utoipa::path(get, path = "/v1/versions", params(PathParam),
    responses(
        (status = 200, description = "The path's versions, newest first.", body = VersionList),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: no file at this path.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn versions(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(q): ApiQuery<PathParam>,
) -> Result<Json<VersionList>, ApiError> {
    let path = validate::path(&q.path)?;
    let versions = state.store.versions(&owner, &path).await?;
    Ok(Json(VersionList {
        path,
        versions: versions.iter().map(VersionInfo::from).collect(),
    }))
}

/// Make an earlier version the head again (a new revision; nothing is lost).
#[utoipa::path(post, path = "/v1/versions/restore", request_body = RestoreVersionRequest,
    responses(
        (status = 200, description = "The restored version is the head again, as a new revision.", body = ChangeInfo),
        (status = 400, description = "`invalid_request`, `invalid_path`, `invalid_name` or `path_too_long`.", body = Problem),
        (status = 404, description = "`not_found`: no such path or revision.", body = Problem),
        (status = 409, description = "`version_unavailable` (not ready), `parent_is_file` or `busy`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn restore_version(
    State(state): State<AppState>,
    User(owner): User,
    ApiJson(req): ApiJson<RestoreVersionRequest>,
) -> Result<Json<ChangeInfo>, ApiError> {
    let path = validate::path(&req.path)?;
    let change = state.store.restore_version(&owner, &path, req.rev).await?;
    state.tree_wake.notify_waiters();
    Ok(Json(ChangeInfo::from(&change)))
}

/// The changes after `cursor`, oldest first; with `timeout`, waits that long for one.
#[utoipa::path(get, path = "/v1/changes", params(ChangesParams),
    responses(
        (status = 200, description = "The changes after `cursor`, oldest first (none once `timeout` passed without one).", body = ChangesPage),
        (status = 400, description = "`invalid_request`, `invalid_cursor` or `invalid_limit`.", body = Problem),
    ),
    security(("bearer" = [])))]
pub async fn changes(
    State(state): State<AppState>,
    User(owner): User,
    ApiQuery(q): ApiQuery<ChangesParams>,
) -> Result<Json<ChangesPage>, ApiError> {
    let cursor = q.cursor.unwrap_or(0);
    if cursor < 0 {
        return Err(ApiError::new(
            ProblemCode::InvalidCursor,
            format!("a cursor is 0 or a cursor the feed gave out, got {cursor}"),
        ));
    }
    let limit = page_limit(q.limit)?;
    let wait = Duration::from_secs(q.timeout.unwrap_or(0)).min(MAX_LONG_POLL);
    let deadline = Instant::now() + wait;
    loop {
        // Armed before the query, so a change committed between the query and the wait
        // still wakes it.
        let woken = state.tree_wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let page = state.store.changes(&owner, cursor, limit).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if !page.changes.is_empty() || left.is_zero() {
            return Ok(Json(ChangesPage {
                changes: page.changes.iter().map(ChangeInfo::from).collect(),
                cursor: page.cursor,
                has_more: page.has_more,
            }));
        }
        let _ = tokio::time::timeout(left.min(LONG_POLL_RECHECK), woken).await;
    }
}
