//! Filestore's ports: the metadata store, the object store, the queue and the tree, each a
//! small trait, with the services written once against them (the chunk writer, the outbox
//! relay, tenants' keys, orphan removal, the clock). This crate names no database, broker or
//! S3 client: the API and the worker depend on it alone, and `filestore-adapters` implements
//! the ports for the embedded and the production backends.
#![forbid(unsafe_code)]

pub mod chunk_writer;
pub mod clock;
pub mod error;
pub mod meta;
pub mod objects;
pub mod orphans;
pub mod queue;
pub mod relay;
pub mod tenants;
pub mod tree;

pub use error::StoreError;
pub use meta::{
    ChunkRemoval, ChunkWrite, FileRecord, Finalized, MetadataStore, NewFile, OutboxMessage,
    PendingOutbox, UploadRecord, Usage,
};
pub use objects::{ObjectError, ObjectStore, PutOutcome};
pub use queue::{Delivery, Queue, QueueError, Subscription};
pub use tenants::{TenantKeyError, TenantKeys};
pub use tree::{Change, ChangePage, Entry, ListQuery, Listing, TreeStore, Version};
