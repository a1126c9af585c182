//! A FileStore fixture builder and helpers to look at what the operator builds.
#![allow(dead_code)]
pub mod rbac;

use std::collections::BTreeMap;

use filestore_operator::build::secrets::Credentials;
use filestore_operator::build::{Inputs, Owned, build_all, validate};
use filestore_operator::crd::{FileStore, FileStoreSpec, ObjectStorageSpec, WorkerPool};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

pub const NAME: &str = "files";
pub const NAMESPACE: &str = "prod";

/// A FileStore as the API server would hand it over: namespaced, with a uid and a generation.
#[derive(Clone)]
pub struct Fixture {
    pub fs: FileStore,
    pub worker_replicas: BTreeMap<String, i32>,
    pub database_initialised: bool,
    pub cluster_domain: Option<String>,
}

impl Fixture {
    pub fn new() -> Self {
        let spec = FileStoreSpec {
            image: Default::default(),
            api: Default::default(),
            workers: vec![WorkerPool::default()],
            database: Default::default(),
            queue: Default::default(),
            object_storage: ObjectStorageSpec {
                endpoint: Some("http://minio.storage:9000".into()),
                region: "us-east-1".into(),
                raw_bucket: "raw".into(),
                chunk_bucket: "chunks".into(),
                credentials_secret: "s3-credentials".into(),
                virtual_hosted: false,
                checksums: Default::default(),
            },
            auth: Default::default(),
            encryption: Default::default(),
            scanner: Default::default(),
        };
        let mut fs = FileStore::new(NAME, spec);
        fs.metadata.namespace = Some(NAMESPACE.into());
        fs.metadata.uid = Some("6f1c1c52-6a39-4d8c-9d7a-0d5a8f0f0001".into());
        fs.metadata.generation = Some(1);
        Self {
            fs,
            worker_replicas: BTreeMap::new(),
            database_initialised: false,
            cluster_domain: None,
        }
    }

    /// The same FileStore with `change` made to its spec.
    pub fn with(mut self, change: impl FnOnce(&mut FileStoreSpec)) -> Self {
        change(&mut self.fs.spec);
        self
    }

    pub fn with_workers(mut self, pool: &str, replicas: i32) -> Self {
        self.worker_replicas.insert(pool.into(), replicas);
        self
    }

    pub fn credentials(&self) -> Credentials {
        Credentials::default()
            .complete(&self.fs.spec, &mut StdRng::seed_from_u64(7))
            .0
    }

    pub fn build(&self) -> Vec<Owned> {
        let mut inputs = Inputs {
            credentials: self.credentials(),
            worker_replicas: self.worker_replicas.clone(),
            database_initialised: self.database_initialised,
            ..Inputs::default()
        };
        if let Some(domain) = &self.cluster_domain {
            inputs.cluster_domain = domain.clone();
        }
        build_all(&validate(&self.fs).expect("the fixture is valid"), &inputs)
    }

    /// Every owned object as JSON, by "Kind/name".
    pub fn manifests(&self) -> BTreeMap<String, Value> {
        self.build()
            .iter()
            .map(|o| {
                (
                    format!("{}/{}", o.kind(), o.name()),
                    o.to_manifest().unwrap(),
                )
            })
            .collect()
    }

    pub fn manifest(&self, key: &str) -> Value {
        self.manifests()
            .remove(key)
            .unwrap_or_else(|| panic!("{key} is not built"))
    }
}

/// JSON paths at which `a` and `b` differ.
pub fn differences(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        format!("{at}.{k}"),
                        out,
                    );
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (p, q)) in x.iter().zip(y).enumerate() {
                    walk(p, q, format!("{at}[{i}]"), out);
                }
            }
            _ if a != b => out.push(at),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

/// "Kind/name" -> paths, for every object that differs between two builds.
pub fn changed_objects(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
) -> BTreeMap<String, Vec<String>> {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let d = differences(
                before.get(k).unwrap_or(&Value::Null),
                after.get(k).unwrap_or(&Value::Null),
            );
            (!d.is_empty()).then(|| (k.clone(), d))
        })
        .collect()
}

/// Every container (init containers too) of a workload manifest.
pub fn containers(workload: &Value) -> Vec<Value> {
    let spec = &workload["spec"]["template"]["spec"];
    let mut all: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
    all.extend(
        spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    all
}

/// The env var `name` of a container.
pub fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|vars| vars.iter().find(|v| v["name"] == name))
        .unwrap_or(&Value::Null)
}
