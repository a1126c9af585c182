//! What the operator read from the cluster for one FileStore, before deciding anything.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::crd::WorkerPool;
use crate::failover::Instance;
use crate::queue_depth::QueueStats;

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The `<name>-generated` Secret, if it exists.
    pub credentials: Option<Secret>,
    pub api: Option<Deployment>,
    /// Each pool's Deployment, by pool name.
    pub pools: BTreeMap<String, Deployment>,
    pub database: Option<StatefulSet>,
    pub database_pods: Vec<Pod>,
    /// The database scripts say the cluster was bootstrapped (a second record of it, beside
    /// the status, so that neither alone can forget it).
    pub database_marked_initialised: bool,
    pub queue: Option<StatefulSet>,
    /// The database instances as the failover routine probed them, when it watches them.
    pub replication: Option<Vec<Instance>>,
    /// Stage queue stats by queue name, or why they could not be read.
    pub queue_depths: Option<Result<BTreeMap<String, QueueStats>, String>>,
}

pub fn ready_replicas(deployment: Option<&Deployment>) -> i32 {
    deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn set_ready_replicas(set: Option<&StatefulSet>) -> i32 {
    set.and_then(|d| d.status.as_ref())
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Messages waiting for `pool`: the sum over its stages' queues, when depths were read.
pub fn pool_depth(pool: &WorkerPool, seen: &Observed) -> Option<u64> {
    let Some(Ok(stats)) = &seen.queue_depths else {
        return None;
    };
    Some(
        pool.stages
            .iter()
            .filter_map(|s| stats.get(s.pipeline().queue()))
            .map(|q| q.messages)
            .sum(),
    )
}
