//! The FileStore's status conditions, computed from what was observed: one per component, then
//! `Ready` (every component is) and `Degraded` (something runs below what was asked for).
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::observed::{Observed, pod_ready, ready_replicas, set_ready_replicas};
use crate::build::names;
use crate::crd::{FileStore, Provisioning};
use crate::failover::{ReplicationStatus, StandbyStatus};
use crate::role::{self, PodRole};

pub const READY: &str = "Ready";
pub const DATABASE_READY: &str = "DatabaseReady";
pub const QUEUE_READY: &str = "QueueReady";
pub const API_READY: &str = "ApiReady";
pub const WORKERS_READY: &str = "WorkersReady";
pub const DEGRADED: &str = "Degraded";

/// A condition before it is dated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

fn verdict(type_: &'static str, ok: bool, reason: &'static str, message: String) -> Verdict {
    Verdict {
        type_,
        ok,
        reason,
        message,
    }
}

pub fn api(fs: &FileStore, seen: &Observed) -> Verdict {
    let wanted = fs.spec.api.replicas;
    let ready = ready_replicas(seen.api.as_ref());
    match (&seen.api, ready >= wanted) {
        (None, _) => verdict(
            API_READY,
            false,
            "NotCreated",
            "the API Deployment does not exist yet".into(),
        ),
        (Some(_), true) => verdict(
            API_READY,
            true,
            "ReplicasReady",
            format!("{ready} of {wanted} API replicas ready"),
        ),
        (Some(_), false) => verdict(
            API_READY,
            false,
            "ReplicasNotReady",
            format!("{ready} of {wanted} API replicas ready"),
        ),
    }
}

/// Every pool has at least as many ready workers as it was scaled to (or one, if it was scaled
/// to more: a pool with one ready worker makes progress).
pub fn workers(
    fs: &FileStore,
    seen: &Observed,
    desired: &std::collections::BTreeMap<String, i32>,
) -> Verdict {
    let mut short = Vec::new();
    let mut summary = Vec::new();
    for pool in &fs.spec.workers {
        let want = desired
            .get(&pool.name)
            .copied()
            .unwrap_or(pool.min_replicas);
        let ready = ready_replicas(seen.pools.get(&pool.name));
        summary.push(format!("{}: {ready} of {want} ready", pool.name));
        if ready < want.min(1) {
            short.push(pool.name.clone());
        }
    }
    if short.is_empty() {
        verdict(WORKERS_READY, true, "PoolsReady", summary.join("; "))
    } else {
        verdict(
            WORKERS_READY,
            false,
            "PoolsNotReady",
            format!(
                "no ready worker in pool(s) {}; {}",
                short.join(", "),
                summary.join("; ")
            ),
        )
    }
}

pub fn database(fs: &FileStore, seen: &Observed) -> Verdict {
    let db = &fs.spec.database;
    if db.mode == Provisioning::External {
        return verdict(
            DATABASE_READY,
            true,
            "External",
            "the database is external".into(),
        );
    }
    let Some(set) = &seen.database else {
        return verdict(
            DATABASE_READY,
            false,
            "NotCreated",
            "the database StatefulSet does not exist yet".into(),
        );
    };
    let ready = set_ready_replicas(Some(set));
    let instances = db.managed.instances;
    let needed = db.managed.synchronous_standbys + 1;
    match primary_pod(seen) {
        None => verdict(
            DATABASE_READY,
            false,
            "NoPrimary",
            format!("no instance is primary; {ready} of {instances} instances ready"),
        ),
        Some(p) if !pod_ready(p) => verdict(
            DATABASE_READY,
            false,
            "PrimaryNotReady",
            format!(
                "primary {} is not ready; {ready} of {instances} instances ready",
                p.name_any()
            ),
        ),
        Some(_) if ready < needed => verdict(
            DATABASE_READY,
            false,
            "QuorumNotReady",
            format!(
                "{ready} of {instances} instances ready; commits wait for {} synchronous standby(s)",
                db.managed.synchronous_standbys
            ),
        ),
        Some(p) => verdict(
            DATABASE_READY,
            true,
            "PrimaryReady",
            format!(
                "primary {}; {ready} of {instances} instances ready",
                p.name_any()
            ),
        ),
    }
}

/// The primary the status names, when it is still one of the instances the spec asks for.
pub fn remembered_primary(fs: &FileStore) -> Option<String> {
    let name = fs.status.as_ref()?.database.as_ref()?.primary.clone()?;
    let set = names::database(&fs.name_any());
    (0..fs.spec.database.managed.instances)
        .any(|i| names::ordinal_pod(&set, i) == name)
        .then_some(name)
}

/// The instance labelled primary, ready or not.
pub fn primary_pod(seen: &Observed) -> Option<&Pod> {
    seen.database_pods
        .iter()
        .find(|p| role::of(p) == Some(PodRole::Primary))
}

