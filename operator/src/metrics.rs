//! The operator's own metrics, served on `/metrics`.
use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use crate::crd::FileStore;
use crate::error::Error;
use crate::reconcile::observed::{Observed, pool_depth};

pub fn reconciled(took: Duration, error: Option<&Error>) {
    metrics::histogram!("filestore_operator_reconcile_duration_seconds").record(took.as_secs_f64());
    match error {
        None => {
            metrics::counter!("filestore_operator_reconciles_total", "result" => "ok").increment(1)
        }
        Some(e) => {
            metrics::counter!("filestore_operator_reconciles_total", "result" => "error")
                .increment(1);
            metrics::counter!("filestore_operator_reconcile_failures_total", "reason" => e.reason()).increment(1);
        }
    }
}

/// Pool sizes the autoscaler chose and the depth it saw.
pub fn pools(fs: &FileStore, replicas: &BTreeMap<String, i32>, seen: &Observed) {
    let name = fs.name_any();
    let namespace = fs.namespace().unwrap_or_default();
    for pool in &fs.spec.workers {
        let labels = [
            ("namespace", namespace.clone()),
            ("filestore", name.clone()),
            ("pool", pool.name.clone()),
        ];
        if let Some(r) = replicas.get(&pool.name) {
            metrics::gauge!("filestore_operator_worker_replicas", &labels).set(f64::from(*r));
        }
        if let Some(depth) = pool_depth(pool, seen) {
            metrics::gauge!("filestore_operator_queue_depth", &labels).set(depth as f64);
        }
    }
}

pub fn leader(is_leader: bool) {
    metrics::gauge!("filestore_operator_leader").set(if is_leader { 1.0 } else { 0.0 });
}
