//! Ports and adapters: the metadata store, the object store and the queue, each a small trait,
//! with the embedded implementations (SQLite, a local directory, a database-backed queue).
#![forbid(unsafe_code)]

pub mod clock;
pub mod local;
pub mod meta;
pub mod objects;
pub mod queue;
pub mod relay;
pub mod sqlite;
pub mod sqlite_queue;
pub mod tenants;

pub use local::LocalDirStore;
pub use meta::{FileRecord, MetadataStore, NewFile, StoreError, UploadRecord, Usage};
pub use objects::{ObjectError, ObjectStore, PutOutcome};
pub use queue::{Delivery, Queue, QueueError, Subscription};
pub use sqlite::SqliteStore;
pub use sqlite_queue::SqliteQueue;
pub use tenants::{TenantKeyError, TenantKeys};
