//! The instance operations on a FileStore's database pods. The role label is the single
//! switch: `-db-rw` selects the pod labelled primary, `-db-ro` the replicas, and a pod's start
//! script waits for its label before it serves (see `build/database/start.sh`). So promoting
//! is SQL on the chosen pod, repointing is moving labels (the standbys follow `-db-rw` by
//! themselves), fencing is a label that takes the pod out of both Services plus a restart that
//! stops the old server (retried until the pod is a new incarnation: another UID), and rejoining is the replica label, on which the start script rewinds
//! the former primary and starts it as a standby.
use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, Client, ResourceExt};
use sqlx::postgres::PgConnectOptions;

use crate::build::process::POSTGRES_PORT;
use crate::failover::decision::Instance;
use crate::failover::probe;
use crate::failover::routine::{InstanceOps, OpsError};
use crate::role::{self, PodRole};

/// Where an instance's PostgreSQL answers: the pod's IP and PostgreSQL's port in production.
pub type Address = dyn Fn(&Pod) -> Option<(String, u16)> + Send + Sync;

pub fn pod_address(pod: &Pod) -> Option<(String, u16)> {
    let ip = pod.status.as_ref()?.pod_ip.clone()?;
    Some((ip, POSTGRES_PORT as u16))
}

pub struct PodInstances {
    pods: Api<Pod>,
    /// Every instance the StatefulSet should have, pod names in ordinal order.
    instances: Vec<String>,
    selector: String,
    superuser_password: String,
    address: Box<Address>,
    /// What each instance was when it last answered, to report the dead with it.
    last_seen: Mutex<BTreeMap<String, Instance>>,
    /// Fences not yet done: the UID of the pod incarnation each must see gone.
    fencing: Mutex<BTreeMap<String, String>>,
}

