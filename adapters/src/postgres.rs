//! The production metadata store: PostgreSQL, through the one store in [`crate::sql`].
use std::time::Duration;

/// The store on PostgreSQL: `PostgresStore::connect(&options)`.
pub type PostgresStore = crate::sql::SqlStore;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// A streaming replica for reads that tolerate lag (usage figures).
    pub replica_url: Option<String>,
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            replica_url: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}
