//! Fixtures for end-to-end tests: a real embedded Filestore on a free loopback port, users with
//! tokens, and helpers that speak the HTTP API the way a client does.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use filestore_api::ApiConfig;
use filestore_cli::embedded::{self, EmbeddedConfig, Running};
use filestore_cli::token;
use filestore_worker::WorkerConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod cluster;
pub mod pgcluster;
pub mod process;
pub mod rewriting_proxy;
pub mod services;
pub mod sync;
pub mod tcp_proxy;

/// Chunk sizes small enough that test files of a few MiB span many chunks.
pub fn small_chunks(worker: &mut WorkerConfig) {
    worker.chunk_min = 16 * 1024;
    worker.chunk_avg = 64 * 1024;
    worker.chunk_max = 256 * 1024;
}

#[derive(Clone)]
pub struct ServiceBuilder {
    api: ApiConfig,
    worker: WorkerConfig,
    blocklist: Vec<String>,
}

impl Default for ServiceBuilder {
    fn default() -> Self {
        let mut worker = WorkerConfig::default();
        small_chunks(&mut worker);
        let api = ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()),
            ..ApiConfig::default()
        };
        Self {
            api,
            worker,
            blocklist: Vec::new(),
        }
    }
}

impl ServiceBuilder {
    pub fn api(mut self, f: impl FnOnce(&mut ApiConfig)) -> Self {
        f(&mut self.api);
        self
    }

    pub fn worker(mut self, f: impl FnOnce(&mut WorkerConfig)) -> Self {
        f(&mut self.worker);
        self
    }

    pub fn blocklist(mut self, sha256_hex: &str) -> Self {
        self.blocklist.push(sha256_hex.to_owned());
        self
    }

    pub async fn start(self) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        self.start_in(dir).await
    }

    async fn start_in(mut self, dir: tempfile::TempDir) -> Service {
        let builder = self.clone();
        if !self.blocklist.is_empty() {
            let path = dir.path().join("blocklist.txt");
            std::fs::write(&path, self.blocklist.join("\n")).expect("write blocklist");
            self.worker.blocklist = Some(path);
        }
        let running = embedded::start(EmbeddedConfig {
            data_dir: dir.path().join("data"),
            api: self.api,
            worker: self.worker,
            master_key: None,
        })
        .await
        .expect("embedded service starts");
        Service {
            api: Api::new(running.base_url()),
            running: Some(running),
            dir,
            builder,
        }
    }
}

pub struct Service {
    pub api: Api,
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    builder: ServiceBuilder,
}

/// Speaks the HTTP API the way a client does, against any deployment.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Service {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The stable problem code of an error reply.
    pub fn code(&self) -> String {
        self.json()["code"]
            .as_str()
            .unwrap_or("<no code>")
            .to_owned()
    }

    pub fn is_problem(&self) -> bool {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "application/problem+json")
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Service {
    pub async fn start() -> Self {
        ServiceBuilder::default().start().await
    }

    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.data_dir().join("objects")
    }

    pub fn token(&self, user: &str) -> String {
        let secret = &self.running.as_ref().expect("running").jwt_secret;
        token::mint(secret, "filestore", "filestore", user, 3600).expect("mint")
    }

    /// The raw upload objects of a file on disk (one per recorded attempt; none once processed).
    pub fn raw_objects(&self, file_id: &str) -> Vec<PathBuf> {
        raw_objects(&self.data_dir(), file_id)
    }

    /// Every stored chunk object on disk.
    pub fn chunk_files(&self) -> Vec<PathBuf> {
        files_under(&self.objects_dir().join("chunks"))
    }

    /// Stops and starts again on the same data, changing the configuration with `f`.
    pub async fn restart_with(mut self, f: impl FnOnce(&mut ServiceBuilder)) -> Service {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
        let mut builder = self.builder.clone();
        f(&mut builder);
        builder.start_in(self.dir).await
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("clean stop");
        }
    }
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.call(
            Method::POST,
            path,
            Some(token),
            Some(bytes),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn put(&self, path: &str, token: &str, bytes: Vec<u8>) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(bytes), &[])
            .await
    }

    /// Registers a file and returns its id.
    pub async fn register(&self, token: &str, path: &str, size: usize) -> String {
        let r = self
            .post_json("/v1/file", token, &json!({"path": path, "size": size}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register: {:?}", r.json());
        r.json()["fileId"].as_str().expect("fileId").to_owned()
    }

    pub async fn finalize(&self, token: &str, id: &str, bytes: &[u8]) -> Reply {
        let body =
            json!({"checksum": format!("sha256-{}", sha256_hex(bytes)), "size": bytes.len()});
        self.post_json(&format!("/v1/files/{id}/finalize"), token, &body)
            .await
    }

    /// Register, upload and finalize; returns the file id.
    pub async fn upload(&self, token: &str, path: &str, bytes: &[u8]) -> String {
        let id = self.register(token, path, bytes.len()).await;
        let put = self
            .put(&format!("/v1/files/{id}/content"), token, bytes.to_vec())
            .await;
        assert_eq!(put.status, StatusCode::OK, "put: {:?}", put.json());
        let fin = self.finalize(token, &id, bytes).await;
        assert_eq!(fin.status, StatusCode::OK, "finalize: {:?}", fin.json());
        id
    }

    pub async fn status(&self, token: &str, id: &str) -> String {
        self.get(&format!("/v1/files/{id}/metadata"), token)
            .await
            .json()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until processing is over; returns the final status.
    pub async fn settle(&self, token: &str, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.status(token, id).await;
            if !matches!(status.as_str(), "uploading" | "processing") || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Upload and wait for `ready`.
    pub async fn upload_ready(&self, token: &str, path: &str, bytes: &[u8]) -> String {
        let id = self.upload(token, path, bytes).await;
        assert_eq!(self.settle(token, &id).await, "ready");
        id
    }

    pub async fn content(&self, token: &str, id: &str) -> Reply {
        self.get(&format!("/v1/files/{id}/content"), token).await
    }

    pub async fn usage(&self, token: &str) -> Value {
        self.get("/v1/usage", token).await.json()
    }
}

/// Raw upload objects of a file below a data directory.
pub fn raw_objects(data_dir: &Path, file_id: &str) -> Vec<PathBuf> {
    let prefix = format!("{file_id}.");
    let Ok(entries) = std::fs::read_dir(data_dir.join("objects").join("raw")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect()
}

/// Every regular file below `dir`, sorted; none when it does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_files(dir, &mut out);
    out.sort();
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// Deterministic text that compresses well.
pub fn text(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(
            format!("line {i}: the quick brown fox jumps over the lazy dog\n").as_bytes(),
        );
        i += 1;
    }
    v.truncate(len);
    v
}