impl PodInstances {
    pub fn new(
        client: Client,
        namespace: &str,
        instances: Vec<String>,
        selector: String,
        superuser_password: String,
    ) -> Self {
        Self {
            pods: Api::namespaced(client, namespace),
            instances,
            selector,
            superuser_password,
            address: Box::new(pod_address),
            last_seen: Mutex::new(BTreeMap::new()),
            fencing: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same operations, reaching each pod's PostgreSQL where `address` says.
    pub fn with_address(mut self, address: Box<Address>) -> Self {
        self.address = address;
        self
    }

    /// Takes over what an earlier supervisor saw, so a dead primary keeps its last positions.
    pub fn remembering(self, seen: &[Instance]) -> Self {
        if let Ok(mut last) = self.last_seen.lock() {
            last.extend(seen.iter().map(|i| (i.name.clone(), i.clone())));
        }
        self
    }

    /// Takes over the fences an earlier tick began and could not finish, so that a retry
    /// recognises the new incarnation instead of restarting it again.
    pub fn fencing(self, pending: BTreeMap<String, String>) -> Self {
        if let Ok(mut fencing) = self.fencing.lock() {
            fencing.extend(pending);
        }
        self
    }

    /// The fences begun and not finished: instance name to the UID that must go.
    pub fn pending_fences(&self) -> BTreeMap<String, String> {
        self.fencing.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn fence_target(&self, instance: &str, uid: &str) -> String {
        match self.fencing.lock() {
            Ok(mut fencing) => fencing
                .entry(instance.to_owned())
                .or_insert_with(|| uid.to_owned())
                .clone(),
            Err(_) => uid.to_owned(),
        }
    }

    fn fenced_done(&self, instance: &str) {
        if let Ok(mut fencing) = self.fencing.lock() {
            fencing.remove(instance);
        }
    }

    /// Whether the incarnation `uid` of `instance` is gone: no pod, or one with another UID.
    async fn incarnation_gone(&self, instance: &str, uid: &str) -> Result<bool, OpsError> {
        match self.pods.get_opt(instance).await {
            Ok(None) => Ok(true),
            Ok(Some(pod)) => Ok(pod.uid().as_deref() != Some(uid)),
            Err(e) => Err(ops_error("fence", instance, e)),
        }
    }

    fn connect_options(&self, pod: &Pod) -> Option<PgConnectOptions> {
        let (host, port) = (self.address)(pod)?;
        Some(
            PgConnectOptions::new()
                .host(&host)
                .port(port)
                .username("postgres")
                .password(&self.superuser_password)
                .database("postgres"),
        )
    }

    async fn pod(&self, op: &'static str, name: &str) -> Result<Pod, OpsError> {
        self.pods
            .get(name)
            .await
            .map_err(|e| ops_error(op, name, e))
    }

    async fn label(&self, op: &'static str, name: &str, role: PodRole) -> Result<(), OpsError> {
        role::set(&self.pods, name, role)
            .await
            .map_err(|e| ops_error(op, name, e))
    }

    fn remembered(&self, name: &str) -> Instance {
        let last = self
            .last_seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(name).cloned());
        Instance::gone(name, last)
    }
}

fn ops_error(op: &'static str, instance: &str, reason: impl std::fmt::Display) -> OpsError {
    OpsError::new(op, instance, reason)
}

#[async_trait]
impl InstanceOps for PodInstances {
    async fn observe(&self) -> Vec<Instance> {
        let listed = match self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
        {
            Ok(list) => list.items,
            Err(e) => {
                // Not knowing is not the same as gone: report nothing alive, which never
                // triggers a failover before the delay, and try again next tick.
                tracing::warn!(error = %e, "cannot list the database pods");
                Vec::new()
            }
        };
        let mut seen = Vec::with_capacity(self.instances.len());
        for name in &self.instances {
            let pod = listed.iter().find(|p| p.name_any() == *name);
            let answered = match pod.and_then(|p| self.connect_options(p)) {
                Some(options) => probe::probe(name, &options).await,
                None => None,
            };
            let instance = match answered {
                Some(i) => {
                    if let Ok(mut last) = self.last_seen.lock() {
                        last.insert(name.clone(), i.clone());
                    }
                    i
                }
                None => self.remembered(name),
            };
            let fenced = pod.and_then(role::of) == Some(PodRole::Fenced);
            seen.push(Instance { fenced, ..instance });
        }
        seen
    }

    async fn fence(&self, instance: &str) -> Result<(), OpsError> {
        // A label alone is not a fence: the server it names may still run (a delete that was
        // refused, a pod that came back). Done only once the incarnation that was primary, by
        // UID, is gone; until then every tick labels and deletes it again.
        let pod = match self.pods.get_opt(instance).await {
            Ok(Some(pod)) => pod,
            Ok(None) => {
                self.fenced_done(instance);
                return Ok(());
            }
            Err(e) => return Err(ops_error("fence", instance, e)),
        };
        let Some(uid) = pod.uid() else {
            return Err(ops_error("fence", instance, "the pod has no uid"));
        };
        let target = self.fence_target(instance, &uid);
        if uid != target {
            // The StatefulSet made a new pod: the old server is gone, and this one waits for a
            // role before it serves (start.sh).
            self.fenced_done(instance);
            return Ok(());
        }
        if role::of(&pod) != Some(PodRole::Fenced) {
            self.label("fence", instance, PodRole::Fenced).await?;
        }
        // The label takes it out of the Services; the delete (grace 0: removed from the API at
        // once, the kubelet kills the containers) stops a server that may still hold
        // connections. The UID precondition never deletes a successor by mistake.
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(target.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(instance, &now).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(ops_error("fence", instance, e)),
        }
        if self.incarnation_gone(instance, &target).await? {
            self.fenced_done(instance);
            Ok(())
        } else {
            Err(ops_error(
                "fence",
                instance,
                format!("pod {instance} (uid {target}) is still there; fencing it again"),
            ))
        }
    }

    async fn promote(&self, instance: &str) -> Result<(), OpsError> {
        let pod = self.pod("promote", instance).await?;
        let options = self
            .connect_options(&pod)
            .ok_or_else(|| ops_error("promote", instance, "the pod has no address"))?;
        probe::promote(&options)
            .await
            .map_err(|e| ops_error("promote", instance, e))
    }

    async fn repoint(&self, primary: &str) -> Result<(), OpsError> {
        self.label("repoint", primary, PodRole::Primary).await?;
        let listed = self
            .pods
            .list(&ListParams::default().labels(&self.selector))
            .await
            .map_err(|e| ops_error("repoint", &self.selector, e))?;
        for pod in &listed.items {
            let name = pod.name_any();
            if name != primary && role::of(pod) == Some(PodRole::Primary) {
                // Another pod still labelled primary is a former one: out of the Service.
                self.label("repoint", &name, PodRole::Fenced).await?;
            }
        }
        Ok(())
    }

    async fn rejoin(&self, instance: &str, _primary: &str) -> Result<(), OpsError> {
        // The start script rewinds it onto `-db-rw`, which selects `_primary` by now. A pod
        // that is being recreated gets the replica label from the reconcile instead.
        match role::set(&self.pods, instance, PodRole::Replica).await {
            Ok(()) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(ops_error("rejoin", instance, e)),
        }
    }
}
