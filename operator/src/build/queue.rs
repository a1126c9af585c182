//! The managed RabbitMQ: a StatefulSet of nodes that find each other by their stable DNS names
//! (classic-config peer discovery over the headless Service), quorum queues by default, and a
//! client Service. The default user's password is the generated one.
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapProjection, Container, ContainerPort, KeyToPath, PodSpec,
    ProjectedVolumeSource, Secret, SecretProjection, SecretVolumeSource, Service, ServicePort,
    ServiceSpec, Volume, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Inputs;
use super::pod::{self, env, mount};
use super::process::{AMQP_PORT, QUEUE_USER};
use super::secrets::{self, Credentials};
use super::stateful::{self, Members};
use super::{Owned, Owner, names};
use crate::crd::QueueSpec;

pub const COMPONENT: &str = "queue";
const RABBITMQ_UID: i64 = 999;
const MANAGEMENT_PORT: i32 = 15672;
const PROMETHEUS_PORT: i32 = 15692;
const EPMD_PORT: i32 = 4369;
const DISTRIBUTION_PORT: i32 = 25672;
const DATA_DIR: &str = "/var/lib/rabbitmq";

pub fn build(owner: &Owner, queue: &QueueSpec, inputs: &Inputs) -> Vec<Owned> {
    let domain = &inputs.cluster_domain;
    vec![
        Owned::ConfigMap(config(owner, queue, domain)),
        Owned::Secret(default_user(owner, &inputs.credentials)),
        Owned::Service(nodes_service(owner)),
        Owned::Service(client_service(owner)),
        Owned::PodDisruptionBudget(pod::disruption_budget(
            owner,
            names::queue(&owner.name),
            COMPONENT,
            if one_eviction_loses_quorum(queue) {
                0
            } else {
                1
            },
        )),
        Owned::StatefulSet(stateful_set(owner, queue, domain)),
    ]
}

/// Quorum queues need a majority of the nodes: of 2, both. One eviction would stop every queue,
/// so the disruption budget then allows none. (A single node has no quorum to keep: one node
/// was asked for, and its eviction is the outage that choice means.)
pub fn one_eviction_loses_quorum(queue: &QueueSpec) -> bool {
    queue.replicas > 1 && queue.replicas - 1 < queue.replicas / 2 + 1
}

/// The fully qualified name of the pod `pod` under the nodes' headless Service, in the cluster
/// DNS domain `domain`: what Erlang distribution resolves (long names).
fn node_host(owner: &Owner, pod: &str, domain: &str) -> String {
    format!(
        "{pod}.{}.{}.svc.{domain}",
        names::queue_nodes(&owner.name),
        owner.namespace
    )
}

/// The Erlang node name of node `ordinal`.
pub fn node_name(owner: &Owner, ordinal: i32, domain: &str) -> String {
    let pod = names::ordinal_pod(&names::queue(&owner.name), ordinal);
    format!("rabbit@{}", node_host(owner, &pod, domain))
}

pub fn rabbitmq_conf(owner: &Owner, queue: &QueueSpec, domain: &str) -> String {
    let mut conf = String::from("cluster_formation.peer_discovery_backend = classic_config\n");
    for i in 0..queue.replicas {
        conf.push_str(&format!(
            "cluster_formation.classic_config.nodes.{} = {}\n",
            i + 1,
            node_name(owner, i, domain)
        ));
    }
    conf.push_str(&format!(
        "# Replicated, durable queues; the minority side of a partition stops rather than diverges.
default_queue_type = quorum
cluster_partition_handling = pause_minority
listeners.tcp.default = {AMQP_PORT}
management.tcp.port = {MANAGEMENT_PORT}
prometheus.tcp.port = {PROMETHEUS_PORT}
log.console = true
log.file = false
vm_memory_high_watermark.relative = 0.6
"
    ));
    conf
}

