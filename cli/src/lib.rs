//! The `filestore` command's library: the embedded service assembly, the HTTP client, and the
//! subcommands. Tests start the embedded service through [`embedded::start`].
#![forbid(unsafe_code)]

pub mod bound;
pub mod client;
pub mod download;
pub mod embedded;
pub mod production;
pub mod secrets;
pub mod sync;
pub mod token;
pub mod upload;
pub mod wire;
