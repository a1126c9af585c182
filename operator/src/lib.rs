//! The Filestore operator: the `FileStore` resource, the objects it owns (built by pure
//! functions), the reconcile that applies them, worker autoscaling on queue depth, PostgreSQL
//! failover (a decision over what was observed, carried out through a small trait of instance
//! operations), and leader election.
#![forbid(unsafe_code)]

pub mod autoscale;
pub mod build;
pub mod crd;
pub mod error;
pub mod failover;
pub mod leader;
pub mod metrics;
pub mod queue_depth;
pub mod rbac;
pub mod reconcile;
pub mod role;

/// Names rustls' process-wide crypto provider before the first Kubernetes client is built.
/// Built together with the S3 SDK (one workspace build), rustls carries both the ring and the
/// aws-lc-rs backends and then refuses to pick one on its own. A second call is harmless.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
