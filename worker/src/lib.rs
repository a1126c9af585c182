//! The pipeline: scan, chunk and index stages consuming the queue, each at-least-once and
//! idempotent, acking only after their side effects are durable. A worker that runs all three
//! carries a clean file from scan to index itself; the chunk and index queues then serve
//! workers that run only those stages.
#![forbid(unsafe_code)]

pub mod clamd;
pub mod config;
pub mod janitor;
mod periodic;
pub mod pipeline;
pub mod retry;
pub mod runner;
pub mod scanner;
pub mod stages;
pub mod sweeper;
mod task;

pub use config::WorkerConfig;
pub use pipeline::Pipeline;
pub use runner::spawn_stages;
pub use scanner::{BuiltinScanner, Scanner, Verdict};
