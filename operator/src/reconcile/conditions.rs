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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crd::{ExternalService, SecretKeyRef, WorkerPool};
    use crate::failover::{Instance, Lsn, Role};
    use crate::queue_depth::QueueStats;
    use crate::reconcile::fixtures::*;

    fn external() -> Option<ExternalService> {
        Some(ExternalService {
            url_secret: SecretKeyRef {
                name: "url".into(),
                key: "url".into(),
            },
        })
    }

    /// A default FileStore whose database, queue, API and workers all run as asked.
    fn healthy() -> Observed {
        Observed {
            api: Some(deployment(2, 2)),
            pools: BTreeMap::from([("all".to_owned(), deployment(1, 1))]),
            database: Some(stateful_set("files-db", 3)),
            database_pods: vec![
                db_pod(0, Some(PodRole::Primary), true),
                db_pod(1, Some(PodRole::Replica), true),
                db_pod(2, Some(PodRole::Replica), true),
            ],
            queue: Some(stateful_set("files-rabbitmq", 3)),
            queue_depths: Some(Ok(BTreeMap::new())),
            ..Observed::default()
        }
    }

    fn reason_of(v: &Verdict) -> (&'static str, bool, &'static str) {
        (v.type_, v.ok, v.reason)
    }

    #[test]
    fn the_database_is_ready_only_with_a_ready_primary_and_its_quorum() {
        let fs = filestore();
        let mut seen = healthy();
        assert_eq!(
            reason_of(&database(&fs, &seen)),
            (DATABASE_READY, true, "PrimaryReady")
        );
        assert!(database(&fs, &seen).message.contains("files-db-0"));

        // Two of three instances still give the primary its one synchronous standby.
        seen.database = Some(stateful_set("files-db", 2));
        assert!(database(&fs, &seen).ok);
        // One (the primary alone) does not: commits would wait.
        seen.database = Some(stateful_set("files-db", 1));
        assert_eq!(
            reason_of(&database(&fs, &seen)),
            (DATABASE_READY, false, "QuorumNotReady")
        );

        seen.database = Some(stateful_set("files-db", 3));
        seen.database_pods[0] = db_pod(0, Some(PodRole::Primary), false);
        assert_eq!(database(&fs, &seen).reason, "PrimaryNotReady");

        // A fenced former primary is no primary.
        seen.database_pods[0] = db_pod(0, Some(PodRole::Fenced), true);
        assert_eq!(database(&fs, &seen).reason, "NoPrimary");

        seen.database = None;
        assert_eq!(
            reason_of(&database(&fs, &seen)),
            (DATABASE_READY, false, "NotCreated")
        );
    }

    #[test]
    fn without_synchronous_standbys_a_ready_primary_alone_is_enough() {
        let mut fs = filestore();
        fs.spec.database.managed.synchronous_standbys = 0;
        let mut seen = healthy();
        seen.database = Some(stateful_set("files-db", 1));
        assert_eq!(database(&fs, &seen).reason, "PrimaryReady");
    }

    #[test]
    fn external_backends_are_ready_whatever_was_observed() {
        let mut fs = filestore();
        fs.spec.database.mode = Provisioning::External;
        fs.spec.database.external = external();
        fs.spec.queue.mode = Provisioning::External;
        fs.spec.queue.external = external();
        let nothing = Observed::default();
        assert_eq!(
            reason_of(&database(&fs, &nothing)),
            (DATABASE_READY, true, "External")
        );
        assert_eq!(
            reason_of(&queue(&fs, &nothing)),
            (QUEUE_READY, true, "External")
        );
        assert_eq!(replication(&fs, &healthy()), None);
    }

    #[test]
    fn the_queue_is_ready_with_a_majority_of_its_nodes() {
        let fs = filestore();
        let mut seen = healthy();
        seen.queue = Some(stateful_set("files-rabbitmq", 2));
        assert_eq!(
            reason_of(&queue(&fs, &seen)),
            (QUEUE_READY, true, "QuorumReady")
        );
        seen.queue = Some(stateful_set("files-rabbitmq", 1));
        let v = queue(&fs, &seen);
        assert_eq!(reason_of(&v), (QUEUE_READY, false, "QuorumNotReady"));
        assert!(v.message.contains("quorum queues need 2"), "{}", v.message);
        seen.queue = None;
        assert_eq!(queue(&fs, &seen).reason, "NotCreated");
    }

    #[test]
    fn the_api_is_ready_with_every_replica_asked_for() {
        let fs = filestore();
        let mut seen = healthy();
        assert_eq!(
            reason_of(&api(&fs, &seen)),
            (API_READY, true, "ReplicasReady")
        );
        seen.api = Some(deployment(2, 1));
        let v = api(&fs, &seen);
        assert_eq!(reason_of(&v), (API_READY, false, "ReplicasNotReady"));
        assert_eq!(v.message, "1 of 2 API replicas ready");
        seen.api = None;
        assert_eq!(api(&fs, &seen).reason, "NotCreated");
    }

    #[test]
    fn workers_are_ready_when_every_pool_scaled_up_has_a_ready_worker() {
        let mut fs = filestore();
        fs.spec.workers = vec![
            WorkerPool {
                name: "scan".into(),
                ..WorkerPool::default()
            },
            WorkerPool {
                name: "rest".into(),
                min_replicas: 0,
                ..WorkerPool::default()
            },
        ];
        let mut seen = healthy();
        seen.pools = BTreeMap::from([
            ("scan".to_owned(), deployment(4, 1)),
            ("rest".to_owned(), deployment(0, 0)),
        ]);
        // One ready worker of four makes progress; a pool scaled to zero needs none.
        let v = workers(&fs, &seen, &replicas(&[("scan", 4), ("rest", 0)]));
        assert_eq!(reason_of(&v), (WORKERS_READY, true, "PoolsReady"));
        assert_eq!(v.message, "scan: 1 of 4 ready; rest: 0 of 0 ready");

        seen.pools.insert("scan".to_owned(), deployment(4, 0));
        let v = workers(&fs, &seen, &replicas(&[("scan", 4), ("rest", 0)]));
        assert_eq!(reason_of(&v), (WORKERS_READY, false, "PoolsNotReady"));
        assert!(
            v.message.starts_with("no ready worker in pool(s) scan;"),
            "{}",
            v.message
        );

        // A pool the autoscaler has not sized yet is held to its minimum.
        seen.pools.insert("scan".to_owned(), deployment(1, 0));
        assert!(!workers(&fs, &seen, &BTreeMap::new()).ok);
    }

    #[test]
    fn degraded_says_what_runs_below_what_was_asked_for() {
        let fs = filestore();
        let v = degraded(&fs, &healthy());
        assert_eq!(reason_of(&v), (DEGRADED, false, "AsRequested"));

        let mut seen = healthy();
        seen.api = Some(deployment(2, 1));
        seen.database = Some(stateful_set("files-db", 2));
        seen.queue = Some(stateful_set("files-rabbitmq", 2));
        seen.queue_depths = Some(Err("connection refused".into()));
        let v = degraded(&fs, &seen);
        assert_eq!(reason_of(&v), (DEGRADED, true, "BelowRequested"));
        assert_eq!(
            v.message,
            "1 of 2 API replicas ready; 2 of 3 database instances ready; 2 of 3 RabbitMQ nodes ready; queue depth unknown, autoscaling paused: connection refused"
        );
    }

    #[test]
    fn what_does_not_exist_yet_is_not_degraded_but_not_ready() {
        let fs = filestore();
        let nothing = Observed::default();
        assert!(!degraded(&fs, &nothing).ok);
        let components = [
            database(&fs, &nothing),
            queue(&fs, &nothing),
            api(&fs, &nothing),
            workers(&fs, &nothing, &BTreeMap::new()),
        ];
        let v = ready(&components);
        assert_eq!(reason_of(&v), (READY, false, "ComponentsNotReady"));
        assert_eq!(
            v.message,
            "waiting for DatabaseReady, QueueReady, ApiReady, WorkersReady"
        );
    }

    #[test]
    fn ready_names_exactly_the_components_it_waits_for() {
        let fs = filestore();
        let seen = healthy();
        let mut components = [
            database(&fs, &seen),
            queue(&fs, &seen),
            api(&fs, &seen),
            workers(&fs, &seen, &replicas(&[("all", 1)])),
        ];
        assert_eq!(
            reason_of(&ready(&components)),
            (READY, true, "AllComponentsReady")
        );
        components[2].ok = false;
        assert_eq!(ready(&components).message, "waiting for ApiReady");
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let earlier = at(0);
        let now = at(60);
        let previous = [
            condition(READY, true, &earlier),
            condition(DEGRADED, false, &earlier),
        ];
        let verdicts = [
            verdict(READY, true, "AllComponentsReady", "fine".into()),
            verdict(DEGRADED, true, "BelowRequested", "slow".into()),
            verdict(API_READY, true, "ReplicasReady", "new".into()),
        ];
        let dated = conditions(&verdicts, &previous, Some(7), &now);
        let by_type = |t: &str| dated.iter().find(|c| c.type_ == t).unwrap();
        assert_eq!(by_type(READY).last_transition_time, earlier, "unchanged");
        assert_eq!(by_type(READY).reason, "AllComponentsReady");
        assert_eq!(by_type(DEGRADED).last_transition_time, now, "changed");
        assert_eq!(by_type(DEGRADED).status, "True");
        assert_eq!(by_type(API_READY).last_transition_time, now, "new");
        assert!(dated.iter().all(|c| c.observed_generation == Some(7)));
        assert_eq!(
            dated.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            [READY, DEGRADED, API_READY],
            "in the order of the verdicts"
        );
    }

    #[test]
    fn the_remembered_primary_counts_only_while_the_spec_still_has_that_instance() {
        let fs = with_status(filestore(), remembering("files-db-2"));
        assert_eq!(remembered_primary(&fs).as_deref(), Some("files-db-2"));
        let mut shrunk = fs.clone();
        shrunk.spec.database.managed.instances = 2;
        assert_eq!(remembered_primary(&shrunk), None);
        let stranger = with_status(filestore(), remembering("other-db-0"));
        assert_eq!(remembered_primary(&stranger), None);
        assert_eq!(remembered_primary(&filestore()), None);
    }

    #[test]
    fn replication_follows_the_labels_until_the_probes_find_a_primary() {
        let fs = with_status(filestore(), remembering("files-db-1"));
        let mut seen = healthy();
        seen.database_pods = vec![
            db_pod(0, Some(PodRole::Replica), true),
            db_pod(2, Some(PodRole::Replica), false),
        ];
        // No pod labelled primary (files-db-1 is being recreated): the remembered one stays.
        let status = replication(&fs, &seen).unwrap();
        assert_eq!(status.primary.as_deref(), Some("files-db-1"));
        let standbys: Vec<(&str, bool)> = status
            .standbys
            .iter()
            .map(|s| (s.name.as_str(), s.alive))
            .collect();
        assert_eq!(standbys, [("files-db-0", true), ("files-db-2", false)]);

        // Probes that reach a serving primary win over the labels.
        let instance = |name: &str, role, received| Instance {
            name: name.into(),
            alive: true,
            fenced: false,
            role,
            timeline: 2,
            received: Lsn(received),
            replayed: Lsn(received),
        };
        seen.replication = Some(vec![
            instance("files-db-0", Role::Standby, 90),
            instance("files-db-2", Role::Primary, 100),
        ]);
        let status = replication(&fs, &seen).unwrap();
        assert_eq!(status.primary.as_deref(), Some("files-db-2"));
        assert_eq!(status.standbys[0].receive_lag_bytes, Some(10));

        // Probes without a serving primary say nothing about who is meant to be one.
        seen.replication = Some(vec![instance("files-db-0", Role::Standby, 90)]);
        assert_eq!(
            replication(&fs, &seen).unwrap().primary.as_deref(),
            Some("files-db-1")
        );
    }

    #[test]
    fn the_primary_pod_is_the_one_labelled_primary_ready_or_not() {
        let mut seen = healthy();
        seen.database_pods = vec![
            db_pod(0, Some(PodRole::Fenced), true),
            db_pod(1, Some(PodRole::Primary), false),
        ];
        assert_eq!(
            primary_pod(&seen).map(|p| p.name_any()).as_deref(),
            Some("files-db-1")
        );
        seen.database_pods.remove(1);
        assert!(primary_pod(&seen).is_none());
    }

    #[test]
    fn a_backlog_is_the_autoscaler_s_business_not_degradation() {
        let fs = filestore();
        let mut seen = healthy();
        seen.queue_depths = Some(Ok(BTreeMap::from([(
            "filestore.scan".to_owned(),
            QueueStats {
                messages: 10_000,
                consumers: 0,
            },
        )])));
        assert_eq!(degraded(&fs, &seen).reason, "AsRequested");
    }
}
