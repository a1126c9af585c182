//! Every object a FileStore owns, built by pure functions from the FileStore and what the
//! operator observed (the generated credentials, the worker replicas the autoscaler chose).
//! Nothing here talks to the API server; `reconcile` applies what these return.
pub mod api;
pub mod config;
pub mod database;
pub mod names;
mod pod;
pub mod process;
pub mod queue;
pub mod secrets;
mod stateful;
pub mod validated;
pub mod workers;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;

use crate::crd::FileStore;
use secrets::Credentials;
pub use validated::{Backend, TokenKeys, ValidatedFileStore, validate};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "filestore-operator";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_POOL: &str = "filestore.dev/pool";
/// Hash of the settings a pod was started with, so a settings change rolls the pods.
pub const ANNOTATION_CONFIG_HASH: &str = "filestore.dev/config-hash";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the FileStore has no namespace")]
    NoNamespace,
    #[error("the FileStore has no uid yet (it was not read from the API server)")]
    NoUid,
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
}

/// The DNS domain of a cluster that does not say otherwise.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// What a build needs beyond the FileStore itself.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The generated credentials, as they are (or will be) stored.
    pub credentials: Credentials,
    /// Replicas of each worker pool, by pool name, as the autoscaler chose.
    pub worker_replicas: BTreeMap<String, i32>,
    /// The managed database has been initialised: an instance 0 that finds its volume empty
    /// must then clone from the primary rather than start a new, empty cluster.
    pub database_initialised: bool,
    /// The cluster's DNS domain (kubelet's `clusterDomain`), in the names RabbitMQ nodes know
    /// each other by.
    pub cluster_domain: String,
}

impl Default for Inputs {
    fn default() -> Self {
        Self {
            credentials: Credentials::default(),
            worker_replicas: BTreeMap::new(),
            database_initialised: false,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_owned(),
        }
    }
}

/// One object the operator owns, typed so that builders can be checked field by field.
#[derive(Debug, Clone, PartialEq)]
pub enum Owned {
    ConfigMap(ConfigMap),
    Secret(Secret),
    Service(Service),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    PodDisruptionBudget(PodDisruptionBudget),
    Ingress(Ingress),
}

impl Owned {
    pub fn kind(&self) -> &'static str {
        match self {
            Owned::ConfigMap(_) => "ConfigMap",
            Owned::Secret(_) => "Secret",
            Owned::Service(_) => "Service",
            Owned::Deployment(_) => "Deployment",
            Owned::StatefulSet(_) => "StatefulSet",
            Owned::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Owned::Ingress(_) => "Ingress",
        }
    }

    pub fn name(&self) -> String {
        match self {
            Owned::ConfigMap(o) => o.name_any(),
            Owned::Secret(o) => o.name_any(),
            Owned::Service(o) => o.name_any(),
            Owned::Deployment(o) => o.name_any(),
            Owned::StatefulSet(o) => o.name_any(),
            Owned::PodDisruptionBudget(o) => o.name_any(),
            Owned::Ingress(o) => o.name_any(),
        }
    }

    /// The object as the API server takes it, with `apiVersion` and `kind`.
    pub fn to_manifest(&self) -> serde_json::Result<serde_json::Value> {
        match self {
            Owned::ConfigMap(o) => manifest(o),
            Owned::Secret(o) => manifest(o),
            Owned::Service(o) => manifest(o),
            Owned::Deployment(o) => manifest(o),
            Owned::StatefulSet(o) => manifest(o),
            Owned::PodDisruptionBudget(o) => manifest(o),
            Owned::Ingress(o) => manifest(o),
        }
    }
}

/// `object` as the API server takes it: typed objects serialize without `apiVersion` and `kind`.
pub fn manifest<K: Resource<DynamicType = ()> + Serialize>(
    object: &K,
) -> serde_json::Result<serde_json::Value> {
    let mut v = serde_json::to_value(object)?;
    v["apiVersion"] = K::api_version(&()).into();
    v["kind"] = K::kind(&()).into();
    Ok(v)
}

/// Who the objects belong to: namespace, owner reference and the labels they share.
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    reference: OwnerReference,
}

impl Owner {
    pub fn of(fs: &FileStore) -> Result<Self, BuildError> {
        let namespace = fs.namespace().ok_or(BuildError::NoNamespace)?;
        let reference = fs.controller_owner_ref(&()).ok_or(BuildError::NoUid)?;
        Ok(Self {
            name: fs.name_any(),
            namespace,
            reference,
        })
    }

    /// Labels that select one component of this FileStore.
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        component_labels(&self.name, component)
    }

    /// Metadata of an owned object of `component`.
    pub fn meta(&self, name: String, component: &str) -> ObjectMeta {
        let mut labels = self.selector(component);
        labels.insert(LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Labels that select `component` of the FileStore named `filestore`.
pub fn component_labels(filestore: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "filestore".to_owned()),
        (LABEL_INSTANCE.to_owned(), filestore.to_owned()),
        (LABEL_COMPONENT.to_owned(), component.to_owned()),
    ])
}

/// The same labels as a label selector for list and delete calls.
pub fn component_selector(filestore: &str, component: &str) -> String {
    component_labels(filestore, component)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything the FileStore owns, in the order it is applied: settings and credentials first,
/// then the backends, then the processes that use them. Cannot fail: whatever could stop a
/// build was refused by [`validate`].
pub fn build_all(fs: &ValidatedFileStore<'_>, inputs: &Inputs) -> Vec<Owned> {
    let owner = &fs.owner;
    let mut out = Vec::new();
    out.push(Owned::Secret(secrets::generated_secret(
        owner,
        &inputs.credentials,
    )));
    let settings = config::settings(owner, fs.spec);
    out.push(Owned::ConfigMap(settings.clone()));
    if let Backend::Managed(db) = fs.database {
        out.extend(database::build(owner, db, inputs));
    }
    if let Backend::Managed(queue) = fs.queue {
        out.extend(queue::build(owner, queue, inputs));
    }
    let config_hash = config::hash(&settings);
    out.extend(api::build(fs, &config_hash));
    out.extend(workers::build(fs, &inputs.worker_replicas, &config_hash));
    out
}

/// What in the spec would stop a component on a single voluntary eviction (a drain, an
/// upgrade): such a component gets a disruption budget that allows no eviction, and the
/// FileStore a warning that says why. Not refused: a FileStore that already runs so must keep
/// being reconciled (and failed over).
pub fn disruption_warnings(fs: &ValidatedFileStore<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(db) = fs
        .database
        .managed()
        .filter(|db| database::one_eviction_blocks_commits(db))
    {
        warnings.push(format!(
            "database: {} instances with {} synchronous standby(s) leave none to spare, so one evicted instance stops every commit; its PodDisruptionBudget allows no eviction (drains wait) until instances exceed synchronousStandbys + 1",
            db.instances, db.synchronous_standbys
        ));
    }
    if let Some(queue) = fs
        .queue
        .managed()
        .filter(|q| queue::one_eviction_loses_quorum(q))
    {
        warnings.push(format!(
            "queue: {} RabbitMQ nodes lose their quorum on one eviction; its PodDisruptionBudget allows no eviction (drains wait) until there are 3 or more",
            queue.replicas
        ));
    }
    warnings
}
