//! The container every Filestore process (API or worker) runs in: one image, the backends'
//! addresses and credentials in its environment, the shared settings from the ConfigMap.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, PodSpec, PodTemplateSpec,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::pod::{self, env, env_from_secret};
use super::secrets::{self, master_key_source};
use super::{ANNOTATION_CONFIG_HASH, Backend, ValidatedFileStore, names};
use crate::crd::{FileStoreSpec, PullPolicy};

pub const POSTGRES_PORT: i32 = 5432;
pub const AMQP_PORT: i32 = 5672;
/// The database and the user Filestore owns on a managed PostgreSQL.
pub const DATABASE: &str = "filestore";
pub const DATABASE_USER: &str = "filestore";
pub const QUEUE_USER: &str = "filestore";

pub fn image(spec: &FileStoreSpec) -> String {
    format!("{}:{}", spec.image.repository, spec.image.tag)
}

pub fn pull_policy(policy: PullPolicy) -> String {
    match policy {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .into()
}

/// Backends' addresses and credentials. Secrets come in by reference; URLs that embed a
/// generated password are composed by the kubelet (`$(VAR)`), so no password is ever written
/// into a Deployment.
pub fn backend_env(fs: &ValidatedFileStore<'_>) -> Vec<EnvVar> {
    let (owner, spec) = (&fs.owner, fs.spec);
    let generated = names::generated_secret(&owner.name);
    let mut vars = Vec::new();
    match fs.database {
        Backend::External(external) => {
            vars.push(env_from_secret(
                "FILESTORE_DATABASE_URL",
                &external.url_secret.name,
                &external.url_secret.key,
            ));
        }
        Backend::Managed(db) => {
            let host = |service: String| {
                format!(
                    "postgres://{DATABASE_USER}:$(FILESTORE_DATABASE_PASSWORD)@{service}:{POSTGRES_PORT}/{DATABASE}"
                )
            };
            vars.push(env_from_secret(
                "FILESTORE_DATABASE_PASSWORD",
                &generated,
                secrets::DATABASE_PASSWORD,
            ));
            vars.push(env(
                "FILESTORE_DATABASE_URL",
                host(names::database_read_write(&owner.name)),
            ));
            if db.instances > 1 {
                vars.push(env(
                    "FILESTORE_DATABASE_REPLICA_URL",
                    host(names::database_read_only(&owner.name)),
                ));
            }
        }
    }
    match fs.queue {
        Backend::External(external) => {
            vars.push(env_from_secret(
                "FILESTORE_AMQP_URL",
                &external.url_secret.name,
                &external.url_secret.key,
            ));
        }
        Backend::Managed(_) => {
            vars.push(env_from_secret(
                "FILESTORE_AMQP_PASSWORD",
                &generated,
                secrets::QUEUE_PASSWORD,
            ));
            vars.push(env(
                "FILESTORE_AMQP_URL",
                format!(
                    "amqp://{QUEUE_USER}:$(FILESTORE_AMQP_PASSWORD)@{}:{AMQP_PORT}/%2f",
                    names::queue(&owner.name)
                ),
            ));
        }
    }
    let credentials = &spec.object_storage.credentials_secret;
    vars.push(env_from_secret(
        "FILESTORE_S3_ACCESS_KEY",
        credentials,
        "accessKey",
    ));
    vars.push(env_from_secret(
        "FILESTORE_S3_SECRET_KEY",
        credentials,
        "secretKey",
    ));
    let (master, key, id) = master_key_source(owner, spec);
    vars.push(env_from_secret("FILESTORE_MASTER_KEY", &master, key));
    vars.push(env_from_secret("FILESTORE_MASTER_KEY_ID", &master, id));
    vars
}

/// A Filestore container running `args`, serving HTTP on `port`.
pub fn container(
    fs: &ValidatedFileStore<'_>,
    args: &[&str],
    port: (&str, i32),
    extra_env: Vec<EnvVar>,
) -> Container {
    let tmp_mount = pod::mount("tmp", "/tmp", false);
    let (owner, spec) = (&fs.owner, fs.spec);
    let mut vars = backend_env(fs);
    vars.extend(extra_env);
    Container {
        name: "filestore".into(),
        image: Some(image(spec)),
        image_pull_policy: Some(pull_policy(spec.image.pull_policy)),
        args: Some(args.iter().map(|a| (*a).to_owned()).collect()),
        env: Some(vars),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: names::config(&owner.name),
                optional: None,
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![ContainerPort {
            name: Some(port.0.into()),
            container_port: port.1,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        // A process waits for its database and broker before it serves: on a new FileStore
        // that takes minutes, which liveness must not count.
        startup_probe: Some(pod::http_probe("/healthz", port.0, 10, 90)),
        liveness_probe: Some(pod::http_probe("/healthz", port.0, 10, 3)),
        readiness_probe: Some(pod::http_probe("/readyz", port.0, 5, 2)),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![tmp_mount]),
        ..Container::default()
    }
}

/// A pod template around `container`, labelled with `labels`, carrying the settings hash.
pub fn pod_template(
    labels: BTreeMap<String, String>,
    config_hash: &str,
    container: Container,
    extra_volumes: Vec<Volume>,
) -> PodTemplateSpec {
    let tmp = pod::empty_dir("tmp");
    let mut volumes = vec![tmp];
    volumes.extend(extra_volumes);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_CONFIG_HASH.to_owned(),
                config_hash.to_owned(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(pod::pod_security(pod::FILESTORE_UID)),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(60),
            ..PodSpec::default()
        }),
    }
}
