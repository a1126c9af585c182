//! The tree's SQL, shared by both engines: the row decoders and the `tree_store!` macro that
//! expands it per store. The tree's types and its port are in [`filestore_ports::tree`].
use filestore_domain::FileId;
use filestore_domain::tree::ChangeKind;
use sqlx::ColumnIndex;
use std::str::FromStr;

pub use filestore_ports::tree::*;

use crate::meta::StoreError;
use crate::rows::{StoreRow, parse_status, u64_col};

fn file_id<R: StoreRow>(row: &R) -> Result<FileId, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    FileId::from_str(&row.text("file_id")?)
        .map_err(|e| StoreError::Corrupt(format!("file id: {e}")))
}

pub(crate) fn entry_from_row<R: StoreRow>(row: &R) -> Result<Entry, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(Entry {
        path: row.text("path")?,
        file_id: file_id(row)?,
        rev: row.int("rev")?,
        trashed_at_ms: row.opt_int("trashed_at")?,
        modified_at_ms: row.int("modified_at")?,
        size: u64_col(row, "size")?,
        sha256: row.opt_text("uploaded_sha256")?,
        content_type: row.text("content_type")?,
        status: parse_status(&row.text("status")?)?,
    })
}

pub(crate) fn change_from_row<R: StoreRow>(row: &R) -> Result<Change, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(Change {
        seq: row.int("seq")?,
        kind: ChangeKind::from_str(&row.text("kind")?).map_err(StoreError::Corrupt)?,
        path: row.text("path")?,
        from_path: row.opt_text("from_path")?,
        file_id: file_id(row)?,
        size: u64_col(row, "size")?,
        sha256: row.opt_text("uploaded_sha256")?,
        status: parse_status(&row.text("status")?)?,
        at_ms: row.int("at")?,
    })
}

pub(crate) fn version_from_row<R: StoreRow>(row: &R) -> Result<Version, StoreError>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    Ok(Version {
        rev: row.int("rev")?,
        file_id: file_id(row)?,
        size: u64_col(row, "size")?,
        sha256: row.opt_text("uploaded_sha256")?,
        status: parse_status(&row.text("status")?)?,
        created_at_ms: row.int("created_at")?,
    })
}

