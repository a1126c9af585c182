//! The tree on SQLite: the shared SQL of [`crate::tree`]. A read transaction there sees one
//! snapshot already (WAL), so starting one needs nothing more.
crate::tree::tree_store!(super::SqliteStore, sqlx::Sqlite, "SELECT 1");
