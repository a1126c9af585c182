//! The managed PostgreSQL: a StatefulSet of instances (one primary, streaming standbys,
//! commits confirmed by a quorum of them), a read-write Service that follows the primary (by
//! the role label the operator sets) and a read-only Service over the standbys.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, ObjectFieldSelector, PodSpec, Service, ServicePort, ServiceSpec,
    Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{self, env, env_from_secret, mount};
use super::process::POSTGRES_PORT;
use super::stateful::{self, Members};
use super::{Inputs, Owned, Owner, names, secrets};
use crate::crd::ManagedDatabase;
use crate::role::{self, PodRole};

pub const COMPONENT: &str = "database";
/// The `postgres` user of the official image.
const POSTGRES_UID: i64 = 999;
const DATA_DIR: &str = "/var/lib/postgresql/data";
const SCRIPTS_DIR: &str = "/etc/filestore-db";
/// Where start.sh finds the pod's labels (`POD_LABELS` overrides it).
const PODINFO_DIR: &str = "/etc/podinfo";
const START_SCRIPT: &str = include_str!("database/start.sh");
/// PostgreSQL's dynamic shared memory (parallel queries) lives in /dev/shm, which container
/// runtimes cap at 64 MiB: a parallel hash join over a large table fails with "could not resize
/// shared memory segment". A memory-backed volume of four times that, counted against the
/// pod's memory, is room for the parallel workers of a mid-sized instance.
pub const SHM_SIZE: &str = "256Mi";

pub fn build(owner: &Owner, db: &ManagedDatabase, inputs: &Inputs) -> Vec<Owned> {
    vec![
        Owned::ConfigMap(scripts(owner, db, inputs.database_initialised)),
        Owned::Service(governing_service(owner)),
        Owned::Service(role_service(
            owner,
            names::database_read_write(&owner.name),
            PodRole::Primary,
        )),
        Owned::Service(role_service(
            owner,
            names::database_read_only(&owner.name),
            PodRole::Replica,
        )),
        Owned::PodDisruptionBudget(pod::disruption_budget(
            owner,
            names::database(&owner.name),
            COMPONENT,
            if one_eviction_blocks_commits(db) {
                0
            } else {
                1
            },
        )),
        Owned::StatefulSet(stateful_set(owner, db)),
    ]
}

/// Commits wait for `synchronousStandbys` standbys; with no instance to spare (2 instances, 1
/// synchronous standby), evicting a standby stops every commit until it is back, and evicting
/// the primary leaves the promoted standby without one. Its disruption budget then allows no
/// eviction: a drain waits, visibly, for someone to add an instance or move a pod by hand.
pub fn one_eviction_blocks_commits(db: &ManagedDatabase) -> bool {
    db.synchronous_standbys > 0 && db.instances <= db.synchronous_standbys + 1
}

/// Instance names, as `synchronous_standby_names` lists them.
pub fn instance_names(owner: &Owner, db: &ManagedDatabase) -> Vec<String> {
    let set = names::database(&owner.name);
    (0..db.instances)
        .map(|i| names::ordinal_pod(&set, i))
        .collect()
}

/// `ANY k (...)` over every instance: the primary is never its own standby, so the same
/// setting holds whichever instance is primary, and failover needs no reconfiguration.
pub fn synchronous_standby_names(owner: &Owner, db: &ManagedDatabase) -> String {
    if db.synchronous_standbys == 0 || db.instances < 2 {
        return String::new();
    }
    let quoted: Vec<String> = instance_names(owner, db)
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    format!("ANY {} ({})", db.synchronous_standbys, quoted.join(", "))
}

pub fn postgresql_conf(owner: &Owner, db: &ManagedDatabase) -> String {
    format!(
        "listen_addresses = '*'
# The port is PostgreSQL's default ({POSTGRES_PORT}), or PGPORT's.
unix_socket_directories = '/var/run/postgresql'
hba_file = '{SCRIPTS_DIR}/pg_hba.conf'
password_encryption = scram-sha-256
wal_level = replica
hot_standby = on
max_wal_senders = 10
wal_keep_size = '1GB'
# pg_rewind needs it to bring a former primary back as a standby.
wal_log_hints = on
synchronous_commit = on
synchronous_standby_names = '{}'
",
        synchronous_standby_names(owner, db)
    )
}

const PG_HBA: &str = "local all all trust
host replication replicator all scram-sha-256
host all all all scram-sha-256
";

