//! The embedded metadata store: SQLite (WAL, `synchronous=FULL`), through the one store in
//! [`crate::sql`].

/// The store on SQLite: `SqliteStore::open(path)`.
pub type SqliteStore = crate::sql::SqlStore;
