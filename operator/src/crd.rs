//! The `FileStore` custom resource (`filestore.dev/v1alpha1`): what a platform team declares,
//! and the status the operator reports. The CRD YAML in `crds/` is generated from these types by
//! `crdgen`; a test fails when the committed file is stale.
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::failover::ReplicationStatus;

/// A Filestore deployment: the API, the autoscaled worker pool, and (managed or external)
/// PostgreSQL, RabbitMQ and object storage.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "filestore.dev",
    version = "v1alpha1",
    kind = "FileStore",
    plural = "filestores",
    shortname = "fs",
    namespaced,
    status = "FileStoreStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"API","type":"integer","jsonPath":".status.apiReadyReplicas"}"#,
    printcolumn = r#"{"name":"Workers","type":"integer","jsonPath":".status.workerReplicas"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.database.primary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FileStoreSpec {
    #[serde(default)]
    pub image: ImageSpec,
    #[serde(default)]
    pub api: ApiSpec,
    /// Worker pools, each running some stages and scaled on their queues' depth. Every stage
    /// must be run by a pool.
    #[serde(default = "default_pools")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(
        validation = Rule::new("['scan', 'chunk', 'index'].all(s, self.exists(p, s in p.stages))").message("every stage (scan, chunk, index) needs a worker pool"),
        validation = Rule::new("self.all(p, self.filter(q, q.name == p.name).size() == 1)").message("worker pool names must be unique"),
    )]
    pub workers: Vec<WorkerPool>,
    #[serde(default)]
    pub database: DatabaseSpec,
    #[serde(default)]
    pub queue: QueueSpec,
    pub object_storage: ObjectStorageSpec,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub encryption: EncryptionSpec,
    #[serde(default)]
    pub scanner: ScannerSpec,
}

/// Malware scanning in the scan stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannerSpec {
    /// clamd address (`tcp://host:3310`); the built-in signature scanner when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamd: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// The Filestore image (API, workers and tools are one binary).
    #[serde(default = "default_image")]
    pub repository: String,
    #[serde(default = "default_tag")]
    pub tag: String,
    #[serde(default)]
    pub pull_policy: PullPolicy,
}

fn default_image() -> String {
    "ghcr.io/filestore/filestore".into()
}

