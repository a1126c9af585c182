//! The Filestore operator. So far: failover of the managed, replicated PostgreSQL, as a pure
//! decision over what was observed and a routine that carries it out through a small trait of
//! instance operations (a local implementation over real processes lives in the test suite).
#![forbid(unsafe_code)]

pub mod failover;
