//! The engine seam: what differs between PostgreSQL and SQLite, and nothing else. Everything
//! above it ([`super::SqlStore`]) is written once, in SQL both engines speak.
//!
//! - connecting and migrating ([`connect`]);
//! - how writers exclude each other: PostgreSQL takes concurrent writers that lock the rows
//!   they change (`FOR UPDATE`); SQLite has one writer at a time, so the store takes turns
//!   inside the process before it writes ([`Engine::write_turn`]);
//! - SQLite's second, relaxed pool for bookkeeping ([`Engine::relaxed`]);
//! - listings on one snapshot ([`Engine::snapshot`]);
//! - chunk locks ([`chunk_locks`]) and outbox claims ([`outbox_claims`]).
use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{Mutex, MutexGuard};

pub(crate) mod chunk_locks;
pub(crate) mod connect;
pub(crate) mod outbox_claims;

use chunk_locks::ChunkLocks;

/// A store's turn to write: SQLite takes one writer at a time inside the process, PostgreSQL
/// needs none.
pub(crate) type WriteTurn<'a> = Option<MutexGuard<'a, ()>>;

#[derive(Clone)]
pub(crate) enum Engine {
    Postgres,
    Sqlite(Sqlite),
}

/// SQLite has one writer at a time; taking turns inside the process avoids busy errors on
/// read-then-write transactions, and `busy_timeout` covers other processes.
///
/// Two pools on one database: the store's own commits with `synchronous=FULL` (every commit
/// fsyncs the WAL) for what a client was told succeeded; `relaxed` commits with
/// `synchronous=NORMAL` for bookkeeping whose loss in a power cut only means redoing idempotent
/// work (queue claims, acks, stage-to-stage messages, the dedupe index). The WAL is one ordered
/// log, so the next FULL commit makes every earlier relaxed one durable too: a message published
/// before the outbox row that produced it is removed can never be lost while that removal
/// survives.
#[derive(Clone)]
pub(crate) struct Sqlite {
    relaxed: AnyPool,
    writer: Arc<Mutex<()>>,
    chunk_locks: ChunkLocks,
}

impl Engine {
    /// What a `SELECT` appends to lock the rows it reads until commit; SQLite's write turn
    /// holds already.
    pub(crate) fn for_update(&self) -> &'static str {
        match self {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite(_) => "",
        }
    }

    /// Waits for this process's turn to write, where the engine takes one writer at a time.
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        match self {
            Engine::Postgres => None,
            Engine::Sqlite(s) => Some(s.writer.lock().await),
        }
    }

    /// Whether writes take turns ([`Engine::write_turn`]), so a read that spares one is worth it.
    pub(crate) fn takes_turns(&self) -> bool {
        matches!(self, Engine::Sqlite(_))
    }

    /// The pool for bookkeeping that may be redone after a power cut (see [`Sqlite`]); the
    /// store's own pool where every commit is durable anyway.
    pub(crate) fn relaxed<'a>(&'a self, pool: &'a AnyPool) -> &'a AnyPool {
        match self {
            Engine::Postgres => pool,
            Engine::Sqlite(s) => &s.relaxed,
        }
    }

    /// The statement that makes a transaction's reads see one snapshot, where its first read
    /// does not already: a SQLite read transaction sees one snapshot (WAL); a PostgreSQL one at
    /// its default level sees a new one per statement.
    pub(crate) fn snapshot(&self) -> Option<&'static str> {
        match self {
            Engine::Postgres => Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            Engine::Sqlite(_) => None,
        }
    }
}