pub fn queue(fs: &FileStore, seen: &Observed) -> Verdict {
    let q = &fs.spec.queue;
    if q.mode == Provisioning::External {
        return verdict(
            QUEUE_READY,
            true,
            "External",
            "the queue is external".into(),
        );
    }
    let Some(set) = &seen.queue else {
        return verdict(
            QUEUE_READY,
            false,
            "NotCreated",
            "the RabbitMQ StatefulSet does not exist yet".into(),
        );
    };
    let ready = set_ready_replicas(Some(set));
    let quorum = q.replicas / 2 + 1;
    if ready >= quorum {
        verdict(
            QUEUE_READY,
            true,
            "QuorumReady",
            format!("{ready} of {} RabbitMQ nodes ready", q.replicas),
        )
    } else {
        verdict(
            QUEUE_READY,
            false,
            "QuorumNotReady",
            format!(
                "{ready} of {} RabbitMQ nodes ready; quorum queues need {quorum}",
                q.replicas
            ),
        )
    }
}

/// Running below what was asked for, while still serving or recoverable.
pub fn degraded(fs: &FileStore, seen: &Observed) -> Verdict {
    let mut why = Vec::new();
    let api_ready = ready_replicas(seen.api.as_ref());
    if seen.api.is_some() && api_ready < fs.spec.api.replicas {
        why.push(format!(
            "{api_ready} of {} API replicas ready",
            fs.spec.api.replicas
        ));
    }
    if fs.spec.database.mode == Provisioning::Managed && seen.database.is_some() {
        let ready = set_ready_replicas(seen.database.as_ref());
        if ready < fs.spec.database.managed.instances {
            why.push(format!(
                "{ready} of {} database instances ready",
                fs.spec.database.managed.instances
            ));
        }
    }
    if fs.spec.queue.mode == Provisioning::Managed && seen.queue.is_some() {
        let ready = set_ready_replicas(seen.queue.as_ref());
        if ready < fs.spec.queue.replicas {
            why.push(format!(
                "{ready} of {} RabbitMQ nodes ready",
                fs.spec.queue.replicas
            ));
        }
    }
    if let Some(Err(e)) = &seen.queue_depths {
        why.push(format!("queue depth unknown, autoscaling paused: {e}"));
    }
    if why.is_empty() {
        verdict(
            DEGRADED,
            false,
            "AsRequested",
            "every component runs as requested".into(),
        )
    } else {
        verdict(DEGRADED, true, "BelowRequested", why.join("; "))
    }
}

/// `Ready` from the component verdicts.
pub fn ready(components: &[Verdict]) -> Verdict {
    let waiting: Vec<&str> = components
        .iter()
        .filter(|v| !v.ok)
        .map(|v| v.type_)
        .collect();
    if waiting.is_empty() {
        verdict(
            READY,
            true,
            "AllComponentsReady",
            "API, workers, database and queue are ready".into(),
        )
    } else {
        verdict(
            READY,
            false,
            "ComponentsNotReady",
            format!("waiting for {}", waiting.join(", ")),
        )
    }
}

/// Every condition, dated: a condition whose status did not change keeps its transition time.
pub fn conditions(
    verdicts: &[Verdict],
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    verdicts
        .iter()
        .map(|v| {
            let status = if v.ok { "True" } else { "False" }.to_owned();
            let since = previous
                .iter()
                .find(|c| c.type_ == v.type_ && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: v.type_.to_owned(),
                status,
                reason: v.reason.to_owned(),
                message: v.message.clone(),
                observed_generation: generation,
                last_transition_time: since,
            }
        })
        .collect()
}

/// Which instance is primary and which standbys are up, with their lag when the failover
/// routine probed them; from the pods' labels and readiness before it does.
pub fn replication(fs: &FileStore, seen: &Observed) -> Option<ReplicationStatus> {
    if fs.spec.database.mode == Provisioning::External {
        return None;
    }
    // The routine's probes give live lag, once they reach a serving primary; until then (pods
    // starting, probes failing) the labels say which pod is meant to be primary.
    if let Some(probed) = seen
        .replication
        .as_deref()
        .map(crate::failover::replication_status)
        .filter(|r| r.primary.is_some())
    {
        return Some(probed);
    }
    // No pod labelled primary is not a new primary: the pod may be gone for a moment (deleted,
    // evicted, its node lost) and come back without its label. The one remembered stays primary
    // until the failover routine moves the label, so that its next incarnation gets the label
    // back (plan::role_labels) instead of becoming a replica of nobody.
    let primary = primary_pod(seen)
        .map(|p| p.name_any())
        .or_else(|| remembered_primary(fs));
    Some(ReplicationStatus {
        standbys: seen
            .database_pods
            .iter()
            .filter(|p| Some(p.name_any()) != primary)
            .map(|p| StandbyStatus {
                name: p.name_any(),
                alive: pod_ready(p),
                receive_lag_bytes: None,
                replay_lag_bytes: None,
            })
            .collect(),
        primary,
    })
}

