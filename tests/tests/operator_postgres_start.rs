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

/// start.sh's environment, as the pod gives it (`env` arguments).
fn script_env(dir: &Path, ordinal: u16, primary_port: u16, port: u16) -> (PathBuf, Vec<String>) {
    let services = Services::shared();
    let bin = services.var("FILESTORE_TEST_PG_BIN");
    let data = dir.join(format!("db{ordinal}")).join("pgdata");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    let user = services.var("FILESTORE_TEST_PG_USER");
    if running_as_root() {
        let owned = Command::new("chown").args(["-R", user]).arg(dir).status();
        assert!(owned.is_ok_and(|s| s.success()), "chown {}", dir.display());
    }
    let env = vec![
        format!("PATH={bin}:/usr/bin:/bin"),
        format!("POD_NAME=files-db-{ordinal}"),
        format!("PGDATA={}", data.display()),
        format!("PGPORT={port}"),
        format!(
            "POD_LABELS={}",
            dir.join(format!("labels-{ordinal}")).display()
        ),
        "PRIMARY_HOST=127.0.0.1".to_owned(),
        format!("PRIMARY_PORT={primary_port}"),
        format!("POSTGRES_SUPERUSER_PASSWORD={SUPERUSER}"),
        format!("FILESTORE_DATABASE_PASSWORD={PASSWORD}"),
        format!("REPLICATION_PASSWORD={REPLICATION}"),
    ];
    (data, env)
}