/// The end of the key range that holds every key starting with `prefix`: keys compare
/// bytewise (SQLite BINARY, PostgreSQL "C"), which for UTF-8 is code point order, so every key
/// that starts with `prefix` sorts before `prefix` with its last character replaced by the
/// next one. The range lets the `(owner, path_key)` index find a folder's contents instead of
/// testing every key of the owner. `None` (no end) for an empty prefix, or one of nothing but
/// the last code point.
pub(crate) fn key_range_end(prefix: &str) -> Option<String> {
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
pub(crate) fn respelled(path: &str, depth: usize, to: &str) -> String {
    let rest: Vec<&str> = path.split('/').skip(depth).collect();
    if rest.is_empty() {
        to.to_owned()
    } else {
        format!("{to}/{}", rest.join("/"))
    }
}

/// A store's turn to write: SQLite takes one writer at a time inside the process, PostgreSQL
/// needs none.
pub(crate) type WriteTurn<'a> = Option<tokio::sync::MutexGuard<'a, ()>>;

/// The tree's SQL, one text for both databases (sqlx binds `$N` on SQLite too), expanded once
/// per store: `$store` gets [`TreeStore`], and the module gets `commit_version`, which the
/// store's finalize calls inside its own transaction. `$snapshot` starts a transaction whose
/// reads see one snapshot.
macro_rules! tree_store {
    ($store:ty, $db:ty, $snapshot:literal) => {
        use async_trait::async_trait;
        use filestore_domain::paths::fold_key;
        use filestore_domain::tree::{self, ChangeKind, Expect};
        use filestore_domain::{FileId, FileStatus, OwnerId};
        use sqlx::{Row, Transaction};

        use $crate::clock::now_ms;
        use $crate::meta::StoreError;
        use $crate::tree::{
            Change, ChangePage, Entry, ListQuery, Listing, TreeStore, Version, change_from_row,
            entry_from_row, key_range_end, respelled, version_from_row,
        };

        type Tx<'c> = Transaction<'c, $db>;

        const ENTRY_COLUMNS: &str = "e.path, e.file_id, e.rev, e.trashed_at, e.modified_at,
             f.size, f.uploaded_sha256, f.content_type, f.status
             FROM entries e JOIN files f ON f.id = e.file_id";

        /// Takes the owner's change row until commit (see the module documentation).
        async fn lock_owner(tx: &mut Tx<'_>, owner: &OwnerId) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO change_seq (owner, seq) VALUES ($1, 0)
                 ON CONFLICT (owner) DO UPDATE SET seq = change_seq.seq",
            )
            .bind(owner.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn next_seq(tx: &mut Tx<'_>, owner: &OwnerId) -> Result<i64, StoreError> {
            Ok(sqlx::query_scalar(
                "UPDATE change_seq SET seq = seq + 1 WHERE owner = $1 RETURNING seq",
            )
            .bind(owner.as_str())
            .fetch_one(&mut **tx)
            .await?)
        }

        async fn cursor_in(tx: &mut Tx<'_>, owner: &OwnerId) -> Result<i64, StoreError> {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM change_seq WHERE owner = $1")
                    .bind(owner.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
            Ok(seq.unwrap_or(0))
        }

        /// Fills in the folded keys of rows written before paths had them (see
        /// `filestore_domain::paths::fold_key`); a no-op once every row has its key.
        pub(crate) async fn backfill_path_keys(pool: &sqlx::Pool<$db>) -> Result<(), StoreError> {
            for table in ["entries", "versions"] {
                loop {
                    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                        "SELECT DISTINCT owner, path FROM {table} WHERE path_key IS NULL LIMIT 1000"
                    ))
                    .fetch_all(pool)
                    .await?;
                    if rows.is_empty() {
                        break;
                    }
                    for (owner, path) in rows {
                        sqlx::query(&format!(
                            "UPDATE {table} SET path_key = $3 WHERE owner = $1 AND path = $2"
                        ))
                        .bind(&owner)
                        .bind(&path)
                        .bind(fold_key(&path))
                        .execute(pool)
                        .await?;
                    }
                }
            }
            Ok(())
        }

        /// Whether file `id` of `owner` is a version of a path now in trash.
        pub(crate) async fn in_trash(
            pool: &sqlx::Pool<$db>,
            owner: &OwnerId,
            id: &FileId,
        ) -> Result<bool, StoreError> {
            let trashed: Option<i64> = sqlx::query_scalar(
                "SELECT v.rev FROM versions v
                 JOIN entries e ON e.owner = v.owner AND e.path_key = v.path_key
                 WHERE v.owner = $1 AND v.file_id = $2 AND e.trashed_at IS NOT NULL LIMIT 1",
            )
            .bind(owner.as_str())
            .bind(id.to_string())
            .fetch_optional(pool)
            .await?;
            Ok(trashed.is_some())
        }

        /// The head of the path that `path` names in any spelling (case, Unicode
        /// normalization), live or trashed; the exact spelling first where data from before
        /// the name policy holds two.
        async fn head(
            tx: &mut Tx<'_>,
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
                .fetch_optional(&mut **tx)
                .await?;
            row.as_ref().map(entry_from_row).transpose()
        }

        /// `path` with its folders spelled as the tree's live files already spell them
        /// (`Docs/b` becomes `docs/b` beside `docs/a`), so one folder never shows under two
        /// names; with `whole`, `path` itself too, where it is a folder already.
        async fn spelled(
            tx: &mut Tx<'_>,
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
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(known) = known {
                    let mut spelled: Vec<&str> = known.split('/').take(depth).collect();
                    spelled.extend(&parts[depth..]);
                    return Ok(spelled.join("/"));
                }
            }
            Ok(path.to_owned())
        }

        /// Entries inside `folder` (in any spelling), live or trashed, in path order.
        async fn inside(
            tx: &mut Tx<'_>,
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
                .fetch_all(&mut **tx)
                .await?;
            rows.iter().map(entry_from_row).collect()
        }

        /// A live file may appear at `path`: no live file is a folder above it, and it is not
        /// itself a folder of live files.
        async fn check_nesting(
            tx: &mut Tx<'_>,
            owner: &OwnerId,
            path: &str,
        ) -> Result<(), StoreError> {
            for folder in tree::ancestors(path) {
                if head(tx, owner, folder)
                    .await?
                    .is_some_and(|e| e.trashed_at_ms.is_none())
                {
                    return Err(StoreError::ParentIsFile(folder.to_owned()));
                }
            }
            if !inside(tx, owner, path, false, Some(1)).await?.is_empty() {
                return Err(StoreError::PathIsFolder(path.to_owned()));
            }
            Ok(())
        }

        #[allow(clippy::too_many_arguments)]
        async fn record_change(
            tx: &mut Tx<'_>,
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
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn change_at(
            tx: &mut Tx<'_>,
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
            .fetch_one(&mut **tx)
            .await?;
            change_from_row(&row)
        }

        /// Makes `file_id` the head of `path` as a new version, if `expect` holds.
        async fn set_head(
            tx: &mut Tx<'_>,
            owner: &OwnerId,
            path: &str,
            file_id: &FileId,
            expect: Expect,
        ) -> Result<i64, StoreError> {
            let existing = head(tx, owner, path).await?;
            let live = existing
                .as_ref()
                .filter(|e| e.trashed_at_ms.is_none())
                .map(|e| e.rev);
            expect.check(live).map_err(StoreError::RevConflict)?;
            if live.is_none() {
                check_nesting(tx, owner, path).await?;
            }
            // One name, one file: a path the tree holds in another spelling keeps that
            // spelling; a new one takes its folders' spelling.
            let path = match existing {
                Some(e) => e.path,
                None => spelled(tx, owner, path, false).await?,
            };
            let path = path.as_str();
            let seq = next_seq(tx, owner).await?;
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
            .execute(&mut **tx)
            .await?;
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
            .execute(&mut **tx)
            .await?;
            let kind = if live.is_some() {
                ChangeKind::Update
            } else {
                ChangeKind::Create
            };
            record_change(tx, owner, seq, kind, path, None, file_id, now).await?;
            Ok(seq)
        }

        /// Finalize's part of the tree: the finalized file `id` becomes the head of its path,
        /// if the `parentRev` it was registered with still holds.
        pub(crate) async fn commit_version(
            tx: &mut Tx<'_>,
            id: &FileId,
        ) -> Result<(), StoreError> {
            let row = sqlx::query("SELECT owner, path, parent_rev FROM files WHERE id = $1")
                .bind(id.to_string())
                .fetch_one(&mut **tx)
                .await?;
            let owner: String = row.try_get("owner")?;
            let owner: OwnerId = owner
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("owner: {e}")))?;
            let path: String = row.try_get("path")?;
            let expect = Expect::from_parent_rev(row.try_get("parent_rev")?);
            lock_owner(tx, &owner).await?;
            set_head(tx, &owner, &path, id, expect).await?;
            Ok(())
        }

        /// Moves `entries` to trash, or back out of it, each as a change of its own (a delete,
        /// or a create).
        async fn set_trashed(
            tx: &mut Tx<'_>,
            owner: &OwnerId,
            entries: &[Entry],
            trashed: bool,
        ) -> Result<Vec<Change>, StoreError> {
            let now = now_ms();
            let mut changes = Vec::with_capacity(entries.len());
            for e in entries {
                if !trashed {
                    check_nesting(tx, owner, &e.path).await?;
                }
                let seq = next_seq(tx, owner).await?;
                sqlx::query(
                    "UPDATE entries SET trashed_at = $3, rev = $4, modified_at = $5
                     WHERE owner = $1 AND path = $2",
                )
                .bind(owner.as_str())
                .bind(&e.path)
                .bind(trashed.then_some(now))
                .bind(seq)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let kind = if trashed {
                    ChangeKind::Delete
                } else {
                    ChangeKind::Create
                };
                record_change(tx, owner, seq, kind, &e.path, None, &e.file_id, now).await?;
                changes.push(change_at(tx, owner, seq).await?);
            }
            Ok(changes)
        }

        /// The live (or trashed) entries a path operation acts on: the file at `path`, or
        /// else every such file inside the folder `path`.
        async fn targets(
            tx: &mut Tx<'_>,
            owner: &OwnerId,
            path: &str,
            trashed: bool,
        ) -> Result<(Vec<Entry>, bool), StoreError> {
            if let Some(e) = head(tx, owner, path).await? {
                if e.trashed_at_ms.is_some() == trashed {
                    return Ok((vec![e], false));
                }
            }
            let within = inside(tx, owner, path, trashed, None).await?;
            if within.is_empty() {
                return Err(StoreError::PathNotFound(path.to_owned()));
            }
            Ok((within, true))
        }

        #[async_trait]
        impl TreeStore for $store {
            async fn entry(
                &self,
                owner: &OwnerId,
                path: &str,
            ) -> Result<Option<Entry>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let found = head(&mut tx, owner, path).await?;
                tx.commit().await?;
                Ok(found)
            }

            async fn list_tree(
                &self,
                owner: &OwnerId,
                q: &ListQuery,
            ) -> Result<Listing, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query($snapshot).execute(&mut *tx).await?;
                let cursor = cursor_in(&mut tx, owner).await?;
                let sql = format!(
                    "SELECT {ENTRY_COLUMNS} WHERE e.owner = $1 AND (e.trashed_at IS NOT NULL) = $2
                       AND e.path_key >= $3 AND ($6 IS NULL OR e.path_key < $6)
                       AND substr(e.path_key, 1, length($3)) = $3 AND e.path > $4
                     ORDER BY e.path LIMIT $5"
                );
                let prefix = fold_key(&q.prefix);
                let rows = sqlx::query(&sql)
                    .bind(owner.as_str())
                    .bind(q.trashed)
                    .bind(&prefix)
                    .bind(q.after.as_deref().unwrap_or(""))
                    .bind(i64::from(q.limit))
                    .bind(key_range_end(&prefix))
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Listing {
                    entries: rows.iter().map(entry_from_row).collect::<Result<_, _>>()?,
                    cursor,
                })
            }

            async fn move_path(
                &self,
                owner: &OwnerId,
                from: &str,
                to: &str,
                expect: Expect,
            ) -> Result<Vec<Change>, StoreError> {
                // Compared by key, so `a` cannot move into `A/b`; a rename that changes only
                // the case or the normalization of a name is a move like any other.
                let (from_key, to_key) = (fold_key(from), fold_key(to));
                if from_key != to_key || from == to {
                    tree::check_move(&from_key, &to_key)
                        .map_err(|why| StoreError::InvalidMove(why.to_owned()))?;
                }
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                lock_owner(&mut tx, owner).await?;
                let (moving, folder) = targets(&mut tx, owner, from, false).await?;
                let current = (!folder).then(|| moving[0].rev);
                expect.check(current).map_err(StoreError::RevConflict)?;
                // `to` as the tree spells its folders, itself too when it names a folder that
                // exists already (the contents join it), unless the move only re-spells `from`.
                let from_depth = from.split('/').count();
                let to = spelled(&mut tx, owner, to, from_key != to_key).await?;
                let mut seqs = Vec::with_capacity(moving.len());
                let now = now_ms();
                for e in &moving {
                    // By components, not by spelling: every entry found lies at `from` or in
                    // it by key, whatever spelling its folders have.
                    let dest = respelled(&e.path, from_depth, &to);
                    match head(&mut tx, owner, &dest).await? {
                        // The file itself, renamed in case only.
                        Some(d) if d.path == e.path => {}
                        Some(d) if d.trashed_at_ms.is_none() => {
                            return Err(StoreError::PathTaken(dest));
                        }
                        // A trashed file there is replaced; its versions stay, as the older
                        // history of the path, so nothing it held is lost.
                        Some(d) => {
                            sqlx::query("DELETE FROM entries WHERE owner = $1 AND path = $2")
                                .bind(owner.as_str())
                                .bind(&d.path)
                                .execute(&mut *tx)
                                .await?;
                        }
                        None => {}
                    }
                    let seq = next_seq(&mut tx, owner).await?;
                    sqlx::query(
                        "UPDATE entries SET path = $3, path_key = $4, rev = $5, modified_at = $6
                         WHERE owner = $1 AND path = $2",
                    )
                    .bind(owner.as_str())
                    .bind(&e.path)
                    .bind(&dest)
                    .bind(fold_key(&dest))
                    .bind(seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE versions SET path = $3, path_key = $4
                         WHERE owner = $1 AND path_key = $2",
                    )
                    .bind(owner.as_str())
                    .bind(fold_key(&e.path))
                    .bind(&dest)
                    .bind(fold_key(&dest))
                    .execute(&mut *tx)
                    .await?;
                    let kind = ChangeKind::Move;
                    record_change(&mut tx, owner, seq, kind, &dest, Some(&e.path), &e.file_id, now)
                        .await?;
                    seqs.push(seq);
                }
                // Checked once everything has moved, so a folder's own files never count
                // against it; a failure rolls the whole move back.
                for e in &moving {
                    check_nesting(&mut tx, owner, &respelled(&e.path, from_depth, &to)).await?;
                }
                let mut changes = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    changes.push(change_at(&mut tx, owner, seq).await?);
                }
                tx.commit().await?;
                Ok(changes)
            }

            async fn trash_path(
                &self,
                owner: &OwnerId,
                path: &str,
                expect: Expect,
            ) -> Result<Vec<Change>, StoreError> {
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                lock_owner(&mut tx, owner).await?;
                let (trashing, folder) = targets(&mut tx, owner, path, false).await?;
                let current = (!folder).then(|| trashing[0].rev);
                expect.check(current).map_err(StoreError::RevConflict)?;
                let changes = set_trashed(&mut tx, owner, &trashing, true).await?;
                tx.commit().await?;
                Ok(changes)
            }

            async fn restore_path(
                &self,
                owner: &OwnerId,
                path: &str,
            ) -> Result<Vec<Change>, StoreError> {
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                lock_owner(&mut tx, owner).await?;
                let (restoring, _) = targets(&mut tx, owner, path, true).await?;
                let changes = set_trashed(&mut tx, owner, &restoring, false).await?;
                tx.commit().await?;
                Ok(changes)
            }

            async fn purge_path(&self, owner: &OwnerId, path: &str) -> Result<u64, StoreError> {
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                lock_owner(&mut tx, owner).await?;
                let (purging, _) = targets(&mut tx, owner, path, true).await?;
                let mut purged = 0u64;
                for e in &purging {
                    let versions = versions_in(&mut tx, owner, &e.path).await?;
                    if let Some(busy) = versions.iter().find(|v| !v.status.is_settled()) {
                        return Err(StoreError::Busy(format!(
                            "version {} of {} is still {}; purge it once it settles",
                            busy.rev, e.path, busy.status
                        )));
                    }
                    sqlx::query("DELETE FROM entries WHERE owner = $1 AND path = $2")
                        .bind(owner.as_str())
                        .bind(&e.path)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM versions WHERE owner = $1 AND path_key = $2")
                        .bind(owner.as_str())
                        .bind(fold_key(&e.path))
                        .execute(&mut *tx)
                        .await?;
                    for v in &versions {
                        // A ready file's raw bytes went when its chunks were indexed, unless
                        // that removal failed: removing what is absent costs one request.
                        sqlx::query(
                            "INSERT INTO orphaned_objects (key, since)
                             SELECT raw_key, $2 FROM files WHERE id = $1
                             ON CONFLICT (key) DO NOTHING",
                        )
                        .bind(v.file_id.to_string())
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await?;
                        // Without its manifest nothing references the file's chunks, so the
                        // sweep reclaims those no other file shares.
                        sqlx::query("DELETE FROM file_chunks WHERE file_id = $1")
                            .bind(v.file_id.to_string())
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("UPDATE files SET status = $2, updated_at = $3 WHERE id = $1")
                            .bind(v.file_id.to_string())
                            .bind(FileStatus::Deleted.as_str())
                            .bind(now_ms())
                            .execute(&mut *tx)
                            .await?;
                    }
                    purged += versions.len() as u64;
                }
                tx.commit().await?;
                Ok(purged)
            }

            async fn orphaned_objects(&self, limit: u32) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT key FROM orphaned_objects ORDER BY since, key LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn forget_orphaned_object(&self, key: &str) -> Result<(), StoreError> {
                let _turn = self.write_turn().await;
                sqlx::query("DELETE FROM orphaned_objects WHERE key = $1")
                    .bind(key)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn versions(
                &self,
                owner: &OwnerId,
                path: &str,
            ) -> Result<Vec<Version>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let found = versions_in(&mut tx, owner, path).await?;
                tx.commit().await?;
                if found.is_empty() {
                    return Err(StoreError::PathNotFound(path.to_owned()));
                }
                Ok(found)
            }

            async fn restore_version(
                &self,
                owner: &OwnerId,
                path: &str,
                rev: i64,
            ) -> Result<Change, StoreError> {
                let _turn = self.write_turn().await;
                let mut tx = self.pool.begin().await?;
                lock_owner(&mut tx, owner).await?;
                let version = versions_in(&mut tx, owner, path)
                    .await?
                    .into_iter()
                    .find(|v| v.rev == rev)
                    .ok_or_else(|| StoreError::PathNotFound(format!("{path} at revision {rev}")))?;
                if version.status != FileStatus::Ready {
                    return Err(StoreError::VersionUnavailable(format!(
                        "revision {rev} of {path} is {}, not ready",
                        version.status
                    )));
                }
                let seq = set_head(&mut tx, owner, path, &version.file_id, Expect::Any).await?;
                let change = change_at(&mut tx, owner, seq).await?;
                tx.commit().await?;
                Ok(change)
            }

            async fn changes(
                &self,
                owner: &OwnerId,
                cursor: i64,
                limit: u32,
            ) -> Result<ChangePage, StoreError> {
                let rows = sqlx::query(
                    "SELECT c.seq, c.kind, c.path, c.from_path, c.file_id, c.at,
                            f.size, f.uploaded_sha256, f.status
                     FROM changes c JOIN files f ON f.id = c.file_id
                     WHERE c.owner = $1 AND c.seq > $2 ORDER BY c.seq LIMIT $3",
                )
                .bind(owner.as_str())
                .bind(cursor)
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool)
                .await?;
                let mut changes = rows
                    .iter()
                    .map(change_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let has_more = changes.len() > limit as usize;
                changes.truncate(limit as usize);
                let cursor = changes.last().map_or(cursor, |c| c.seq);
                Ok(ChangePage {
                    changes,
                    cursor,
                    has_more,
                })
            }
        }

        async fn versions_in(
            tx: &mut Tx<'_>,
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
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(version_from_row).collect()
        }
    };
}
pub(crate) use tree_store;

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
