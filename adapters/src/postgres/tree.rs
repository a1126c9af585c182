//! The tree on PostgreSQL: the shared SQL of [`crate::tree`], listings on one snapshot.
crate::tree::tree_store!(
    super::PostgresStore,
    sqlx::Postgres,
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
);
