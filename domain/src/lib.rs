//! Filestore's domain: everything that can be decided without touching a disk, a socket or a clock.
#![forbid(unsafe_code)]

pub mod bundle;
pub mod chunking;
pub mod codec;
pub mod ids;
pub mod keys;
pub mod messages;
pub mod paths;
pub mod signing;
pub mod state;
#[cfg(test)]
mod testing;
pub mod tree;

pub use ids::{ChunkId, FileId, OwnerId};
pub use state::{FileEvent, FileStatus};
