//! A production deployment for tests: real `filestore api` and `filestore worker` processes on
//! PostgreSQL, RabbitMQ, S3 and clamd, in a namespace of their own. Processes can be killed
//! with SIGKILL and started again, as a node failure would.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use filestore_cli::token;
use filestore_domain::keys::SecretKey;

use crate::Api;
use crate::process::{filestore_bin, free_port};
use crate::services::{Namespace, Services};

/// The environment for the chunk sizes `small_chunks` gives the embedded service, so both
/// deployments split test files the same way.
fn small_chunk_env() -> [(String, String); 3] {
    let mut worker = filestore_worker::WorkerConfig::default();
    crate::small_chunks(&mut worker);
    [
        ("FILESTORE_CHUNK_MIN".into(), worker.chunk_min.to_string()),
        ("FILESTORE_CHUNK_AVG".into(), worker.chunk_avg.to_string()),
        ("FILESTORE_CHUNK_MAX".into(), worker.chunk_max.to_string()),
    ]
}

pub struct ClusterBuilder {
    tag: String,
    workers: usize,
    clamd: bool,
    env: Vec<(String, String)>,
    services: Option<&'static Services>,
    namespace: Option<Namespace>,
}

impl ClusterBuilder {
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Scan with the built-in scanner instead of clamd.
    pub fn without_clamd(mut self) -> Self {
        self.clamd = false;
        self
    }

    /// An extra environment variable for every process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs in this namespace (for tests that bring private services) instead of a new one in
    /// the shared services.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = Some(ns);
        self
    }

    pub async fn start(self) -> Cluster {
        let ns = match self.namespace {
            Some(ns) => ns,
            None => {
                let services = self.services.unwrap_or_else(Services::shared);
                Namespace::create(services, &self.tag).await
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let jwt_secret = SecretKey::random().to_hex();
        let mut env = ns.process_env();
        env.extend(
            [
                ("FILESTORE_MASTER_KEY", SecretKey::random().to_hex()),
                ("FILESTORE_URL_SIGNING_KEY", SecretKey::random().to_hex()),
                ("FILESTORE_JWT_SECRET", jwt_secret.clone()),
                (
                    "FILESTORE_LOG",
                    "info,sqlx=warn,lapin=warn,aws=warn".to_owned(),
                ),
                ("FILESTORE_JANITOR_INTERVAL", "3600".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env.extend(small_chunk_env());
        if self.clamd {
            env.push(("FILESTORE_CLAMD".into(), ns.clamd.clone()));
        }
        env.extend(self.env);
        let api_port = free_port();
        let mut cluster = Cluster {
            api: Api::new(format!("http://127.0.0.1:{api_port}")),
            ns,
            api_port,
            jwt_secret,
            env,
            dir,
            api_process: None,
            workers: Vec::new(),
            spawned: 0,
        };
        cluster.start_api();
        for _ in 0..self.workers {
            cluster.start_worker();
        }
        cluster.wait_ready().await;
        cluster
    }
}

pub struct Cluster {
    pub api: Api,
    pub ns: Namespace,
    api_port: u16,
    jwt_secret: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    api_process: Option<Child>,
    workers: Vec<Child>,
    spawned: usize,
}

impl std::ops::Deref for Cluster {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Cluster {
    pub fn builder(tag: &str) -> ClusterBuilder {
        ClusterBuilder {
            tag: tag.to_owned(),
            workers: 1,
            clamd: true,
            env: Vec::new(),
            services: None,
            namespace: None,
        }
    }

    pub fn token(&self, user: &str) -> String {
        token::mint(&self.jwt_secret, "filestore", "filestore", user, 3600).expect("mint")
    }

    fn spawn(&mut self, role: &str, extra: &[(&str, String)]) -> Child {
        self.spawned += 1;
        let log_path = self.dir.path().join(format!("{role}-{}.log", self.spawned));
        let log = std::fs::File::create(&log_path).expect("log file");
        Command::new(filestore_bin())
            .arg(role)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn filestore {role}: {e}"))
    }

    pub fn start_api(&mut self) {
        let listen = format!("127.0.0.1:{}", self.api_port);
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = self.spawn(
            "api",
            &[
                ("FILESTORE_LISTEN", listen),
                ("FILESTORE_METRICS_LISTEN", metrics),
            ],
        );
        self.api_process = Some(child);
    }

    /// SIGKILL: no shutdown code runs, connections drop mid-request.
    pub fn kill_api(&mut self) {
        if let Some(mut c) = self.api_process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn start_worker(&mut self) {
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = self.spawn("worker", &[("FILESTORE_METRICS_LISTEN", metrics)]);
        self.workers.push(child);
    }

    /// SIGKILLs every worker.
    pub fn kill_workers(&mut self) -> usize {
        let n = self.workers.len();
        for mut c in self.workers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        n
    }

    /// Runs a one-shot `filestore` command (`sweep`, say) with the cluster's configuration and
    /// returns its standard output; panics with its standard error when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(filestore_bin())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap_or_else(|e| panic!("run filestore {args:?}: {e}"));
        assert!(
            out.status.success(),
            "filestore {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the API answers /readyz.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the API did not become ready; logs in {}:\n{}",
                self.dir.path().display(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every process's log so far, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in crate::files_under(self.dir.path()) {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("== {}\n", p.display()));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_api();
        self.kill_workers();
    }
}
