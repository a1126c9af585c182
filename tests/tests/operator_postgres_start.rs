//! The managed PostgreSQL's start script and settings, exactly as the operator ships them, on
//! real PostgreSQL: instance 0 bootstraps the cluster with Filestore's roles, instance 1 clones
//! it and streams, and a commit waits for that standby (synchronous_standby_names names the
//! instances by pod name, which each instance reports as its application_name).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use filestore_operator::build::Owner;
use filestore_operator::build::database::scripts;
use filestore_operator::crd::FileStore;
use filestore_tests::process::{command_as, free_port, running_as_root};
use filestore_tests::services::Services;
use sqlx::Connection;

const PASSWORD: &str = "app-3f9c";
const REPLICATION: &str = "repl-77aa";
const SUPERUSER: &str = "super-1b2c";

/// The operator's scripts ConfigMap for a two-instance database, written to `dir` with its
/// fixed paths moved under `dir` (the pod mounts them at /etc/filestore-db and
/// /var/run/postgresql).
fn write_scripts(dir: &Path) -> PathBuf {
    let fs: FileStore = serde_yaml::from_str(
        "apiVersion: filestore.dev/v1alpha1
kind: FileStore
metadata: {name: files, namespace: prod, uid: 6f1c1c52-0000-0000-0000-000000000001}
spec:
  database: {managed: {instances: 2, synchronousStandbys: 1}}
  objectStorage: {rawBucket: r, chunkBucket: c, credentialsSecret: s}
",
    )
    .unwrap();
    let owner = Owner::of(&fs).unwrap();
    let config = scripts(&owner, &fs.spec.database.managed, false);
    let config_dir = dir.join("config");
    let run_dir = dir.join("run");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&run_dir).unwrap();
    for (name, text) in config.data.unwrap() {
        let relocated = text
            .replace("/etc/filestore-db", config_dir.to_str().unwrap())
            .replace("/var/run/postgresql", run_dir.to_str().unwrap());
        std::fs::write(config_dir.join(name), relocated).unwrap();
    }
    config_dir
}

struct Instance {
    child: Child,
    data: PathBuf,
    port: u16,
}