pub fn config(owner: &Owner, queue: &QueueSpec, domain: &str) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(names::queue_config(&owner.name), COMPONENT),
        data: Some(BTreeMap::from([
            (
                "10-filestore.conf".to_owned(),
                rabbitmq_conf(owner, queue, domain),
            ),
            (
                "enabled_plugins".to_owned(),
                "[rabbitmq_management,rabbitmq_prometheus].\n".to_owned(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

/// The user Filestore connects as, in RabbitMQ's own config syntax; derived from the generated
/// password, so applying it again changes nothing.
pub fn default_user(owner: &Owner, credentials: &Credentials) -> Secret {
    let password = credentials.get(secrets::QUEUE_PASSWORD).unwrap_or_default();
    let conf = format!("default_user = {QUEUE_USER}\ndefault_pass = {password}\n");
    Secret {
        metadata: owner.meta(names::queue_user(&owner.name), COMPONENT),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            "20-default-user.conf".to_owned(),
            ByteString(conf.into_bytes()),
        )])),
        ..Secret::default()
    }
}

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Stable names for the nodes, resolvable before they are ready (they must find each other
/// to become ready).
pub fn nodes_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(names::queue_nodes(&owner.name), COMPONENT),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(owner.selector(COMPONENT)),
            ports: Some(vec![
                port("epmd", EPMD_PORT),
                port("cluster", DISTRIBUTION_PORT),
                port("amqp", AMQP_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn client_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(names::queue(&owner.name), COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(owner.selector(COMPONENT)),
            ports: Some(vec![
                port("amqp", AMQP_PORT),
                port("management", MANAGEMENT_PORT),
                port("prometheus", PROMETHEUS_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn container(owner: &Owner, queue: &QueueSpec, domain: &str) -> Container {
    let tmp_mount = pod::mount("tmp", "/tmp", false);
    // The CLI tools the probes run (rabbitmq-diagnostics) address the node named by
    // RABBITMQ_NODENAME and RABBITMQ_USE_LONGNAME in this same environment, so they follow the
    // cluster domain with the node itself.
    Container {
        name: "rabbitmq".into(),
        image: Some(queue.image.clone()),
        env: Some(vec![
            pod::field_env("POD_NAME", "metadata.name"),
            env(
                "RABBITMQ_NODENAME",
                format!("rabbit@{}", node_host(owner, "$(POD_NAME)", domain)),
            ),
            env("RABBITMQ_USE_LONGNAME", "true"),
            env("RABBITMQ_CONFIG_FILES", "/etc/rabbitmq/conf.d"),
            env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                "/etc/rabbitmq/enabled_plugins",
            ),
            env("HOME", DATA_DIR),
        ]),
        ports: Some(
            [
                ("amqp", AMQP_PORT),
                ("management", MANAGEMENT_PORT),
                ("prometheus", PROMETHEUS_PORT),
                ("epmd", EPMD_PORT),
                ("cluster", DISTRIBUTION_PORT),
            ]
            .into_iter()
            .map(|(name, port)| ContainerPort {
                name: Some(name.into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            })
            .collect(),
        ),
        startup_probe: Some(pod::exec_probe(
            &["rabbitmq-diagnostics", "-q", "ping"],
            10,
            60,
        )),
        liveness_probe: Some(pod::exec_probe(
            &["rabbitmq-diagnostics", "-q", "ping"],
            30,
            4,
        )),
        readiness_probe: Some(pod::exec_probe(
            &["rabbitmq-diagnostics", "-q", "check_port_connectivity"],
            10,
            3,
        )),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", "/etc/rabbitmq", true),
            tmp_mount,
        ]),
        ..Container::default()
    }
}

/// Erlang wants its cookie as a file only its user reads; a Secret volume cannot give that, so
/// an init container copies it onto the data volume.
fn cookie_installer(queue: &QueueSpec) -> Container {
    Container {
        name: "erlang-cookie".into(),
        image: Some(queue.image.clone()),
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "cp /etc/rabbitmq-cookie/{cookie} {DATA_DIR}/.erlang.cookie && chmod 600 {DATA_DIR}/.erlang.cookie",
                cookie = secrets::ERLANG_COOKIE
            ),
        ]),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("cookie", "/etc/rabbitmq-cookie", true),
        ]),
        ..Container::default()
    }
}

fn config_volume(owner: &Owner) -> Volume {
    let item = |key: &str, path: &str| KeyToPath {
        key: key.into(),
        path: path.into(),
        mode: None,
    };
    Volume {
        name: "config".into(),
        projected: Some(ProjectedVolumeSource {
            default_mode: Some(0o440),
            sources: Some(vec![
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: names::queue_config(&owner.name),
                        items: Some(vec![
                            item("10-filestore.conf", "conf.d/10-filestore.conf"),
                            item("enabled_plugins", "enabled_plugins"),
                        ]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    secret: Some(SecretProjection {
                        name: names::queue_user(&owner.name),
                        items: Some(vec![item(
                            "20-default-user.conf",
                            "conf.d/20-default-user.conf",
                        )]),
                        ..SecretProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
            ]),
        }),
        ..Volume::default()
    }
}

pub fn stateful_set(owner: &Owner, queue: &QueueSpec, domain: &str) -> StatefulSet {
    let members = Members {
        name: names::queue(&owner.name),
        component: COMPONENT,
        service: names::queue_nodes(&owner.name),
        replicas: queue.replicas,
        storage: &queue.storage,
        storage_class: queue.storage_class.as_deref(),
        delete_volumes: false,
    };
    let pod = PodSpec {
        init_containers: Some(vec![cookie_installer(queue)]),
        containers: vec![container(owner, queue, domain)],
        volumes: Some(vec![
            config_volume(owner),
            Volume {
                name: "cookie".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(names::generated_secret(&owner.name)),
                    items: Some(vec![KeyToPath {
                        key: secrets::ERLANG_COOKIE.into(),
                        path: secrets::ERLANG_COOKIE.into(),
                        mode: None,
                    }]),
                    default_mode: Some(0o400),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            pod::empty_dir("tmp"),
        ]),
        security_context: Some(pod::pod_security(RABBITMQ_UID)),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(120),
        ..PodSpec::default()
    };
    stateful::stateful_set(owner, members, pod)
}
