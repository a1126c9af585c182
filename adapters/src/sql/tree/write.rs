//! Changing the tree inside a transaction. Every change takes the owner's row in `change_seq`
//! first and keeps it until commit, so one owner's changes are numbered without gaps in the
//! order they commit: a client that has read the feed up to `n` can never later find a change
//! numbered below `n` that it missed.
use filestore_domain::paths::fold_key;
use filestore_domain::tree::{ChangeKind, Expect};
use filestore_domain::{FileId, OwnerId};
use sqlx::AnyConnection;

use super::lookup::{check_nesting, head, spelled};
use crate::clock::now_ms;
use crate::meta::StoreError;
use crate::sql::error::db;
use crate::sql::rows;
use crate::tree::{Change, Entry};

/// Takes the owner's change row until commit (see the module documentation).
pub(super) async fn lock_owner(
    conn: &mut AnyConnection,
    owner: &OwnerId,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO change_seq (owner, seq) VALUES ($1, 0)
         ON CONFLICT (owner) DO UPDATE SET seq = change_seq.seq",
    )
    .bind(owner.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn next_seq(conn: &mut AnyConnection, owner: &OwnerId) -> Result<i64, StoreError> {
    sqlx::query_scalar("UPDATE change_seq SET seq = seq + 1 WHERE owner = $1 RETURNING seq")
        .bind(owner.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn record_change(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    seq: i64,
    kind: ChangeKind,
    path: &str,
    from_path: Option<&str>,
    file_id: &FileId,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO changes (owner, seq, kind, path, from_path, file_id, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(owner.as_str())
    .bind(seq)
    .bind(kind.as_str())
    .bind(path)
    .bind(from_path)
    .bind(file_id.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

pub(super) async fn change_at(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    seq: i64,
) -> Result<Change, StoreError> {
    let row = sqlx::query(
        "SELECT c.seq, c.kind, c.path, c.from_path, c.file_id, c.at,
                f.size, f.uploaded_sha256, f.status
         FROM changes c JOIN files f ON f.id = c.file_id
         WHERE c.owner = $1 AND c.seq = $2",
    )
    .bind(owner.as_str())
    .bind(seq)
    .fetch_one(&mut *conn)
    .await
    .map_err(db)?;
    rows::change(&row)
}

/// Makes `file_id` the head of `path` as a new version, if `expect` holds.
pub(super) async fn set_head(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
    file_id: &FileId,
    expect: Expect,
) -> Result<i64, StoreError> {
    let existing = head(conn, owner, path).await?;
    let live = existing
        .as_ref()
        .filter(|e| e.trashed_at_ms.is_none())
        .map(|e| e.rev);
    expect.check(live).map_err(StoreError::RevConflict)?;
    if live.is_none() {
        check_nesting(conn, owner, path).await?;
    }
    // One name, one file: a path the tree holds in another spelling keeps that
    // spelling; a new one takes its folders' spelling.
    let path = match existing {
        Some(e) => e.path,
        None => spelled(conn, owner, path, false).await?,
    };
    let path = path.as_str();
    let seq = next_seq(conn, owner).await?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO entries (owner, path, path_key, file_id, rev, trashed_at, modified_at)
         VALUES ($1, $2, $3, $4, $5, NULL, $6)
         ON CONFLICT (owner, path) DO UPDATE SET file_id = excluded.file_id,
             path_key = excluded.path_key, rev = excluded.rev, trashed_at = NULL,
             modified_at = excluded.modified_at",
    )
    .bind(owner.as_str())
    .bind(path)
    .bind(fold_key(path))
    .bind(file_id.to_string())
    .bind(seq)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    sqlx::query(
        "INSERT INTO versions (owner, path, path_key, rev, file_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(owner.as_str())
    .bind(path)
    .bind(fold_key(path))
    .bind(seq)
    .bind(file_id.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let kind = if live.is_some() {
        ChangeKind::Update
    } else {
        ChangeKind::Create
    };
    record_change(conn, owner, seq, kind, path, None, file_id, now).await?;
    Ok(seq)
}

/// Finalize's part of the tree: the finalized file `id` becomes the head of its path, if the
/// `parentRev` it was registered with still holds; returns the revision it now has there.
pub(crate) async fn commit_version(
    conn: &mut AnyConnection,
    id: &FileId,
) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT owner, path, parent_rev FROM files WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let owner = rows::owner(&rows::text(&row, "owner")?)?;
    let path = rows::text(&row, "path")?;
    let expect = Expect::from_parent_rev(rows::opt_int(&row, "parent_rev")?);
    lock_owner(conn, &owner).await?;
    set_head(conn, &owner, &path, id, expect).await
}

/// Moves `entries` to trash, or back out of it, each as a change of its own (a delete,
/// or a create).
pub(super) async fn set_trashed(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    entries: &[Entry],
    trashed: bool,
) -> Result<Vec<Change>, StoreError> {
    let now = now_ms();
    let mut changes = Vec::with_capacity(entries.len());
    for e in entries {
        if !trashed {
            check_nesting(conn, owner, &e.path).await?;
        }
        let seq = next_seq(conn, owner).await?;
        sqlx::query(
            "UPDATE entries SET trashed_at = $3, rev = $4, modified_at = $5
             WHERE owner = $1 AND path = $2",
        )
        .bind(owner.as_str())
        .bind(&e.path)
        .bind(trashed.then_some(now))
        .bind(seq)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
        let kind = if trashed {
            ChangeKind::Delete
        } else {
            ChangeKind::Create
        };
        record_change(conn, owner, seq, kind, &e.path, None, &e.file_id, now).await?;
        changes.push(change_at(conn, owner, seq).await?);
    }
    Ok(changes)
}

/// Removes the entry at exactly `path`; its versions stay.
pub(super) async fn remove_entry(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM entries WHERE owner = $1 AND path = $2")
        .bind(owner.as_str())
        .bind(path)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}
