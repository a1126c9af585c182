//! The Filestore operator. So far, its pure decisions and the routine around one of them: failover
//! of the managed, replicated PostgreSQL (a decision over what was observed, carried out through
//! a small trait of instance operations; a local implementation over real processes lives in the
//! test suite), and worker autoscaling on queue depth.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod crd;
pub mod failover;
