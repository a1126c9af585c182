//! Test fixtures for the reconcile's pure decisions: a FileStore as the API server hands it
//! over, and the objects a reconcile observes (database pods with a role and a readiness,
//! StatefulSets and Deployments with ready replicas), built small so each test says only what
//! matters to it.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use k8s_openapi::chrono::{TimeZone, Utc};

use crate::crd::{FileStore, FileStoreSpec, FileStoreStatus, ObjectStorageSpec};
use crate::failover::ReplicationStatus;
use crate::role::{self, PodRole};

pub const NAME: &str = "files";
pub const NAMESPACE: &str = "prod";

/// A default FileStore `files` in `prod`, generation 1, as read from the API server.
pub fn filestore() -> FileStore {
    let mut fs = FileStore::new(
        NAME,
        FileStoreSpec {
            image: Default::default(),
            api: Default::default(),
            workers: vec![Default::default()],
            database: Default::default(),
            queue: Default::default(),
            object_storage: ObjectStorageSpec {
                endpoint: None,
                region: "us-east-1".into(),
                raw_bucket: "raw".into(),
                chunk_bucket: "chunks".into(),
                credentials_secret: "s3".into(),
                virtual_hosted: false,
                checksums: Default::default(),
            },
            auth: Default::default(),
            encryption: Default::default(),
            scanner: Default::default(),
        },
    );
    fs.metadata = ObjectMeta {
        name: Some(NAME.into()),
        namespace: Some(NAMESPACE.into()),
        uid: Some("0b6f4a52-7f43-4d0e-9d51-3a1b9f4c2e10".into()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    fs
}

/// `fs` with the status a previous reconcile wrote.
pub fn with_status(mut fs: FileStore, status: FileStoreStatus) -> FileStore {
    fs.status = Some(status);
    fs
}

/// A previous status that names `primary` as the database's primary.
pub fn remembering(primary: &str) -> FileStoreStatus {
    FileStoreStatus {
        database: Some(ReplicationStatus {
            primary: Some(primary.into()),
            standbys: Vec::new(),
        }),
        ..FileStoreStatus::default()
    }
}

/// The database pod `files-db-<ordinal>`, labelled `role` (none when `None`), ready or not.
pub fn db_pod(ordinal: i32, role: Option<PodRole>, ready: bool) -> Pod {
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{NAME}-db-{ordinal}")),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    if let Some(role) = role {
        role::assume(&mut pod, role);
    }
    pod
}

/// A StatefulSet named `name` with `ready` ready replicas.
pub fn stateful_set(name: &str, ready: i32) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        status: Some(StatefulSetStatus {
            ready_replicas: Some(ready),
            ..StatefulSetStatus::default()
        }),
        ..StatefulSet::default()
    }
}

/// A Deployment with `replicas` asked for and `ready` of them ready.
pub fn deployment(replicas: i32, ready: i32) -> Deployment {
    Deployment {
        spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: Some(replicas),
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            ready_replicas: Some(ready),
            ..DeploymentStatus::default()
        }),
        ..Deployment::default()
    }
}

/// A moment, `seconds` after a fixed origin.
pub fn at(seconds: i64) -> Time {
    Time(Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap())
}

/// A dated condition, as a previous status holds it.
pub fn condition(type_: &str, ok: bool, since: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: "Earlier".into(),
        message: "earlier".into(),
        observed_generation: Some(1),
        last_transition_time: since.clone(),
    }
}

/// Ready replicas of each pool, by pool name.
pub fn replicas(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
