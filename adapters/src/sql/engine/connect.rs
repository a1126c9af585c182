//! Connecting to each engine and bringing its schema up to date: the pools (SQLite's pragmas
//! and its relaxed second pool, PostgreSQL's replica for lagging reads) and the migrations,
//! which stay one directory per engine.
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::Mutex;

use super::chunk_locks::ChunkLocks;
use super::{Engine, Sqlite};
use crate::meta::StoreError;
use crate::postgres::PostgresOptions;
use crate::sql::error::db;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A store's pools, migrated.
pub(crate) struct Connected {
    pub pool: AnyPool,
    /// For reads that tolerate lag: a replica's pool, or `pool` again.
    pub lagging: AnyPool,
    pub engine: Engine,
}

/// Connects to PostgreSQL and applies migrations (idempotently; concurrent starters serialise
/// on an advisory lock inside sqlx's migrator).
pub(crate) async fn postgres(opts: &PostgresOptions) -> Result<Connected, StoreError> {
    sqlx::any::install_default_drivers();
    let pool = postgres_pool(opts)
        .connect_with(postgres_options(&opts.url)?)
        .await
        .map_err(db)?;
    migrate(&pool, &POSTGRES_MIGRATIONS).await?;
    let lagging = match &opts.replica_url {
        Some(url) => postgres_pool(opts).connect_lazy_with(postgres_options(url)?),
        None => pool.clone(),
    };
    Ok(Connected {
        pool,
        lagging,
        engine: Engine::Postgres,
    })
}

/// Opens (creating if missing) the SQLite database at `path` and applies migrations.
pub(crate) async fn sqlite(path: &Path) -> Result<Connected, StoreError> {
    sqlx::any::install_default_drivers();
    let options = sqlite_options(path)?;
    let pool = sqlite_pool(&options, 8, "FULL").await?;
    migrate(&pool, &SQLITE_MIGRATIONS).await?;
    let relaxed = sqlite_pool(&options, 4, "NORMAL").await?;
    Ok(Connected {
        lagging: pool.clone(),
        pool,
        engine: Engine::Sqlite(Sqlite {
            relaxed,
            writer: Arc::new(Mutex::new(())),
            chunk_locks: ChunkLocks::new(),
        }),
    })
}

async fn migrate(pool: &AnyPool, migrator: &Migrator) -> Result<(), StoreError> {
    migrator.run(pool).await.map_err(|e| match e {
        MigrateError::Execute(inner) => db(inner),
        other => StoreError::Database(format!("migration failed: {other}")),
    })
}

fn postgres_options(url: &str) -> Result<AnyConnectOptions, StoreError> {
    let invalid = |e: sqlx::Error| StoreError::Database(format!("invalid database URL: {e}"));
    // Checked as PostgreSQL reads it, so a bad URL fails here rather than on every connect.
    sqlx::postgres::PgConnectOptions::from_str(url).map_err(invalid)?;
    let mut opts = AnyConnectOptions::from_str(url).map_err(invalid)?;
    // Appended last, so it wins over one the URL carries.
    opts.database_url
        .query_pairs_mut()
        .append_pair("application_name", "filestore");
    Ok(opts.log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1)))
}

fn postgres_pool(opts: &PostgresOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        // A connection that survived a restart or failover of the server is checked before use.
        .test_before_acquire(true)
}

/// The `Any` driver takes SQLite options only as a URL, and its URL carries only the file and
/// the open mode; the pragmas follow on each new connection ([`sqlite_pool`]). The path is
/// percent-encoded whole into an opaque URL path, so no URL rule (dot segments, host case)
/// touches it.
fn sqlite_options(path: &Path) -> Result<AnyConnectOptions, StoreError> {
    let path = path
        .to_str()
        .ok_or_else(|| StoreError::Database(format!("{} is not a UTF-8 path", path.display())))?;
    let mut encoded = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    AnyConnectOptions::from_str(&format!("sqlite:{encoded}?mode=rwc"))
        .map_err(|e| StoreError::Database(format!("invalid database path: {e}")))
}

/// A pool whose connections commit with `synchronous` (`FULL` or `NORMAL`), in WAL mode with
/// foreign keys on, waiting up to 30 s for a lock held by another process.
async fn sqlite_pool(
    options: &AnyConnectOptions,
    max_connections: u32,
    synchronous: &'static str,
) -> Result<AnyPool, StoreError> {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(
                    format!(
                        "PRAGMA busy_timeout = 30000; PRAGMA journal_mode = WAL;
                         PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
                    )
                    .as_str(),
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await
        .map_err(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_path_survives_the_url_whole() {
        for path in ["/tmp/a b/../%41#?x/Meta.db", "relative/Data.db"] {
            let any = sqlite_options(Path::new(path)).unwrap();
            let sqlite = sqlx::sqlite::SqliteConnectOptions::from_url(&any.database_url).unwrap();
            assert_eq!(sqlite.get_filename(), Path::new(path));
        }
    }
}