/// The pod's labels file (the downward API's) with `role` as its role label.
fn label(dir: &Path, ordinal: u16, role: &str) -> PathBuf {
    let path = dir.join(format!("labels-{ordinal}"));
    let text = format!("app.kubernetes.io/component=\"database\"\nfilestore.dev/role=\"{role}\"\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(dir: &Path, config: &Path, ordinal: u16, primary_port: u16, port: u16) -> Instance {
    let services = Services::shared();
    let bin = services.var("FILESTORE_TEST_PG_BIN");
    let data = dir.join(format!("db{ordinal}")).join("pgdata");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let user = services.var("FILESTORE_TEST_PG_USER");
    if running_as_root() {
        let owned = Command::new("chown").args(["-R", user]).arg(dir).status();
        assert!(owned.is_ok_and(|s| s.success()), "chown {}", dir.display());
    }
    let mut cmd = command_as(user, "env");
    let log = std::fs::File::create(dir.join(format!("db{ordinal}.log"))).unwrap();
    let child = cmd
        .arg(format!("PATH={bin}:/usr/bin:/bin"))
        .arg(format!("POD_NAME=files-db-{ordinal}"))
        .arg(format!("PGDATA={}", data.display()))
        .arg(format!("PGPORT={port}"))
        .arg(format!(
            "POD_LABELS={}",
            dir.join(format!("labels-{ordinal}")).display()
        ))
        .arg("PRIMARY_HOST=127.0.0.1")
        .arg(format!("PRIMARY_PORT={primary_port}"))
        .arg(format!("POSTGRES_SUPERUSER_PASSWORD={SUPERUSER}"))
        .arg(format!("FILESTORE_DATABASE_PASSWORD={PASSWORD}"))
        .arg(format!("REPLICATION_PASSWORD={REPLICATION}"))
        .arg("sh")
        .arg(config.join("start.sh"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start.sh runs");
    Instance { child, data, port }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let services = Services::shared();
        let pg_ctl = format!("{}/pg_ctl", services.var("FILESTORE_TEST_PG_BIN"));
        let mut cmd = command_as(services.var("FILESTORE_TEST_PG_USER"), &pg_ctl);
        let _ = cmd
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(port: u16) -> sqlx::PgConnection {
    let url = format!("postgres://filestore:{PASSWORD}@127.0.0.1:{port}/filestore");
    for _ in 0..600 {
        if let Ok(c) = sqlx::PgConnection::connect(&url).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no PostgreSQL answering as filestore on port {port}");
}

#[tokio::test]
async fn instance_0_bootstraps_instance_1_clones_and_commits_wait_for_it() {
    let (dir, config) = workdir();
    let (p0, p1) = (free_port(), free_port());
    label(dir.path(), 0, "primary");
    let primary = start(dir.path(), &config, 0, p0, p0);
    let mut on_primary = connect(primary.port).await;
    let standby = start(dir.path(), &config, 1, p0, p1);
    let mut on_standby = connect(standby.port).await;

    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut on_standby)
        .await
        .unwrap();
    assert!(in_recovery, "instance 1 follows instance 0");
    let sync: Option<String> = sqlx::query_scalar(
        "SELECT application_name FROM pg_stat_replication WHERE application_name = 'files-db-1'",
    )
    .fetch_optional(&mut on_primary)
    .await
    .unwrap();
    // The standby may still be catching up ("potential") for a moment; a commit then waits.
    assert!(
        sync.is_some(),
        "the primary sees files-db-1 by its pod name"
    );

    let committed = tokio::time::timeout(Duration::from_secs(60), async {
        sqlx::query("CREATE TABLE acknowledged (n int)")
            .execute(&mut on_primary)
            .await
            .unwrap();
        sqlx::query("INSERT INTO acknowledged VALUES (1)")
            .execute(&mut on_primary)
            .await
            .unwrap();
    })
    .await;
    assert!(
        committed.is_ok(),
        "a commit waits for the synchronous standby, and it answers"
    );
    let mut seen = 0i64;
    for _ in 0..100 {
        seen = sqlx::query_scalar("SELECT count(*) FROM acknowledged")
            .fetch_one(&mut on_standby)
            .await
            .unwrap_or(0);
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 1, "the acknowledged row is on the standby");
    let mode = std::fs::metadata(&primary.data).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
    assert!(
        !primary.data.with_extension("building").exists(),
        "nothing half-built is left"
    );
}

fn superuser(port: u16) -> sqlx::postgres::PgConnectOptions {
    sqlx::postgres::PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .password(SUPERUSER)
        .database("filestore")
}

async fn answers(port: u16) -> bool {
    sqlx::PgConnection::connect_with(&superuser(port))
        .await
        .is_ok()
}

/// A temp dir the `postgres` user can reach, with the operator's scripts in it.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = write_scripts(dir.path());
    (dir, config)
}

#[tokio::test]
async fn a_former_primary_waits_while_fenced_then_rewinds_and_follows_the_new_primary() {
    let (dir, config) = workdir();
    let (p0, p1) = (free_port(), free_port());
    label(dir.path(), 0, "primary");
    let old_primary = start(dir.path(), &config, 0, p0, p0);
    let mut on_old = connect(old_primary.port).await;
    let standby = start(dir.path(), &config, 1, p0, p1);
    let mut on_standby = connect(standby.port).await;
    sqlx::query("CREATE TABLE acknowledged (n int)")
        .execute(&mut on_old)
        .await
        .unwrap();
    sqlx::query("INSERT INTO acknowledged VALUES (1)")
        .execute(&mut on_old)
        .await
        .unwrap();
    drop(on_old);

    // The primary crashes; the operator promotes the standby and fences the old one.
    drop(old_primary);
    filestore_operator::failover::probe::promote(&superuser(p1))
        .await
        .expect("the standby is promoted");
    label(dir.path(), 0, "fenced");
    let fenced = start(dir.path(), &config, 0, p1, p0);
    // Commits wait for a synchronous standby: this one completes once instance 0 follows.
    let waiting_commit = tokio::spawn(async move {
        sqlx::query("INSERT INTO acknowledged VALUES (2)")
            .execute(&mut on_standby)
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !answers(p0).await,
        "a fenced former primary does not start, so it cannot serve as a second primary"
    );

    label(dir.path(), 0, "replica");
    let mut on_rejoined = connect(fenced.port).await;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut on_rejoined)
        .await
        .unwrap();
    assert!(in_recovery, "the former primary came back as a standby");
    let committed = tokio::time::timeout(Duration::from_secs(60), waiting_commit).await;
    assert!(
        matches!(committed, Ok(Ok(Ok(())))),
        "the new primary's commit was confirmed by the rejoined standby: {committed:?}\n{}",
        std::fs::read_to_string(dir.path().join("db0.log")).unwrap_or_default()
    );
    let rows: Vec<i32> = sqlx::query_scalar("SELECT n FROM acknowledged ORDER BY n")
        .fetch_all(&mut on_rejoined)
        .await
        .unwrap();
    assert_eq!(rows, vec![1, 2], "it follows the new primary's timeline");
    let log = std::fs::read_to_string(dir.path().join("db0.log")).unwrap_or_default();
    assert!(
        log.contains("waiting for the operator's role label (now 'fenced')"),
        "{log}"
    );
}
