//! Replicated PostgreSQL on loopback for failover tests: one primary and streaming standbys,
//! commits confirmed by `ANY 1` standby, behind a switchable read-write address. Implements the
//! operator's instance operations over these real processes.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use filestore_operator::failover::{Instance, InstanceOps, OpsError, Step, Supervisor, probe};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};

use crate::process::{command_as, free_port, running_as_root};
use crate::services::Services;
use crate::tcp_proxy::TcpProxy;

pub struct Member {
    pub name: String,
    pub port: u16,
    data: PathBuf,
}

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: String,
    pub members: Vec<Member>,
    proxy: TcpProxy,
    fenced: Mutex<HashSet<String>>,
    /// What each member was when it last answered, for reporting the dead.
    last_seen: Mutex<HashMap<String, Instance>>,
}

fn ops_error(op: &'static str, instance: &str, reason: impl std::fmt::Display) -> OpsError {
    OpsError::new(op, instance, reason)
}

impl PgCluster {
    /// Ticks `sup` over `ops` until a step satisfies `done`; panics with the members' logs
    /// after `limit`.
    pub async fn tick_until(
        &self,
        sup: &mut Supervisor,
        ops: &dyn InstanceOps,
        limit: Duration,
        mut done: impl FnMut(&Step) -> bool,
    ) -> Step {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let step = sup
                .tick(ops, std::time::Instant::now())
                .await
                .expect("failover routine");
            if done(&step) {
                return step;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "last step {step:?}\n{}",
                self.members
                    .iter()
                    .map(|m| format!("== {}\n{}", m.name, self.log_of(&m.name)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Starts `n` members: `pg0` the primary, the rest cloned from it as streaming standbys.
    pub async fn start(n: usize) -> PgCluster {
        let services = Services::shared();
        let dir = tempfile::tempdir().expect("temp dir");
        // The server runs as the `postgres` user when we are root; it must reach its data.
        let user = services.var("FILESTORE_TEST_PG_USER").to_owned();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod temp dir");
        if running_as_root() {
            let owned = Command::new("chown")
                .arg(&user)
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(owned, "chown {} to {user}", dir.path().display());
        }
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("pg{i}"),
                port: free_port(),
                data: dir.path().join(format!("pg{i}")),
            })
            .collect();
        let names = members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let cluster = PgCluster {
            bin: PathBuf::from(services.var("FILESTORE_TEST_PG_BIN")),
            user,
            proxy: TcpProxy::start(members[0].port).await,
            members,
            dir,
            fenced: Mutex::new(HashSet::new()),
            last_seen: Mutex::new(HashMap::new()),
        };
        let first = &cluster.members[0];
        cluster
            .pg(
                "initdb",
                &[
                    "-D",
                    path_str(&first.data),
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                ],
            )
            .expect("initdb");
        let shared_conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             wal_level = replica\n\
             wal_log_hints = on\n\
             max_wal_senders = 10\n\
             wal_keep_size = '1GB'\n\
             hot_standby = on\n\
             synchronous_standby_names = 'ANY 1 ({names})'\n\
             fsync = off\n\
             shared_buffers = '32MB'\n\
             max_connections = 50\n"
        );
        append(&first.data.join("postgresql.conf"), &shared_conf);
        cluster.configure_member(0, None);
        cluster.start_member_at(0);
        for i in 1..n {
            let source = cluster.members[0].port;
            cluster.clone_member(i, source).expect("clone a standby");
            cluster.start_member_at(i);
        }
        cluster.proxy.point_at(cluster.members[0].port);
        // Let the standbys connect, so the first commits are confirmed.
        for _ in 0..100 {
            if cluster.streaming_standbys().await >= n - 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster
    }

    /// The read-write address, as applications see it.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.proxy.port()
        )
    }

