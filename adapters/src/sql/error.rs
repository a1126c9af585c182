//! Database errors as the ports see them. The ports cannot name sqlx, so every call into the
//! database maps its error here, on the way out of the adapter.
use crate::meta::StoreError;
use crate::queue::QueueError;

/// A database error as the metadata store reports it.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if is_unavailable(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Database(e.to_string())
    }
}

/// A database error as the database-backed queue reports it.
pub(crate) fn queue(e: sqlx::Error) -> QueueError {
    if is_unavailable(&e) {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Backend(e.to_string())
    }
}

/// Errors that say the database cannot be reached or cannot take writes right now (a restart,
/// a failover in progress), as opposed to a fault in the request: worth a 503 and a retry.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exceptions; 57P01-57P03: shutdown or not yet accepting
            // connections; 25006: read-only transaction (a standby, mid-failover); 53300: too
            // many connections.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "25006" | "53300"
                )
        }),
        _ => false,
    }
}
