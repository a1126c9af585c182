//! The decisions of one reconcile, from the FileStore and what was observed to what should be:
//! the owned objects, pool sizes, role labels, status and the events that explain them. No I/O.
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::conditions::{self, READY, Verdict};
use super::observed::{Observed, pod_ready, pool_depth};
use crate::autoscale::{Autoscaler, ScalePolicy};
use crate::build::{self, BuildError, Inputs, Owned, ValidatedFileStore, names};
use crate::crd::{FileStore, FileStoreStatus, Provisioning, WorkerPool};
use crate::role::{self, PodRole};

/// How long recommendations must stay lower before a pool shrinks.
pub const SCALE_IN_WINDOW: Duration = Duration::from_secs(300);

/// An event to record on the FileStore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    /// PascalCase, what happened.
    pub reason: &'static str,
    /// PascalCase, what the operator did.
    pub action: &'static str,
    pub note: String,
}

impl Notice {
    fn normal(reason: &'static str, action: &'static str, note: String) -> Self {
        Self {
            warning: false,
            reason,
            action,
            note,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub objects: Vec<Owned>,
    /// Pods to label with a database role.
    pub role_labels: Vec<(String, PodRole)>,
    pub status: FileStoreStatus,
    pub notices: Vec<Notice>,
}

/// Autoscalers of every pool the operator has seen, keyed by `namespace/name/pool`; their
/// memory (the stabilisation window) is what makes scaling calm.
#[derive(Debug, Default)]
pub struct Pools(HashMap<String, Autoscaler>);

fn policy(pool: &WorkerPool) -> ScalePolicy {
    let non_negative = |v: i32| u32::try_from(v).unwrap_or(0);
    ScalePolicy {
        min_workers: non_negative(pool.min_replicas),
        max_workers: non_negative(pool.max_replicas),
        target_depth_per_worker: non_negative(pool.target_queue_depth_per_worker).max(1),
        scale_in_window: SCALE_IN_WINDOW,
    }
}

impl Pools {
    /// Replicas for each pool of `fs` at `now`, and a notice per change.
    pub fn scale(
        &mut self,
        fs: &FileStore,
        seen: &Observed,
        now: Duration,
    ) -> (BTreeMap<String, i32>, Vec<Notice>) {
        let prefix = format!("{}/{}/", fs.namespace().unwrap_or_default(), fs.name_any());
        let mut replicas = BTreeMap::new();
        let mut notices = Vec::new();
        for pool in &fs.spec.workers {
            let current = seen
                .pools
                .get(&pool.name)
                .and_then(|d| d.spec.as_ref())
                .and_then(|s| s.replicas)
                .unwrap_or(pool.min_replicas)
                .clamp(pool.min_replicas, pool.max_replicas);
            let wanted_policy = policy(pool);
            let scaler = self
                .0
                .entry(format!("{prefix}{}", pool.name))
                .or_insert_with(|| Autoscaler::new(wanted_policy.clone()));
            if scaler.policy() != &wanted_policy {
                *scaler = Autoscaler::new(wanted_policy);
            }
            let mut to = current;
            if let Some(depth) = pool_depth(pool, seen) {
                let current_u = u32::try_from(current).unwrap_or(0);
                if let Some(scale) = scaler.observe(now, depth, current_u) {
                    to = i32::try_from(scale.to).unwrap_or(pool.max_replicas);
                    notices.push(Notice::normal(
                        "Scaled",
                        "ScaleWorkers",
                        format!(
                            "worker pool {}: {current} -> {to} replicas: {}",
                            pool.name, scale.reason
                        ),
                    ));
                }
            }
            replicas.insert(pool.name.clone(), to);
        }
        (replicas, notices)
    }

    /// Forgets the pools of a deleted FileStore.
    pub fn forget(&mut self, namespace: &str, name: &str) {
        let prefix = format!("{namespace}/{name}/");
        self.0.retain(|k, _| !k.starts_with(&prefix));
    }
}

/// Role labels to set on the database pods, and why. Before the cluster exists, instance 0
/// becomes its first primary. A recreated pod has lost its label: the instance the status
/// remembers as primary gets it back. Any other instance without a role is a replica. Moving
/// the primary label to another instance is the failover routine's decision, never this one's.
pub fn role_labels(
    fs: &FileStore,
    seen: &Observed,
    initialised: bool,
) -> Vec<(String, PodRole, Option<String>)> {
    if fs.spec.database.mode == Provisioning::External {
        return Vec::new();
    }
    let has_primary = conditions::primary_pod(seen).is_some();
    let remembered = conditions::remembered_primary(fs);
    let first = names::ordinal_pod(&names::database(&fs.name_any()), 0);
    let mut labels = Vec::new();
    for pod in &seen.database_pods {
        if role::is_labelled(pod) {
            continue;
        }
        let name = pod.name_any();
        if !has_primary && remembered.as_deref() == Some(name.as_str()) {
            let why = format!("{name} was recreated and is labelled primary again");
            labels.push((name, PodRole::Primary, Some(why)));
        } else if !has_primary && !initialised && remembered.is_none() && name == first {
            let why = format!("{name} bootstraps the database as its first primary");
            labels.push((name, PodRole::Primary, Some(why)));
        } else {
            labels.push((name, PodRole::Replica, None));
        }
    }
    labels
}

/// What was observed, as it will be once `labels` are set.
fn with_roles(seen: &Observed, labels: &[(String, PodRole, Option<String>)]) -> Observed {
    let mut after = seen.clone();
    for pod in &mut after.database_pods {
        if let Some((_, role, _)) = labels.iter().find(|(name, _, _)| *name == pod.name_any()) {
            role::assume(pod, *role);
        }
    }
    after
}

/// Volume claim templates cannot change once a StatefulSet exists: keep the live ones, and say
/// that the requested change needs a manual migration.
fn keep_claim_templates(objects: &mut [Owned], seen: &Observed, notices: &mut Vec<Notice>) {
    for object in objects.iter_mut() {
        let Owned::StatefulSet(set) = object else {
            continue;
        };
        let name = set.name_any();
        let live = [seen.database.as_ref(), seen.queue.as_ref()]
            .into_iter()
            .flatten()
            .find(|l| l.name_any() == name);
        let (Some(live), Some(spec)) = (live.and_then(|l| l.spec.as_ref()), set.spec.as_mut())
        else {
            continue;
        };
        let claim_sizes = |t: &Option<Vec<k8s_openapi::api::core::v1::PersistentVolumeClaim>>| {
            t.iter()
                .flatten()
                .map(|c| {
                    let spec = c.spec.clone().unwrap_or_default();
                    (
                        spec.storage_class_name,
                        spec.resources.and_then(|r| r.requests),
                    )
                })
                .collect::<Vec<_>>()
        };
        if claim_sizes(&spec.volume_claim_templates) != claim_sizes(&live.volume_claim_templates) {
            notices.push(Notice {
                warning: true,
                reason: "StorageChangeNotApplied",
                action: "KeepVolumeClaims",
                note: format!(
                    "{}: the volume size or class of an existing StatefulSet cannot change; resize the claims themselves (if the storage class allows expansion)",
                    name
                ),
            });
            spec.volume_claim_templates = live.volume_claim_templates.clone();
        }
    }
}

/// Everything one reconcile decides for a valid FileStore, given the build inputs (the
/// credentials, completed with the keys just generated, the pool sizes the autoscaler chose,
/// the cluster domain).
pub fn plan(
    valid: &ValidatedFileStore<'_>,
    seen: &Observed,
    inputs: Inputs,
    generated: &[&str],
    scaling: Vec<Notice>,
    now: &Time,
) -> Plan {
    let fs = valid.resource;
    let previous = fs.status.clone().unwrap_or_default();
    let initialised = previous.database_initialised
        || seen.database_marked_initialised
        || conditions::primary_pod(seen).is_some_and(pod_ready);
    let mut notices = Vec::new();
    if !generated.is_empty() {
        notices.push(Notice::normal(
            "CredentialsGenerated",
            "GenerateSecret",
            format!(
                "generated {} in Secret {}",
                generated.join(", "),
                names::generated_secret(&fs.name_any())
            ),
        ));
    }
    notices.extend(scaling);
    // Once per spec change (the budget itself holds drains back meanwhile), and as one event:
    // the recorder folds events of one reason into a series that keeps the first note.
    let unsafe_disruptions = build::disruption_warnings(valid);
    if previous.observed_generation != fs.metadata.generation && !unsafe_disruptions.is_empty() {
        notices.push(Notice {
            warning: true,
            reason: "DisruptionUnsafe",
            action: "LimitDisruptions",
            note: unsafe_disruptions.join("; "),
        });
    }
    let worker_replicas = inputs.worker_replicas.clone();
    let inputs = Inputs {
        database_initialised: initialised,
        ..inputs
    };
    let mut objects = build::build_all(valid, &inputs);
    keep_claim_templates(&mut objects, seen, &mut notices);
    let labels = role_labels(fs, seen, initialised);
    for (_, _, why) in &labels {
        if let Some(why) = why {
            notices.push(Notice::normal(
                "PrimaryAssigned",
                "LabelPrimary",
                why.clone(),
            ));
        }
    }
    let seen = &with_roles(seen, &labels);
    let components = [
        conditions::database(fs, seen),
        conditions::queue(fs, seen),
        conditions::api(fs, seen),
        conditions::workers(fs, seen, &worker_replicas),
    ];
    let ready = conditions::ready(&components);
    let degraded = conditions::degraded(fs, seen);
    notices.extend(transition_notice(&previous, &ready));
    let mut verdicts: Vec<Verdict> = vec![ready];
    verdicts.extend(components);
    verdicts.push(degraded);
    let generation = fs.metadata.generation;
    let status = FileStoreStatus {
        observed_generation: generation,
        conditions: conditions::conditions(&verdicts, &previous.conditions, generation, now),
        api_ready_replicas: Some(super::observed::ready_replicas(seen.api.as_ref())),
        worker_replicas: Some(worker_replicas.values().sum()),
        database: conditions::replication(fs, seen),
        database_initialised: initialised,
    };
    Plan {
        objects,
        role_labels: labels
            .into_iter()
            .map(|(pod, role, _)| (pod, role))
            .collect(),
        status,
        notices,
    }
}

/// An event when `Ready` changes.
fn transition_notice(previous: &FileStoreStatus, ready: &Verdict) -> Option<Notice> {
    let was = previous
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| c.status == "True");
    if was == Some(ready.ok) {
        return None;
    }
    Some(if ready.ok {
        Notice::normal("Ready", "ObserveComponents", ready.message.clone())
    } else {
        Notice {
            warning: true,
            reason: "NotReady",
            action: "ObserveComponents",
            note: ready.message.clone(),
        }
    })
}

/// The status of a FileStore whose spec cannot be built, and the warning that says why.
pub fn invalid(fs: &FileStore, error: &BuildError, now: &Time) -> (FileStoreStatus, Notice) {
    let previous = fs.status.clone().unwrap_or_default();
    let generation = fs.metadata.generation;
    let message = error.to_string();
    let verdicts = [
        Verdict {
            type_: READY,
            ok: false,
            reason: "InvalidSpec",
            message: message.clone(),
        },
        Verdict {
            type_: conditions::DEGRADED,
            ok: true,
            reason: "InvalidSpec",
            message: message.clone(),
        },
    ];
    let mut status = previous.clone();
    let mut kept: Vec<_> = previous
        .conditions
        .into_iter()
        .filter(|c| c.type_ != READY && c.type_ != conditions::DEGRADED)
        .collect();
    let dated = conditions::conditions(&verdicts, &status.conditions, generation, now);
    kept.extend(dated);
    status.conditions = kept;
    status.observed_generation = generation;
    (
        status,
        Notice {
            warning: true,
            reason: "InvalidSpec",
            action: "Validate",
            note: message,
        },
    )
}

