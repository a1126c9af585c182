//! The operator's integration tests, one binary: what a FileStore owns ([`builders`]), the CRD
//! ([`crd`]), a full reconcile against a mocked API server ([`reconcile_api`]) and the
//! operator's other API calls ([`api_calls`]). One binary links the operator once, and the
//! chart's RBAC is rendered once for all of them.
#[path = "../support/mod.rs"]
mod support;

mod api_calls;
mod builders;
mod crd;
mod reconcile_api;
