//! Reading the tree inside a transaction: a path's head in any spelling, a folder's contents,
//! a path's versions, and the checks a write makes before it changes anything.
use filestore_domain::OwnerId;
use filestore_domain::paths::fold_key;
use filestore_domain::tree;
use sqlx::AnyConnection;

use crate::meta::StoreError;
use crate::sql::error::db;
use crate::sql::rows;
use crate::tree::{Entry, Version};

/// The columns [`rows::entry`] reads, and where they come from.
pub(super) const ENTRY_COLUMNS: &str = "e.path, e.file_id, e.rev, e.trashed_at, e.modified_at,
     f.size, f.uploaded_sha256, f.content_type, f.status
     FROM entries e JOIN files f ON f.id = e.file_id";

/// Where the owner's change feed stands, as this transaction sees it.
pub(super) async fn cursor_in(
    conn: &mut AnyConnection,
    owner: &OwnerId,
) -> Result<i64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM change_seq WHERE owner = $1")
        .bind(owner.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    Ok(seq.unwrap_or(0))
}

/// The head of the path that `path` names in any spelling (case, Unicode normalization),
/// live or trashed; the exact spelling first where data from before the name policy holds two.
pub(super) async fn head(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
) -> Result<Option<Entry>, StoreError> {
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} WHERE e.owner = $1 AND e.path_key = $2
         ORDER BY (e.path = $3) DESC, e.path LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(owner.as_str())
        .bind(fold_key(path))
        .bind(path)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    row.as_ref().map(rows::entry).transpose()
}

/// `path` with its folders spelled as the tree's live files already spell them
/// (`Docs/b` becomes `docs/b` beside `docs/a`), so one folder never shows under two
/// names; with `whole`, `path` itself too, where it is a folder already.
pub(super) async fn spelled(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
    whole: bool,
) -> Result<String, StoreError> {
    let parts: Vec<&str> = path.split('/').collect();
    let deepest = if whole { parts.len() } else { parts.len() - 1 };
    for depth in (1..=deepest).rev() {
        let folder_key = format!("{}/", fold_key(&parts[..depth].join("/")));
        let known: Option<String> = sqlx::query_scalar(
            "SELECT path FROM entries WHERE owner = $1 AND path_key >= $2
               AND ($3 IS NULL OR path_key < $3) AND trashed_at IS NULL
               AND substr(path_key, 1, length($2)) = $2 ORDER BY path_key LIMIT 1",
        )
        .bind(owner.as_str())
        .bind(&folder_key)
        .bind(key_range_end(&folder_key))
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        if let Some(known) = known {
            let mut spelled: Vec<&str> = known.split('/').take(depth).collect();
            spelled.extend(&parts[depth..]);
            return Ok(spelled.join("/"));
        }
    }
    Ok(path.to_owned())
}

/// Entries inside `folder` (in any spelling), live or trashed, in path order.
pub(super) async fn inside(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    folder: &str,
    trashed: bool,
    limit: Option<i64>,
) -> Result<Vec<Entry>, StoreError> {
    let prefix = format!("{}/", fold_key(folder));
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} WHERE e.owner = $1 AND (e.trashed_at IS NOT NULL) = $2
           AND e.path_key >= $3 AND ($5 IS NULL OR e.path_key < $5)
           AND substr(e.path_key, 1, length($3)) = $3 ORDER BY e.path LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(owner.as_str())
        .bind(trashed)
        .bind(&prefix)
        .bind(limit.unwrap_or(i64::MAX))
        .bind(key_range_end(&prefix))
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
    rows.iter().map(rows::entry).collect()
}

/// A live file may appear at `path`: no live file is a folder above it, and it is not
/// itself a folder of live files.
pub(super) async fn check_nesting(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
) -> Result<(), StoreError> {
    for folder in tree::ancestors(path) {
        if head(conn, owner, folder)
            .await?
            .is_some_and(|e| e.trashed_at_ms.is_none())
        {
            return Err(StoreError::ParentIsFile(folder.to_owned()));
        }
    }
    if !inside(conn, owner, path, false, Some(1)).await?.is_empty() {
        return Err(StoreError::PathIsFolder(path.to_owned()));
    }
    Ok(())
}

/// The live (or trashed) entries a path operation acts on: the file at `path`, or else every
/// such file inside the folder `path`.
pub(super) async fn targets(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
    trashed: bool,
) -> Result<(Vec<Entry>, bool), StoreError> {
    if let Some(e) = head(conn, owner, path).await?
        && e.trashed_at_ms.is_some() == trashed
    {
        return Ok((vec![e], false));
    }
    let within = inside(conn, owner, path, trashed, None).await?;
    if within.is_empty() {
        return Err(StoreError::PathNotFound(path.to_owned()));
    }
    Ok((within, true))
}

/// The versions of the path `path` names in any spelling, newest first.
pub(super) async fn versions_in(
    conn: &mut AnyConnection,
    owner: &OwnerId,
    path: &str,
) -> Result<Vec<Version>, StoreError> {
    let rows = sqlx::query(
        "SELECT v.rev, v.file_id, v.created_at, f.size, f.uploaded_sha256, f.status
         FROM versions v JOIN files f ON f.id = v.file_id
         WHERE v.owner = $1 AND v.path_key = $2 ORDER BY v.rev DESC",
    )
    .bind(owner.as_str())
    .bind(fold_key(path))
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    rows.iter().map(rows::version).collect()
}

/// The end of the key range that holds every key starting with `prefix`: keys compare
/// bytewise (SQLite BINARY, PostgreSQL "C"), which for UTF-8 is code point order, so every key
/// that starts with `prefix` sorts before `prefix` with its last character replaced by the
/// next one. The range lets the `(owner, path_key)` index find a folder's contents instead of
/// testing every key of the owner. `None` (no end) for an empty prefix, or one of nothing but
/// the last code point.
pub(super) fn key_range_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `path` with its first `depth` components replaced by `to`.
pub(super) fn respelled(path: &str, depth: usize, to: &str) -> String {
    let rest: Vec<&str> = path.split('/').skip(depth).collect();
    if rest.is_empty() {
        to.to_owned()
    } else {
        format!("{to}/{}", rest.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_range_holds_every_key_with_the_prefix_and_nothing_after() {
        let end = key_range_end("docs/").unwrap();
        for inside in [
            "docs/",
            "docs/a",
            "docs/\u{10FFFF}x",
            "docs/\u{10FFFF}\u{10FFFF}",
        ] {
            assert!(inside >= "docs/" && inside < end.as_str(), "{inside:?}");
        }
        for outside in ["docs0", "docsa", "doct"] {
            assert!(outside >= end.as_str(), "{outside:?}");
        }
        assert_eq!(key_range_end(""), None);
        assert_eq!(key_range_end("\u{10FFFF}"), None);
        assert_eq!(key_range_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(
            key_range_end("\u{D7FF}").as_deref(),
            Some("\u{E000}"),
            "past the surrogates"
        );
    }

    #[test]
    fn a_moved_path_keeps_what_lies_below_the_moved_folder() {
        assert_eq!(
            respelled("Docs/sub/a.txt", 1, "archive/docs"),
            "archive/docs/sub/a.txt"
        );
        assert_eq!(respelled("docs", 1, "Docs"), "Docs");
    }
}