fn default_tag() -> String {
    env!("CARGO_PKG_VERSION").into()
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_image(),
            tag: default_tag(),
            pull_policy: PullPolicy::default(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// API replicas behind the Service.
    #[serde(default = "default_api_replicas")]
    #[schemars(range(min = 1))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// An Ingress for the API, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
}

fn default_api_replicas() -> i32 {
    2
}

impl Default for ApiSpec {
    fn default() -> Self {
        Self {
            replicas: default_api_replicas(),
            resources: None,
            ingress: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// Secret holding the TLS certificate for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// A worker pool, scaled on queue depth between `minReplicas` and `maxReplicas`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct WorkerPool {
    /// Names the pool's Deployment (`<filestore>-worker-<name>`).
    #[serde(default = "default_pool_name")]
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default = "default_min_workers")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    #[serde(default = "default_max_workers")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Messages waiting per worker the autoscaler aims for.
    #[serde(default = "default_target_depth")]
    #[schemars(range(min = 1))]
    pub target_queue_depth_per_worker: i32,
    /// Stages the pool runs; a stage given its own pool scales on its own.
    #[serde(default = "default_stages")]
    #[schemars(length(min = 1, max = 3))]
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_pool_name() -> String {
    "all".into()
}

fn default_pools() -> Vec<WorkerPool> {
    vec![WorkerPool::default()]
}

fn default_min_workers() -> i32 {
    1
}

fn default_max_workers() -> i32 {
    10
}

fn default_target_depth() -> i32 {
    20
}

fn default_stages() -> Vec<Stage> {
    Stage::ALL.to_vec()
}

impl Default for WorkerPool {
    fn default() -> Self {
        Self {
            name: default_pool_name(),
            min_replicas: default_min_workers(),
            max_replicas: default_max_workers(),
            target_queue_depth_per_worker: default_target_depth(),
            stages: default_stages(),
            resources: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Scan,
    Chunk,
    Index,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Scan, Stage::Chunk, Stage::Index];

    /// The pipeline stage this names; its queue and `--stages` spelling come from there.
    pub fn pipeline(self) -> filestore_domain::messages::Stage {
        use filestore_domain::messages::Stage as Pipeline;
        match self {
            Stage::Scan => Pipeline::Scan,
            Stage::Chunk => Pipeline::Chunk,
            Stage::Index => Pipeline::Index,
        }
    }
}

/// Managed (a replicated StatefulSet the operator fails over) or external (a Secret).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'External' || has(self.external)").message("an external database needs `external`"))]
pub struct DatabaseSpec {
    #[serde(default)]
    pub mode: Provisioning,
    #[serde(default)]
    pub managed: ManagedDatabase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalService>,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            mode: Provisioning::Managed,
            managed: ManagedDatabase::default(),
            external: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Provisioning {
    #[default]
    Managed,
    External,
}

/// PostgreSQL instances: one primary and streaming standbys, commits confirmed by
/// `synchronousStandbys` of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.synchronousStandbys < self.instances").message("synchronousStandbys must be fewer than instances"))]
pub struct ManagedDatabase {
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,
    #[serde(default = "default_sync_standbys")]
    #[schemars(range(min = 0))]
    pub synchronous_standbys: i32,
    /// Volume size per instance, as a Kubernetes quantity.
    #[serde(default = "default_storage")]
    pub storage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Seconds the primary must be gone before a standby is promoted.
    #[serde(default = "default_failover_delay")]
    #[schemars(range(min = 0))]
    pub failover_delay_seconds: i32,
    /// Keep the volumes when the FileStore is deleted.
    #[serde(default = "default_true")]
    pub retain_volumes: bool,
    /// PostgreSQL image (the official one or compatible: `initdb`, `pg_basebackup`, `postgres`).
    #[serde(default = "default_postgres_image")]
    pub image: String,
}

fn default_postgres_image() -> String {
    "postgres:17.5".into()
}

fn default_instances() -> i32 {
    3
}

fn default_sync_standbys() -> i32 {
    1
}

fn default_storage() -> String {
    "10Gi".into()
}

fn default_failover_delay() -> i32 {
    30
}

fn default_true() -> bool {
    true
}

impl Default for ManagedDatabase {
    fn default() -> Self {
        Self {
            instances: default_instances(),
            synchronous_standbys: default_sync_standbys(),
            storage: default_storage(),
            storage_class: None,
            failover_delay_seconds: default_failover_delay(),
            retain_volumes: true,
            image: default_postgres_image(),
        }
    }
}

/// A service run elsewhere, reached through the URL in a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalService {
    pub url_secret: SecretKeyRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'External' || has(self.external)").message("an external queue needs `external`"))]
pub struct QueueSpec {
    #[serde(default)]
    pub mode: Provisioning,
    /// RabbitMQ nodes of the managed cluster (quorum queues want 3 or more).
    #[serde(default = "default_queue_replicas")]
    #[schemars(range(min = 1, max = 7))]
    pub replicas: i32,
    #[serde(default = "default_queue_storage")]
    pub storage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default = "default_rabbitmq_image")]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalService>,
}

fn default_rabbitmq_image() -> String {
    "rabbitmq:4.1-management".into()
}

fn default_queue_replicas() -> i32 {
    3
}

fn default_queue_storage() -> String {
    "5Gi".into()
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            mode: Provisioning::Managed,
            replicas: default_queue_replicas(),
            storage: default_queue_storage(),
            storage_class: None,
            image: default_rabbitmq_image(),
            external: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStorageSpec {
    /// S3 endpoint; AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    pub raw_bucket: String,
    pub chunk_bucket: String,
    /// Secret with `accessKey` and `secretKey`.
    pub credentials_secret: String,
    #[serde(default)]
    pub virtual_hosted: bool,
    /// `WhenRequired` for Garage and older servers.
    #[serde(default)]
    pub checksums: ChecksumMode,
}

fn default_region() -> String {
    "us-east-1".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ChecksumMode {
    #[default]
    WhenSupported,
    WhenRequired,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The identity provider's keys, by `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// A Secret whose `publicKey` is the PEM public key (RS256/ES256) that signs tokens. When
    /// neither this nor `jwksUrl` is set, an HS256 development secret is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// Secret with the master key (`masterKey`, 64 hex digits, and `keyId`); generated once,
    /// never rotated by accident, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_secret: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `DatabaseReady`, `QueueReady`, `ApiReady`, `WorkersReady`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_ready_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_replicas: Option<i32>,
    /// The primary and each standby's lag, for a managed database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<ReplicationStatus>,
    /// The managed database was bootstrapped: from now on an empty volume is cloned from the
    /// primary, never initialised as a new cluster.
    #[serde(default)]
    pub database_initialised: bool,
}

/// The CRD as the YAML committed in `crds/`.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    Ok(format!(
        "# Generated by `cargo run -p filestore-operator --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(&FileStore::crd())?
    ))
}