fn start(dir: &Path, config: &Path, ordinal: u16, primary_port: u16, port: u16) -> Instance {
    let (data, env) = script_env(dir, ordinal, primary_port, port);
    let mut cmd = command_as(Services::shared().var("FILESTORE_TEST_PG_USER"), "env");
    let log = std::fs::File::create(dir.join(format!("db{ordinal}.log"))).unwrap();
    let child = cmd
        .args(env)
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

/// Creates the table the tests count acknowledged commits in, with its first row.
async fn first_acknowledged_commit(on_primary: &mut sqlx::PgConnection) {
    for sql in [
        "CREATE TABLE acknowledged (n int)",
        "INSERT INTO acknowledged VALUES (1)",
    ] {
        sqlx::query(sql).execute(&mut *on_primary).await.unwrap();
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
        first_acknowledged_commit(&mut on_primary).await;
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
    first_acknowledged_commit(&mut on_old).await;
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

/// start.sh as a container runs it: in a PID namespace of its own, as the postgres user, so that
/// the script is PID 1 and PostgreSQL, which it execs, is PID 1 too. Killing PID 1 ends the
/// namespace and every process in it, as a container's end does.
struct Container {
    unshare: Child,
    data: PathBuf,
    port: u16,
}

fn id_of(user: &str, flag: &str) -> String {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn start_container(
    dir: &Path,
    config: &Path,
    ordinal: u16,
    primary_port: u16,
    port: u16,
    log: &str,
) -> Container {
    let (data, env) = script_env(dir, ordinal, primary_port, port);
    let user = Services::shared().var("FILESTORE_TEST_PG_USER");
    let log = std::fs::File::create(dir.join(log)).unwrap();
    // unshare forks once (its child is PID 1); setpriv and env exec, so PID 1 becomes sh.
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "setpriv"])
        .arg(format!("--reuid={}", id_of(user, "-u")))
        .arg(format!("--regid={}", id_of(user, "-g")))
        .args(["--clear-groups", "env"])
        .args(env)
        .arg("sh")
        .arg(config.join("start.sh"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("unshare runs");
    Container {
        unshare,
        data,
        port,
    }
}

impl Container {
    /// PID 1 of the namespace, as the host numbers it: unshare's only child.
    fn init_pid(&self) -> Option<u32> {
        let parent = self.unshare.id().to_string();
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // pid (comm) state ppid ...: comm may hold spaces, so read after its last ')'.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                (ppid == parent).then_some(pid)
            })
    }

    /// SIGKILL to PID 1, as a crash or a grace-0 fence ends a container, and waits for the end.
    fn kill(&mut self) {
        if let Some(pid) = self.init_pid() {
            let killed = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
        }
        let _ = self.unshare.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
    }
}

fn postmaster_pid(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_primary_killed_as_pid_1_rejoins_by_rewind_not_by_a_new_clone() {
    // A PID namespace needs root, and a kernel and sandbox that allow one (a container without
    // CAP_SYS_ADMIN does not).
    let can_unshare = running_as_root()
        && Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !can_unshare {
        eprintln!("skipped: no PID namespace here (unshare --pid --fork --mount-proc needs root)");
        return;
    }
    let (dir, config) = workdir();
    let (p0, p1) = (free_port(), free_port());
    label(dir.path(), 0, "primary");
    let mut old_primary = start_container(dir.path(), &config, 0, p0, p0, "db0.log");
    let mut on_old = connect(old_primary.port).await;
    assert_eq!(
        postmaster_pid(&old_primary.data).as_deref(),
        Some("1"),
        "PostgreSQL runs as PID 1, as in a pod"
    );
    let standby = start(dir.path(), &config, 1, p0, p1);
    let mut on_standby = connect(standby.port).await;
    first_acknowledged_commit(&mut on_old).await;
    drop(on_old);

    // The node dies under the primary: SIGKILL, no shutdown, its lock file left behind.
    old_primary.kill();
    assert_eq!(
        postmaster_pid(&old_primary.data).as_deref(),
        Some("1"),
        "the crash leaves postmaster.pid naming PID 1"
    );
    filestore_operator::failover::probe::promote(&superuser(p1))
        .await
        .expect("the standby is promoted");
    let waiting_commit = tokio::spawn(async move {
        sqlx::query("INSERT INTO acknowledged VALUES (2)")
            .execute(&mut on_standby)
            .await
            .map(|_| ())
    });
    // The operator fenced it and then gave it the replica label; its container starts again,
    // and PID 1 is now start.sh, under the same user as the dead postmaster.
    label(dir.path(), 0, "replica");
    let rejoined = start_container(dir.path(), &config, 0, p1, p0, "db0-restart.log");
    let log = || std::fs::read_to_string(dir.path().join("db0-restart.log")).unwrap_or_default();
    let mut on_rejoined = connect(rejoined.port).await;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut on_rejoined)
        .await
        .unwrap();
    assert!(in_recovery, "the former primary came back as a standby");
    let committed = tokio::time::timeout(Duration::from_secs(60), waiting_commit).await;
    assert!(
        matches!(committed, Ok(Ok(Ok(())))),
        "replication resumed: the new primary's commit was confirmed by the rejoined standby: {committed:?}\n{}",
        log()
    );
    let log = log();
    assert!(
        !log.contains("pg_rewind failed"),
        "the rejoin took a base backup instead of a rewind:\n{log}"
    );
    assert!(
        !rejoined.data.with_extension("diverged").exists(),
        "no diverged copy was kept"
    );
    assert!(log.contains("rewound onto the primary's timeline"), "{log}");
    assert!(
        log.contains("removing a stale postmaster.pid (pid 1)"),
        "{log}"
    );
    // A commit waits for the standby's flush, not its replay: the row shows up a moment later.
    let mut rows: Vec<i32> = Vec::new();
    for _ in 0..200 {
        rows = sqlx::query_scalar("SELECT n FROM acknowledged ORDER BY n")
            .fetch_all(&mut on_rejoined)
            .await
            .unwrap();
        if rows.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows,
        vec![1, 2],
        "it follows the new primary's timeline:\n{log}"
    );
    let mut on_new = sqlx::PgConnection::connect_with(&superuser(p1))
        .await
        .unwrap();
    let streaming: Option<String> = sqlx::query_scalar(
        "SELECT state FROM pg_stat_replication WHERE application_name = 'files-db-0'",
    )
    .fetch_optional(&mut on_new)
    .await
    .unwrap();
    assert_eq!(streaming.as_deref(), Some("streaming"));
}
