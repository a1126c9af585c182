//! Ports and adapters: the metadata store, the object store and the queue, each a small trait,
//! with the embedded implementations (SQLite, a local directory, a database-backed queue) and
//! the production ones (PostgreSQL, S3, RabbitMQ). Both sets pass the same behaviour through
//! the same code paths above them.
#![forbid(unsafe_code)]

pub mod chunk_writer;
pub mod clock;
pub mod local;
pub mod meta;
pub mod objects;
pub mod orphans;
pub mod postgres;
pub mod queue;
pub mod rabbit;
pub mod relay;
pub mod s3;
pub mod sql;
pub mod sqlite;
pub mod sqlite_queue;
pub mod tenants;
pub mod tree;

pub use local::LocalDirStore;
pub use meta::{
    ChunkRemoval, ChunkWrite, FileRecord, Finalized, MetadataStore, NewFile, StoreError,
    UploadRecord, Usage,
};
pub use objects::{ObjectError, ObjectStore, PutOutcome};
pub use postgres::{PostgresOptions, PostgresStore};
pub use queue::{Delivery, Queue, QueueError, Subscription};
pub use rabbit::{RabbitOptions, RabbitQueue};
pub use s3::{S3Options, S3Store};
pub use sql::SqlStore;
pub use sqlite::SqliteStore;
pub use sqlite_queue::SqliteQueue;
pub use tenants::{TenantKeyError, TenantKeys};
pub use tree::{Change, ChangePage, Entry, ListQuery, Listing, TreeStore, Version};
