//! The sync client's own database, `DIR/.filestore/state.db`: the last agreed tree (base), the
//! server's tree as the change feed last left it (mirror), and the feed cursor. Every step
//! that completes is recorded at once, so an interrupted sync resumes where it stopped.
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::plan::{Base, Remote};

#[derive(Debug, thiserror::Error)]
#[error("the sync state database: {0}")]
pub struct StateError(#[from] sqlx::Error);

/// A base entry with what the local file looked like when it was recorded, so an unchanged
/// file is recognised by size and mtime without hashing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub base: Base,
    pub size: u64,
    pub mtime_ns: i64,
    pub synced_at_ns: i64,
}

pub struct State {
    pool: SqlitePool,
}

const SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS base (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
        rev INTEGER NOT NULL, file_id TEXT NOT NULL, size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL, synced_at_ns INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mirror (path TEXT PRIMARY KEY, file_id TEXT NOT NULL,
        rev INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn remote_from(row: &sqlx::sqlite::SqliteRow) -> Result<(String, Remote), sqlx::Error> {
    Ok((
        row.try_get("path")?,
        Remote {
            file_id: row.try_get("file_id")?,
            rev: row.try_get("rev")?,
            sha256: row.try_get("sha256")?,
            size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
            status: row
                .try_get::<String, _>("status")?
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        },
    ))
}

impl State {
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StateError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn cursor(&self) -> Result<Option<i64>, StateError> {
        Ok(self
            .meta("cursor")
            .await?
            .and_then(|c| i64::from_str(&c).ok()))
    }

    pub async fn base(&self) -> Result<BTreeMap<String, Synced>, StateError> {
        let rows = sqlx::query("SELECT * FROM base")
            .fetch_all(&self.pool)
            .await?;
        let mut out = BTreeMap::new();
        for row in rows {
            out.insert(
                row.try_get("path")?,
                Synced {
                    base: Base {
                        sha256: row.try_get("sha256")?,
                        rev: row.try_get("rev")?,
                        file_id: row.try_get("file_id")?,
                    },
                    size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
                    mtime_ns: row.try_get("mtime_ns")?,
                    synced_at_ns: row.try_get("synced_at_ns")?,
                },
            );
        }
        Ok(out)
    }

    pub async fn record(&self, path: &str, s: &Synced) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO base (path, sha256, rev, file_id, size, mtime_ns, synced_at_ns)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, rev = excluded.rev,
               file_id = excluded.file_id, size = excluded.size, mtime_ns = excluded.mtime_ns,
               synced_at_ns = excluded.synced_at_ns",
        )
        .bind(path)
        .bind(&s.base.sha256)
        .bind(s.base.rev)
        .bind(&s.base.file_id)
        .bind(to_i64(s.size))
        .bind(s.mtime_ns)
        .bind(s.synced_at_ns)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn forget(&self, path: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM base WHERE path = $1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn mirror(&self) -> Result<BTreeMap<String, Remote>, StateError> {
        let rows = sqlx::query("SELECT * FROM mirror")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(remote_from).collect::<Result<_, _>>()?)
    }

    /// Replaces the mirror and the cursor, in one transaction.
    pub async fn save_mirror(
        &self,
        mirror: &BTreeMap<String, Remote>,
        cursor: i64,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM mirror").execute(&mut *tx).await?;
        for (path, r) in mirror {
            sqlx::query(
                "INSERT INTO mirror (path, file_id, rev, sha256, size, status)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(path)
            .bind(&r.file_id)
            .bind(r.rev)
            .bind(&r.sha256)
            .bind(to_i64(r.size))
            .bind(r.status.as_str())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('cursor', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(cursor.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synced(rev: i64) -> Synced {
        Synced {
            base: Base {
                sha256: "ab".repeat(32),
                rev,
                file_id: "f1".into(),
            },
            size: 3,
            mtime_ns: 1_700_000_000_000_000_000,
            synced_at_ns: 1_700_000_001_000_000_000,
        }
    }

    #[tokio::test]
    async fn what_is_recorded_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        {
            let state = State::open(&db).await.unwrap();
            state.record("a/b.txt", &synced(3)).await.unwrap();
            state.record("a/b.txt", &synced(4)).await.unwrap();
            state.record("gone", &synced(1)).await.unwrap();
            state.forget("gone").await.unwrap();
            let mut mirror = BTreeMap::new();
            mirror.insert(
                "a/b.txt".to_owned(),
                Remote {
                    file_id: "f1".into(),
                    rev: 4,
                    sha256: "ab".repeat(32),
                    size: 3,
                    status: filestore_domain::FileStatus::Ready,
                },
            );
            state.save_mirror(&mirror, 9).await.unwrap();
        }
        let state = State::open(&db).await.unwrap();
        let base = state.base().await.unwrap();
        assert_eq!(base.len(), 1);
        assert_eq!(base["a/b.txt"], synced(4));
        assert_eq!(state.mirror().await.unwrap()["a/b.txt"].rev, 4);
        assert_eq!(state.cursor().await.unwrap(), Some(9));
    }
}
