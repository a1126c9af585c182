//! The throwaway production services (PostgreSQL, RabbitMQ, S3, clamd) that
//! `scripts/services.sh` runs on loopback, and a private namespace in them per test: its own
//! database, RabbitMQ vhost and buckets, so tests never see each other's files or messages.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use filestore_adapters::{
    PostgresOptions, PostgresStore, RabbitOptions, RabbitQueue, S3Options, S3Store,
};
use sqlx::Connection;

pub struct Services {
    vars: HashMap<String, String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Runs `scripts/services.sh start [dir] [--only ...]` and reads the env file it wrote.
pub fn start_services(dir: Option<&Path>, only: Option<&str>) -> HashMap<String, String> {
    let mut cmd = Command::new(repo_root().join("scripts/services.sh"));
    cmd.arg("start");
    if let Some(d) = dir {
        cmd.arg(d);
    }
    if let Some(o) = only {
        cmd.args(["--only", o]);
    }
    let out = cmd.output().expect("run scripts/services.sh");
    assert!(
        out.status.success(),
        "scripts/services.sh start failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    parse_env_file(&text)
}

impl Services {
    /// The shared services: those `scripts/test.sh` started (FILESTORE_TEST_SERVICES is set),
    /// or else started now (and reused by later test runs) under target/test-services.
    pub fn shared() -> &'static Services {
        static SHARED: OnceLock<Services> = OnceLock::new();
        SHARED.get_or_init(|| {
            let vars = match std::env::var("FILESTORE_TEST_SERVICES") {
                Ok(dir) => {
                    let path = Path::new(&dir).join("env");
                    let text = std::fs::read_to_string(&path)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                    parse_env_file(&text)
                }
                Err(_) => start_services(None, None),
            };
            Services { vars }
        })
    }

    /// Private services (started with `start_services(Some(dir), Some(only))`) in front of
    /// these: what `private` names comes from there, the rest from here.
    pub fn overlay(&self, private: HashMap<String, String>) -> Services {
        let mut vars = self.vars.clone();
        vars.extend(private);
        Services { vars }
    }

    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the services' env file"))
    }

    pub fn rabbitmqctl(&self, args: &[&str]) {
        let out = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .env("HOME", self.var("FILESTORE_TEST_RABBIT_HOME"))
            .arg("-n")
            .arg(self.var("FILESTORE_TEST_RABBIT_NODE"))
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs `pg_ctl` on the services' cluster as the user that owns it.
    pub fn pg_ctl(&self, args: &[&str]) {
        let bin = format!("{}/pg_ctl", self.var("FILESTORE_TEST_PG_BIN"));
        let data = self.var("FILESTORE_TEST_PG_DATA");
        let user = self.var("FILESTORE_TEST_PG_USER");
        let mut cmd = crate::process::command_as(user, &bin);
        cmd.args(["-D", data, "-w", "-t", "60"]).args(args);
        if args.first() == Some(&"start") {
            // The server must not inherit our pipes, or waiting for pg_ctl's output never ends.
            cmd.arg("-l").arg(format!("{data}/../server.log"));
        }
        let out = cmd.output().expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One test's private corner of the services.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub name: String,
    pub database_url: String,
    pub amqp_url: String,
    pub s3_endpoint: String,
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub raw_bucket: String,
    pub chunk_bucket: String,
    pub clamd: String,
}

impl Namespace {
    /// A fresh database, vhost and pair of buckets named after `tag`.
    pub async fn create(services: &Services, tag: &str) -> Namespace {
        let name = format!(
            "{}{:08x}",
            tag.to_ascii_lowercase()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(30)
                .collect::<String>(),
            rand::random::<u32>()
        );
        let admin_url = services.var("FILESTORE_TEST_PG_URL");
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let database_url = match admin_url.rsplit_once('/') {
            Some((server, _db)) => format!("{server}/{name}"),
            None => panic!("odd PostgreSQL URL {admin_url}"),
        };
        services.rabbitmqctl(&["add_vhost", &name]);
        services.rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let amqp_base = services.var("FILESTORE_TEST_AMQP_URL");
        let amqp_url = match amqp_base.rsplit_once('/') {
            Some((server, _vhost)) => format!("{server}/{name}"),
            None => panic!("odd AMQP URL {amqp_base}"),
        };
        let ns = Namespace {
            database_url,
            amqp_url,
            s3_endpoint: services.var("FILESTORE_TEST_S3_ENDPOINT").to_owned(),
            s3_access_key: services.var("FILESTORE_TEST_S3_ACCESS_KEY").to_owned(),
            s3_secret_key: services.var("FILESTORE_TEST_S3_SECRET_KEY").to_owned(),
            raw_bucket: format!("{name}-raw"),
            chunk_bucket: format!("{name}-chunks"),
            clamd: services.var("FILESTORE_TEST_CLAMD").to_owned(),
            name,
        };
        ns.s3()
            .ensure_buckets()
            .await
            .expect("create the test buckets");
        ns
    }

    pub fn s3_options(&self) -> S3Options {
        S3Options {
            access_key: self.s3_access_key.clone(),
            secret_key: self.s3_secret_key.clone(),
            ..S3Options::new(
                Some(self.s3_endpoint.clone()),
                &self.raw_bucket,
                &self.chunk_bucket,
            )
        }
    }

    pub fn s3(&self) -> S3Store {
        S3Store::new(self.s3_options())
    }

    pub async fn postgres(&self) -> PostgresStore {
        PostgresStore::connect(&PostgresOptions::new(&self.database_url))
            .await
            .expect("connect to the test database")
    }

    pub async fn rabbit(&self) -> RabbitQueue {
        RabbitQueue::connect(RabbitOptions {
            url: self.amqp_url.clone(),
            prefetch: 4,
        })
        .await
        .expect("connect to the test vhost")
    }

    /// The environment a `filestore api` or `filestore worker` process needs to join this
    /// namespace.
    pub fn process_env(&self) -> Vec<(String, String)> {
        [
            ("FILESTORE_DATABASE_URL", self.database_url.as_str()),
            ("FILESTORE_AMQP_URL", &self.amqp_url),
            ("FILESTORE_S3_ENDPOINT", &self.s3_endpoint),
            ("FILESTORE_S3_ACCESS_KEY", &self.s3_access_key),
            ("FILESTORE_S3_SECRET_KEY", &self.s3_secret_key),
            ("FILESTORE_S3_RAW_BUCKET", &self.raw_bucket),
            ("FILESTORE_S3_CHUNK_BUCKET", &self.chunk_bucket),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

/// Services of a test's own, which it may stop and start at will; stopped when dropped.
pub struct PrivateServices {
    pub services: Services,
    dir: tempfile::TempDir,
}

impl PrivateServices {
    /// Starts `only` (e.g. "postgres" or "rabbitmq") privately; everything else is shared.
    pub fn start(only: &str) -> PrivateServices {
        let dir = tempfile::tempdir().expect("temp dir");
        let vars = start_services(Some(dir.path()), Some(only));
        PrivateServices {
            services: Services::shared().overlay(vars),
            dir,
        }
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/services.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
