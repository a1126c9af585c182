//! The worker pools: one Deployment each, running the pool's stages, at the replicas the
//! autoscaler chose (the pool's minimum until it has chosen).
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::pod::env;
use super::{LABEL_POOL, Owned, Owner, ValidatedFileStore, names, process};
use crate::crd::WorkerPool;

pub const COMPONENT: &str = "worker";
pub const METRICS_PORT: i32 = 9090;

pub fn build(
    fs: &ValidatedFileStore<'_>,
    replicas: &BTreeMap<String, i32>,
    config_hash: &str,
) -> Vec<Owned> {
    fs.spec
        .workers
        .iter()
        .map(|pool| {
            // Validation made min <= max, which `clamp` needs.
            let wanted = replicas
                .get(&pool.name)
                .copied()
                .unwrap_or(pool.min_replicas)
                .clamp(pool.min_replicas, pool.max_replicas);
            Owned::Deployment(deployment(fs, pool, wanted, config_hash))
        })
        .collect()
}

/// Labels that select one pool's pods.
pub fn pool_selector(owner: &Owner, pool: &str) -> BTreeMap<String, String> {
    let mut labels = owner.selector(COMPONENT);
    labels.insert(LABEL_POOL.to_owned(), pool.to_owned());
    labels
}

pub fn deployment(
    fs: &ValidatedFileStore<'_>,
    pool: &WorkerPool,
    replicas: i32,
    config_hash: &str,
) -> Deployment {
    let stages: Vec<&str> = pool.stages.iter().map(|s| s.pipeline().name()).collect();
    let vars = vec![
        env("FILESTORE_STAGES", stages.join(",")),
        env(
            "FILESTORE_METRICS_LISTEN",
            format!("0.0.0.0:{METRICS_PORT}"),
        ),
    ];
    let owner = &fs.owner;
    let mut container = process::container(fs, &["worker"], ("metrics", METRICS_PORT), vars);
    container.resources = pool.resources.clone();
    let labels = pool_selector(owner, &pool.name);
    let mut meta = owner.meta(names::worker_pool(&owner.name, &pool.name), COMPONENT);
    if let Some(l) = meta.labels.as_mut() {
        l.insert(LABEL_POOL.to_owned(), pool.name.clone());
    }
    Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: process::pod_template(labels, config_hash, container, vec![]),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