    pub fn url_for_database(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.proxy.port())
    }

    pub fn member_url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.member(name).port
        )
    }

    fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn index_of(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn pg(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let bin = self.bin.join(tool);
        let mut cmd = command_as(&self.user, &bin);
        let out = cmd
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The settings that differ per member, appended last so they win over copied ones.
    fn configure_member(&self, i: usize, primary_port: Option<u16>) {
        let m = &self.members[i];
        let mut conf = format!("port = {}\ncluster_name = '{}'\n", m.port, m.name);
        if let Some(p) = primary_port {
            conf.push_str(&format!(
                "primary_conninfo = 'host=127.0.0.1 port={p} user=postgres application_name={}'\n",
                m.name
            ));
            append(&m.data.join("standby.signal"), "");
        }
        append(&m.data.join("postgresql.auto.conf"), &conf);
    }

    fn clone_member(&self, i: usize, source_port: u16) -> Result<(), String> {
        let m = &self.members[i];
        let _ = std::fs::remove_dir_all(&m.data);
        let port = source_port.to_string();
        self.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                path_str(&m.data),
                "-X",
                "stream",
                "--no-sync",
                "-c",
                "fast",
            ],
        )?;
        self.configure_member(i, Some(source_port));
        Ok(())
    }

    fn start_member_at(&self, i: usize) {
        let m = &self.members[i];
        let log = self.dir.path().join(format!("{}.log", m.name));
        std::fs::write(&log, b"").ok();
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o666)).ok();
        self.pg(
            "pg_ctl",
            &[
                "-D",
                path_str(&m.data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
        .unwrap_or_else(|e| panic!("start {}: {e}\n{}", m.name, self.log_of(&m.name)));
    }

    /// Starts a member that was stopped or killed, with its data as it was.
    pub fn start_member(&self, name: &str) {
        self.start_member_at(self.index_of(name));
    }

    pub fn log_of(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGKILLs the member's postmaster and every backend: what a node crash does.
    pub fn kill(&self, name: &str) {
        let m = self.member(name);
        let Ok(pidfile) = std::fs::read_to_string(m.data.join("postmaster.pid")) else {
            return;
        };
        let Some(pid) = pidfile
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return;
        };
        let mut doomed = children_of(pid);
        doomed.push(pid);
        let list = doomed
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        // The shell's own `kill`: no procps needed on a minimal machine.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -KILL {list} 2>/dev/null")])
            .status();
        // Backends gone, shared memory released: a restart or rewind can begin.
        for _ in 0..100 {
            if !doomed.iter().any(|p| running(*p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the member at once (a cut network looks the same from outside).
    pub fn stop(&self, name: &str) {
        let m = self.member(name);
        let _ = self.pg(
            "pg_ctl",
            &["-D", path_str(&m.data), "-m", "immediate", "-w", "stop"],
        );
    }

    async fn connect(&self, port: u16) -> Result<PgConnection, sqlx::Error> {
        probe::connect(&self.options(port)).await
    }

    async fn streaming_standbys(&self) -> usize {
        let Ok(mut c) = self.connect(self.proxy.target()).await else {
            return 0;
        };
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        )
        .fetch_one(&mut c)
        .await
        .map(|n| n as usize)
        .unwrap_or(0)
    }

    async fn probe(&self, m: &Member) -> Option<Instance> {
        probe::probe(&m.name, &self.options(m.port)).await
    }

    fn options(&self, port: u16) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username("postgres")
            .database("postgres")
    }

    /// Whether member `i` streams the primary's current timeline within a while.
    async fn streams(&self, i: usize, primary: &str) -> bool {
        let Some(timeline) = self.probe(self.member(primary)).await.map(|p| p.timeline) else {
            return false;
        };
        for _ in 0..60 {
            if let Ok(mut c) = self.connect(self.members[i].port).await {
                let row = sqlx::query("SELECT status, received_tli FROM pg_stat_wal_receiver")
                    .fetch_optional(&mut c)
                    .await
                    .ok()
                    .flatten();
                let _ = c.close().await;
                let streaming = row.is_some_and(|r| {
                    r.try_get::<String, _>("status")
                        .is_ok_and(|s| s == "streaming")
                        && r.try_get::<i32, _>("received_tli")
                            .is_ok_and(|t| i64::from(t) == i64::from(timeline))
                });
                if streaming {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }

    fn set_primary_conninfo_sql(primary_port: u16, name: &str) -> String {
        format!(
            "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres application_name={name}'"
        )
    }
}

/// Whether process `pid` exists and is not a zombie waiting to be reaped.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// Processes whose parent is `pid`, from /proc.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // The parent is the second field after the command name, which is in parentheses
            // and may itself hold spaces.
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after_name = stat.rsplit_once(')')?.1;
                    after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes()).expect("append");
}

#[async_trait]
impl InstanceOps for PgCluster {
    async fn observe(&self) -> Vec<Instance> {
        let mut seen = Vec::new();
        for m in &self.members {
            let fenced = self.fenced.lock().expect("lock").contains(&m.name);
            let observed = match self.probe(m).await {
                Some(i) => {
                    self.last_seen
                        .lock()
                        .expect("lock")
                        .insert(m.name.clone(), i.clone());
                    i
                }
                None => {
                    let last = self.last_seen.lock().expect("lock").get(&m.name).cloned();
                    Instance::gone(&m.name, last)
                }
            };
            seen.push(Instance { fenced, ..observed });
        }
        seen
    }

    async fn fence(&self, instance: &str) -> Result<(), OpsError> {
        self.fenced
            .lock()
            .expect("lock")
            .insert(instance.to_owned());
        self.kill(instance);
        Ok(())
    }

    async fn promote(&self, instance: &str) -> Result<(), OpsError> {
        let options = self.options(self.member(instance).port);
        probe::promote(&options)
            .await
            .map_err(|e| ops_error("promote", instance, e))
    }

    async fn repoint(&self, primary: &str) -> Result<(), OpsError> {
        let primary_port = self.member(primary).port;
        self.proxy.point_at(primary_port);
        let fenced = self.fenced.lock().expect("lock").clone();
        for m in self
            .members
            .iter()
            .filter(|m| m.name != primary && !fenced.contains(&m.name))
        {
            // A standby that does not answer is repointed when it rejoins.
            let Ok(mut c) = self.connect(m.port).await else {
                continue;
            };
            let sql = Self::set_primary_conninfo_sql(primary_port, &m.name);
            sqlx::query(&sql)
                .execute(&mut c)
                .await
                .map_err(|e| ops_error("repoint", &m.name, e))?;
            sqlx::query("SELECT pg_reload_conf()")
                .execute(&mut c)
                .await
                .map_err(|e| ops_error("repoint", &m.name, e))?;
        }
        Ok(())
    }

    async fn rejoin(&self, instance: &str, primary: &str) -> Result<(), OpsError> {
        let i = self.index_of(instance);
        let primary_port = self.member(primary).port;
        self.kill(instance);
        // pg_rewind reads the source's timeline from its control file, which a promoted
        // primary updates only at its next checkpoint; without one it sees nothing to rewind.
        let mut source_conn = self
            .connect(primary_port)
            .await
            .map_err(|e| ops_error("rejoin", primary, e))?;
        sqlx::query("CHECKPOINT")
            .execute(&mut source_conn)
            .await
            .map_err(|e| ops_error("rejoin", primary, e))?;
        let _ = source_conn.close().await;
        let data = self.members[i].data.clone();
        let source = format!("host=127.0.0.1 port={primary_port} user=postgres dbname=postgres");
        let rewound = self.pg(
            "pg_rewind",
            &[
                "--target-pgdata",
                path_str(&data),
                "--source-server",
                &source,
            ],
        );
        match rewound {
            Ok(()) => self.configure_member(i, Some(primary_port)),
            Err(e) => {
                tracing::warn!(%instance, error = %e, "pg_rewind failed; cloning afresh");
                self.clone_member(i, primary_port)
                    .map_err(|e| ops_error("rejoin", instance, e))?;
            }
        }
        self.start_member_at(i);
        if !self.streams(i, primary).await {
            // Rewound but unable to follow (its WAL still runs past the fork): start over.
            tracing::warn!(%instance, "the rewound standby does not stream; cloning afresh");
            self.kill(instance);
            self.clone_member(i, primary_port)
                .map_err(|e| ops_error("rejoin", instance, e))?;
            self.start_member_at(i);
            if !self.streams(i, primary).await {
                return Err(ops_error("rejoin", instance, "the clone does not stream"));
            }
        }
        self.fenced.lock().expect("lock").remove(instance);
        Ok(())
    }
}
