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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSet;

    use super::*;
    use crate::build::secrets::Credentials;
    use crate::crd::{ExternalService, SecretKeyRef, Stage};
    use crate::queue_depth::QueueStats;
    use crate::reconcile::conditions::{DATABASE_READY, DEGRADED};
    use crate::reconcile::fixtures::*;

    fn inputs(fs: &FileStore) -> (Inputs, Vec<&'static str>) {
        let (credentials, generated) =
            Credentials::default().complete(&fs.spec, &mut rand::rngs::mock::StepRng::new(1, 1));
        let inputs = Inputs {
            credentials,
            ..Inputs::default()
        };
        (inputs, generated)
    }

    /// The plan for `fs` after `seen`, with every credential already stored.
    fn plan_for(fs: &FileStore, seen: &Observed) -> Plan {
        let valid = build::validate(fs).unwrap();
        plan(&valid, seen, inputs(fs).0, &[], Vec::new(), &at(60))
    }

    fn reasons(plan: &Plan) -> Vec<&'static str> {
        plan.notices.iter().map(|n| n.reason).collect()
    }

    fn unlabelled(ordinals: &[i32]) -> Vec<k8s_openapi::api::core::v1::Pod> {
        ordinals.iter().map(|i| db_pod(*i, None, true)).collect()
    }

    fn with_pods(pods: Vec<k8s_openapi::api::core::v1::Pod>) -> Observed {
        Observed {
            database: Some(stateful_set("files-db", 3)),
            database_pods: pods,
            ..Observed::default()
        }
    }

    fn roles(labels: &[(String, PodRole, Option<String>)]) -> Vec<(&str, PodRole, bool)> {
        labels
            .iter()
            .map(|(pod, role, why)| (pod.as_str(), *role, why.is_some()))
            .collect()
    }

    #[test]
    fn a_new_cluster_bootstraps_on_instance_zero_and_the_rest_follow_it() {
        let seen = with_pods(unlabelled(&[2, 0, 1]));
        let labels = role_labels(&filestore(), &seen, false);
        assert_eq!(
            roles(&labels),
            [
                ("files-db-2", PodRole::Replica, false),
                ("files-db-0", PodRole::Primary, true),
                ("files-db-1", PodRole::Replica, false),
            ]
        );
    }

    #[test]
    fn an_initialised_cluster_never_bootstraps_again() {
        // Instance 0 lost its volume and its label: labelling it primary would start a second,
        // empty cluster. Without a primary to remember, every instance waits as a replica.
        let seen = with_pods(unlabelled(&[0, 1, 2]));
        let labels = role_labels(&filestore(), &seen, true);
        assert!(
            labels.iter().all(|(_, role, _)| *role == PodRole::Replica),
            "{labels:?}"
        );
    }

    #[test]
    fn a_recreated_primary_gets_its_label_back_and_only_while_no_one_else_has_it() {
        let fs = with_status(filestore(), remembering("files-db-1"));
        let seen = with_pods(vec![
            db_pod(0, Some(PodRole::Replica), true),
            db_pod(1, None, false),
        ]);
        assert_eq!(
            roles(&role_labels(&fs, &seen, true)),
            [("files-db-1", PodRole::Primary, true)]
        );
        // The failover routine moved the label meanwhile: the remembered one rejoins as a
        // replica, it does not take the label back.
        let moved = with_pods(vec![
            db_pod(0, Some(PodRole::Primary), true),
            db_pod(1, None, false),
        ]);
        assert_eq!(
            roles(&role_labels(&fs, &moved, true)),
            [("files-db-1", PodRole::Replica, false)]
        );
    }

    #[test]
    fn a_labelled_pod_is_never_relabelled_whatever_its_value() {
        let mut strange = db_pod(0, None, true);
        strange
            .labels_mut()
            .insert(role::LABEL.to_owned(), "maintenance".to_owned());
        let seen = with_pods(vec![strange, db_pod(1, Some(PodRole::Fenced), true)]);
        assert!(role_labels(&filestore(), &seen, false).is_empty());
    }

    #[test]
    fn an_external_database_has_no_roles_to_label() {
        let mut fs = filestore();
        fs.spec.database.mode = Provisioning::External;
        fs.spec.database.external = Some(ExternalService {
            url_secret: SecretKeyRef {
                name: "db".into(),
                key: "url".into(),
            },
        });
        assert!(role_labels(&fs, &with_pods(unlabelled(&[0])), false).is_empty());
    }

    #[test]
    fn a_first_reconcile_generates_credentials_and_reports_not_ready() {
        let fs = filestore();
        let (inputs, generated) = inputs(&fs);
        assert!(!generated.is_empty());
        let valid = build::validate(&fs).unwrap();
        let plan = plan(
            &valid,
            &Observed::default(),
            inputs,
            &generated,
            Vec::new(),
            &at(60),
        );
        assert_eq!(reasons(&plan), ["CredentialsGenerated", "NotReady"]);
        assert!(plan.notices[0].note.ends_with("in Secret files-generated"));
        assert!(plan.notices[1].warning);
        assert!(plan.role_labels.is_empty());
        let types: Vec<&str> = plan
            .status
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                READY,
                DATABASE_READY,
                "QueueReady",
                "ApiReady",
                "WorkersReady",
                DEGRADED
            ]
        );
        assert!(plan.status.conditions.iter().all(|c| c.status == "False"));
        assert_eq!(plan.status.observed_generation, Some(1));
        assert_eq!(plan.status.api_ready_replicas, Some(0));
        assert!(!plan.status.database_initialised);
        assert_eq!(
            plan.objects.len(),
            build::build_all(&valid, &self::inputs(&fs).0).len()
        );
    }

    #[test]
    fn the_plan_labels_a_bootstrap_primary_and_reports_as_if_it_were_labelled() {
        let seen = with_pods(unlabelled(&[0, 1, 2]));
        let plan = plan_for(&filestore(), &seen);
        assert_eq!(
            plan.role_labels,
            [
                ("files-db-0".to_owned(), PodRole::Primary),
                ("files-db-1".to_owned(), PodRole::Replica),
                ("files-db-2".to_owned(), PodRole::Replica),
            ]
        );
        assert!(reasons(&plan).contains(&"PrimaryAssigned"));
        let db = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == DATABASE_READY)
            .unwrap();
        assert_eq!(
            (db.status.as_str(), db.reason.as_str()),
            ("True", "PrimaryReady")
        );
        assert_eq!(
            plan.status
                .database
                .as_ref()
                .and_then(|d| d.primary.as_deref()),
            Some("files-db-0")
        );
        // Not initialised until a primary was seen ready under its label.
        assert!(!plan.status.database_initialised);
        let next = with_pods(vec![
            db_pod(0, Some(PodRole::Primary), true),
            db_pod(1, Some(PodRole::Replica), true),
        ]);
        assert!(plan_for(&filestore(), &next).status.database_initialised);
    }

    #[test]
    fn initialised_once_is_initialised_for_good() {
        let remembered = with_status(
            filestore(),
            FileStoreStatus {
                database_initialised: true,
                ..FileStoreStatus::default()
            },
        );
        let plan = plan_for(&remembered, &with_pods(unlabelled(&[0])));
        assert!(plan.status.database_initialised);
        assert_eq!(
            plan.role_labels,
            [("files-db-0".to_owned(), PodRole::Replica)]
        );
        let marked = Observed {
            database_marked_initialised: true,
            ..with_pods(unlabelled(&[0]))
        };
        assert!(plan_for(&filestore(), &marked).status.database_initialised);
    }

    #[test]
    fn ready_is_announced_once_when_it_changes() {
        let all_ready = Observed {
            api: Some(deployment(2, 2)),
            pools: [("all".to_owned(), deployment(1, 1))].into(),
            queue: Some(stateful_set("files-rabbitmq", 3)),
            ..with_pods(vec![
                db_pod(0, Some(PodRole::Primary), true),
                db_pod(1, Some(PodRole::Replica), true),
                db_pod(2, Some(PodRole::Replica), true),
            ])
        };
        let was = |ok| {
            with_status(
                filestore(),
                FileStoreStatus {
                    conditions: vec![condition(READY, ok, &at(0))],
                    ..FileStoreStatus::default()
                },
            )
        };
        let plan = plan_for(&was(false), &all_ready);
        assert_eq!(reasons(&plan), ["Ready"]);
        assert!(!plan.notices[0].warning);
        assert!(plan_for(&was(true), &all_ready).notices.is_empty());
        let ready = &plan.status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), &ready.last_transition_time),
            ("True", &at(60))
        );
    }

    #[test]
    fn an_unsafe_disruption_budget_is_warned_about_once_per_spec_change() {
        let mut fs = filestore();
        fs.spec.database.managed.instances = 2;
        fs.spec.queue.replicas = 2;
        let plan = plan_for(&fs, &Observed::default());
        let warning = plan
            .notices
            .iter()
            .find(|n| n.reason == "DisruptionUnsafe")
            .expect("a warning");
        assert!(warning.warning);
        assert!(
            warning.note.starts_with("database: 2 instances"),
            "{}",
            warning.note
        );
        assert!(
            warning.note.contains("; queue: 2 RabbitMQ nodes"),
            "{}",
            warning.note
        );
        // The same generation was seen before: said already.
        let seen_before = with_status(
            fs,
            FileStoreStatus {
                observed_generation: Some(1),
                ..FileStoreStatus::default()
            },
        );
        assert!(
            !reasons(&plan_for(&seen_before, &Observed::default())).contains(&"DisruptionUnsafe")
        );
    }

    fn database_set(plan: &Plan) -> StatefulSet {
        plan.objects
            .iter()
            .find_map(|o| match o {
                Owned::StatefulSet(s) if s.name_any() == "files-db" => Some(s.clone()),
                _ => None,
            })
            .expect("the database StatefulSet")
    }

    fn claim_size(set: &StatefulSet) -> String {
        let claims = set
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap();
        let requests = claims[0].spec.as_ref().unwrap().resources.as_ref().unwrap();
        requests.requests.as_ref().unwrap()["storage"].0.clone()
    }

    #[test]
    fn a_live_stateful_set_keeps_its_volume_claims_and_the_change_is_refused_aloud() {
        let mut small = filestore();
        small.spec.database.managed.storage = "5Gi".into();
        let live = database_set(&plan_for(&small, &Observed::default()));
        let seen = Observed {
            database: Some(live.clone()),
            ..Observed::default()
        };
        assert!(!reasons(&plan_for(&small, &seen)).contains(&"StorageChangeNotApplied"));

        let mut larger = small.clone();
        larger.spec.database.managed.storage = "20Gi".into();
        let plan = plan_for(&larger, &seen);
        assert_eq!(claim_size(&database_set(&plan)), "5Gi");
        let refused = plan
            .notices
            .iter()
            .find(|n| n.reason == "StorageChangeNotApplied")
            .expect("a warning");
        assert!(refused.warning && refused.note.starts_with("files-db:"));
        // With nothing live yet, the spec's size is what gets built.
        assert_eq!(
            claim_size(&database_set(&plan_for(&larger, &Observed::default()))),
            "20Gi"
        );
    }

    #[test]
    fn an_invalid_spec_replaces_ready_and_degraded_and_keeps_the_rest() {
        let mut fs = with_status(
            filestore(),
            FileStoreStatus {
                observed_generation: Some(1),
                conditions: vec![
                    condition(READY, true, &at(0)),
                    condition(DATABASE_READY, true, &at(0)),
                    condition(DEGRADED, false, &at(0)),
                ],
                database_initialised: true,
                ..FileStoreStatus::default()
            },
        );
        fs.metadata.generation = Some(2);
        let error = BuildError::InvalidSpec("no worker pool runs the index stage".into());
        let (status, notice) = invalid(&fs, &error, &at(60));
        assert_eq!(status.observed_generation, Some(2));
        assert!(status.database_initialised);
        let summary: Vec<(&str, &str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (DATABASE_READY, "True", "Earlier"),
                (READY, "False", "InvalidSpec"),
                (DEGRADED, "True", "InvalidSpec"),
            ]
        );
        assert!(
            status.conditions[1..]
                .iter()
                .all(|c| c.last_transition_time == at(60))
        );
        assert_eq!(
            (notice.warning, notice.reason, notice.action),
            (true, "InvalidSpec", "Validate")
        );
        assert_eq!(
            notice.note,
            "invalid spec: no worker pool runs the index stage"
        );
    }

    fn depths(messages: u64) -> Option<Result<BTreeMap<String, QueueStats>, String>> {
        let queue = Stage::Scan.pipeline().queue().to_owned();
        Some(Ok(BTreeMap::from([(
            queue,
            QueueStats {
                messages,
                consumers: 1,
            },
        )])))
    }

    #[test]
    fn pools_scale_out_on_depth_and_stay_put_without_it() {
        let fs = filestore();
        let mut pools = Pools::default();
        let backlog = Observed {
            queue_depths: depths(100),
            ..Observed::default()
        };
        let (replicas, notices) = pools.scale(&fs, &backlog, Duration::ZERO);
        // 100 waiting at 20 per worker: 5, from the minimum of 1.
        assert_eq!(replicas, BTreeMap::from([("all".to_owned(), 5)]));
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0]
                .note
                .starts_with("worker pool all: 1 -> 5 replicas"),
            "{}",
            notices[0].note
        );

        // Depth unknown: the live size stands, within the pool's bounds.
        let oversized = Observed {
            pools: [("all".to_owned(), deployment(50, 50))].into(),
            ..Observed::default()
        };
        let (replicas, notices) = pools.scale(&fs, &oversized, Duration::from_secs(15));
        assert_eq!(replicas["all"], 10);
        assert!(notices.is_empty());
    }

    #[test]
    fn pools_shrink_only_after_the_window_and_forget_their_filestore() {
        let fs = filestore();
        let mut pools = Pools::default();
        let drained = Observed {
            pools: [("all".to_owned(), deployment(5, 5))].into(),
            queue_depths: depths(0),
            ..Observed::default()
        };
        let (replicas, _) = pools.scale(&fs, &drained, Duration::ZERO);
        assert_eq!(replicas["all"], 5, "no window seen yet");
        let (replicas, notices) = pools.scale(&fs, &drained, SCALE_IN_WINDOW);
        assert_eq!(replicas["all"], 1);
        assert_eq!(notices[0].reason, "Scaled");
        assert_eq!(pools.0.len(), 1);
        pools.forget("other", "files");
        assert_eq!(
            pools.0.len(),
            1,
            "another namespace's FileStore of that name"
        );
        pools.forget(NAMESPACE, NAME);
        assert!(pools.0.is_empty());
    }
}
