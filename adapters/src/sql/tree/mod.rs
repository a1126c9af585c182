//! The user's tree on the metadata store: the head of each path, its versions, trash, and the
//! change feed a sync client follows. The rules are in `filestore_domain::tree`; this is where
//! they meet the database, in one SQL text for both engines.
use async_trait::async_trait;
use filestore_domain::paths::fold_key;
use filestore_domain::tree::{self, ChangeKind, Expect};
use filestore_domain::{FileId, FileStatus, OwnerId};

use super::error::db;
use super::rows;
use super::{SqlStore, files};
use crate::clock::now_ms;
use crate::meta::StoreError;
use crate::tree::{Change, ChangePage, Entry, ListQuery, Listing, TreeStore, Version};
use lookup::{
    ENTRY_COLUMNS, check_nesting, cursor_in, head, key_range_end, respelled, spelled, targets,
    versions_in,
};
use write::{change_at, lock_owner, next_seq, record_change, remove_entry, set_head, set_trashed};

mod lookup;
mod write;

pub(crate) use write::commit_version;

/// Fills in the folded keys of rows written before paths had them (see
/// `filestore_domain::paths::fold_key`); a no-op once every row has its key.
pub(crate) async fn backfill_path_keys(store: &SqlStore) -> Result<(), StoreError> {
    for table in ["entries", "versions"] {
        loop {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "SELECT DISTINCT owner, path FROM {table} WHERE path_key IS NULL LIMIT 1000"
            ))
            .fetch_all(&store.pool)
            .await
            .map_err(db)?;
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
                .execute(&store.pool)
                .await
                .map_err(db)?;
            }
        }
    }
    Ok(())
}

/// Whether file `id` of `owner` is a version of a path now in trash.
pub(crate) async fn in_trash(
    store: &SqlStore,
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
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    Ok(trashed.is_some())
}

#[async_trait]
impl TreeStore for SqlStore {
    async fn entry(&self, owner: &OwnerId, path: &str) -> Result<Option<Entry>, StoreError> {
        let mut tx = self.begin().await?;
        let found = head(&mut tx, owner, path).await?;
        tx.commit().await.map_err(db)?;
        Ok(found)
    }

    async fn list_tree(&self, owner: &OwnerId, q: &ListQuery) -> Result<Listing, StoreError> {
        let mut tx = self.begin().await?;
        if let Some(snapshot) = self.engine.snapshot() {
            sqlx::query(snapshot).execute(&mut *tx).await.map_err(db)?;
        }
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
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Listing {
            entries: rows.iter().map(rows::entry).collect::<Result<_, _>>()?,
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
        let mut tx = self.begin().await?;
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
                    remove_entry(&mut tx, owner, &d.path).await?;
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
            .await
            .map_err(db)?;
            sqlx::query(
                "UPDATE versions SET path = $3, path_key = $4
                 WHERE owner = $1 AND path_key = $2",
            )
            .bind(owner.as_str())
            .bind(fold_key(&e.path))
            .bind(&dest)
            .bind(fold_key(&dest))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            let kind = ChangeKind::Move;
            record_change(
                &mut tx,
                owner,
                seq,
                kind,
                &dest,
                Some(&e.path),
                &e.file_id,
                now,
            )
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
        tx.commit().await.map_err(db)?;
        Ok(changes)
    }

    async fn trash_path(
        &self,
        owner: &OwnerId,
        path: &str,
        expect: Expect,
    ) -> Result<Vec<Change>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.begin().await?;
        lock_owner(&mut tx, owner).await?;
        let (trashing, folder) = targets(&mut tx, owner, path, false).await?;
        let current = (!folder).then(|| trashing[0].rev);
        expect.check(current).map_err(StoreError::RevConflict)?;
        let changes = set_trashed(&mut tx, owner, &trashing, true).await?;
        tx.commit().await.map_err(db)?;
        Ok(changes)
    }

    async fn restore_path(&self, owner: &OwnerId, path: &str) -> Result<Vec<Change>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.begin().await?;
        lock_owner(&mut tx, owner).await?;
        let (restoring, _) = targets(&mut tx, owner, path, true).await?;
        let changes = set_trashed(&mut tx, owner, &restoring, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(changes)
    }

    async fn purge_path(&self, owner: &OwnerId, path: &str) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.begin().await?;
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
            remove_entry(&mut tx, owner, &e.path).await?;
            sqlx::query("DELETE FROM versions WHERE owner = $1 AND path_key = $2")
                .bind(owner.as_str())
                .bind(fold_key(&e.path))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
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
                .await
                .map_err(db)?;
                // Without its manifest nothing references the file's chunks, so the
                // sweep reclaims those no other file shares.
                files::drop_manifest(&mut tx, &v.file_id).await?;
                sqlx::query("UPDATE files SET status = $2, updated_at = $3 WHERE id = $1")
                    .bind(v.file_id.to_string())
                    .bind(FileStatus::Deleted.as_str())
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            purged += versions.len() as u64;
        }
        tx.commit().await.map_err(db)?;
        Ok(purged)
    }

    async fn orphaned_objects(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT key FROM orphaned_objects ORDER BY since, key LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?,
        )
    }

    async fn forget_orphaned_object(&self, key: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM orphaned_objects WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn versions(&self, owner: &OwnerId, path: &str) -> Result<Vec<Version>, StoreError> {
        let mut tx = self.begin().await?;
        let found = versions_in(&mut tx, owner, path).await?;
        tx.commit().await.map_err(db)?;
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
        let mut tx = self.begin().await?;
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
        tx.commit().await.map_err(db)?;
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
        .await
        .map_err(db)?;
        let mut changes = rows
            .iter()
            .map(rows::change)
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
