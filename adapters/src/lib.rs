//! The adapters behind Filestore's ports (`filestore-ports`): the embedded implementations
//! (SQLite, a local directory, a database-backed queue) and the production ones (PostgreSQL,
//! S3, RabbitMQ). Both sets pass the same behaviour through the same code paths above them.
#![forbid(unsafe_code)]

// The ports, under the names this crate always gave them.
pub use filestore_ports::{
    chunk_writer, clock, meta, objects, orphans, queue, relay, tenants, tree,
};

pub mod local;
pub mod postgres;
pub mod rabbit;
pub mod s3;
pub mod sql;
pub mod sqlite;
pub mod sqlite_queue;

pub use filestore_ports::{Change, ChangePage, Entry, ListQuery, Listing, TreeStore, Version};
pub use filestore_ports::{
    ChunkRemoval, ChunkWrite, FileRecord, Finalized, MetadataStore, NewFile, ObjectError,
    ObjectStore, PutOutcome, StoreError, UploadRecord, Usage,
};
pub use filestore_ports::{Delivery, Queue, QueueError, Subscription};
pub use filestore_ports::{TenantKeyError, TenantKeys};
pub use local::LocalDirStore;
pub use postgres::{PostgresOptions, PostgresStore};
pub use rabbit::{RabbitOptions, RabbitQueue};
pub use s3::{S3Options, S3Store};
pub use sql::SqlStore;
pub use sqlite::SqliteStore;
pub use sqlite_queue::SqliteQueue;