pub fn scripts(owner: &Owner, db: &ManagedDatabase, initialised: bool) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(names::database_scripts(&owner.name), COMPONENT),
        data: Some(BTreeMap::from([
            ("start.sh".to_owned(), START_SCRIPT.to_owned()),
            ("postgresql.conf".to_owned(), postgresql_conf(owner, db)),
            ("pg_hba.conf".to_owned(), PG_HBA.to_owned()),
            ("initialised".to_owned(), initialised.to_string()),
        ])),
        ..ConfigMap::default()
    }
}

/// Gives each instance a stable DNS name, ready or not.
pub fn governing_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(names::database(&owner.name), COMPONENT),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.selector(COMPONENT)),
            ports: Some(vec![postgres_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn postgres_port() -> ServicePort {
    ServicePort {
        name: Some("postgres".into()),
        port: POSTGRES_PORT,
        target_port: Some(IntOrString::String("postgres".into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

pub fn role_service(owner: &Owner, name: String, role: PodRole) -> Service {
    let mut selector = owner.selector(COMPONENT);
    selector.extend([role::selector(role)]);
    Service {
        metadata: owner.meta(name, COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector),
            ports: Some(vec![postgres_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn container(owner: &Owner, db: &ManagedDatabase) -> Container {
    let generated = names::generated_secret(&owner.name);
    let run_mount = pod::mount("run", "/var/run/postgresql", false);
    let tmp_mount = pod::mount("tmp", "/tmp", false);
    let ready = ["pg_isready", "-q", "-h", "/var/run/postgresql"];
    Container {
        name: "postgres".into(),
        image: Some(db.image.clone()),
        command: Some(vec!["/bin/sh".into(), format!("{SCRIPTS_DIR}/start.sh")]),
        env: Some(vec![
            pod::field_env("POD_NAME", "metadata.name"),
            env("PGDATA", format!("{DATA_DIR}/pgdata")),
            env("PRIMARY_HOST", names::database_read_write(&owner.name)),
            env_from_secret(
                "POSTGRES_SUPERUSER_PASSWORD",
                &generated,
                secrets::SUPERUSER_PASSWORD,
            ),
            env_from_secret(
                "FILESTORE_DATABASE_PASSWORD",
                &generated,
                secrets::DATABASE_PASSWORD,
            ),
            env_from_secret(
                "REPLICATION_PASSWORD",
                &generated,
                secrets::REPLICATION_PASSWORD,
            ),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".into()),
            container_port: POSTGRES_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // Cloning a large primary takes long: liveness starts once the instance first answers.
        startup_probe: Some(pod::exec_probe(&ready, 10, 360)),
        liveness_probe: Some(pod::exec_probe(&ready, 10, 6)),
        readiness_probe: Some(pod::exec_probe(&ready, 5, 2)),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("scripts", SCRIPTS_DIR, true),
            mount("podinfo", PODINFO_DIR, true),
            run_mount,
            tmp_mount,
            mount("shm", "/dev/shm", false),
        ]),
        ..Container::default()
    }
}

pub fn stateful_set(owner: &Owner, db: &ManagedDatabase) -> StatefulSet {
    let members = Members {
        name: names::database(&owner.name),
        component: COMPONENT,
        service: names::database(&owner.name),
        replicas: db.instances,
        storage: &db.storage,
        storage_class: db.storage_class.as_deref(),
        delete_volumes: !db.retain_volumes,
    };
    let pod = PodSpec {
        containers: vec![container(owner, db)],
        volumes: Some(vec![
            Volume {
                name: "scripts".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::database_scripts(&owner.name),
                    default_mode: Some(0o555),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            // start.sh reads the role the operator gave the pod; the kubelet rewrites the file
            // when it syncs the pod, which a label change triggers (see start.sh).
            Volume {
                name: "podinfo".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "labels".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels".into(),
                            ..ObjectFieldSelector::default()
                        }),
                        ..DownwardAPIVolumeFile::default()
                    }]),
                    ..DownwardAPIVolumeSource::default()
                }),
                ..Volume::default()
            },
            pod::empty_dir("run"),
            pod::empty_dir("tmp"),
            pod::memory_dir("shm", SHM_SIZE),
        ]),
        security_context: Some(pod::pod_security(POSTGRES_UID)),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(60),
        ..PodSpec::default()
    };
    stateful::stateful_set(owner, members, pod)
}
