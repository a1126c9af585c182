//! The pipeline: scan, chunk and index stages consuming the queue, each at-least-once and
//! idempotent, acking only after their side effects are durable.
#![forbid(unsafe_code)]

pub mod clamd;
pub mod config;
pub mod janitor;
mod periodic;
pub mod retry;
pub mod runner;
pub mod scanner;
pub mod stages;
pub mod sweeper;
mod task;

pub use config::WorkerConfig;
pub use runner::{Pipeline, spawn_stages};
pub use scanner::{BuiltinScanner, Scanner, Verdict};
