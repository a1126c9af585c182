//! Failover of a replicated PostgreSQL (one primary, two streaming standbys, commits confirmed by
//! `ANY 1` standby) by the operator's routine, against real processes: no acknowledged commit is
//! lost, writes resume, the old primary rejoins; and a failover that could lose commits is
//! refused with a reason.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use filestore_operator::failover::{
    InstanceOps, Policy, Role, Step, Supervisor, replication_status,
};
use filestore_tests::cluster::Cluster;
use filestore_tests::noise;
use filestore_tests::pgcluster::PgCluster;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

fn policy() -> Policy {
    Policy {
        failover_delay: Duration::from_secs(2),
        synchronous_standbys: 1,
    }
}

/// Writers committing numbered rows through the read-write address, remembering every id whose
/// commit was acknowledged.
struct WriteLoad {
    acknowledged: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
}

impl WriteLoad {
    fn start(url: String, next_id: Arc<AtomicI64>) -> WriteLoad {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..4)
            .map(|_| {
                let (url, next_id) = (url.clone(), next_id.clone());
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let connected = tokio::time::timeout(
                            Duration::from_secs(2),
                            PgConnection::connect(&url),
                        )
                        .await;
                        let Ok(Ok(mut conn)) = connected else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        while !stop.load(Ordering::SeqCst) {
                            let id = next_id.fetch_add(1, Ordering::SeqCst);
                            let insert = sqlx::query("INSERT INTO acks (id) VALUES ($1)")
                                .bind(id)
                                .execute(&mut conn);
                            match tokio::time::timeout(Duration::from_secs(10), insert).await {
                                Ok(Ok(_)) => acknowledged.lock().await.push(id),
                                // Unknown outcome: the id may or may not be there; only
                                // acknowledged ids are promised.
                                _ => break,
                            }
                        }
                    }
                })
            })
            .collect();
        WriteLoad {
            acknowledged,
            stop,
            writers,
        }
    }

    async fn count(&self) -> usize {
        self.acknowledged.lock().await.len()
    }

    /// Waits until `n` commits were acknowledged; panics with the members' logs if they never
    /// are.
    async fn wait_for(&self, n: usize, why: &str, pg: &PgCluster) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count().await < n {
            assert!(
                Instant::now() < deadline,
                "{why}: only {} commits\n{}",
                self.count().await,
                member_logs(pg)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.writers {
            let _ = w.await;
        }
        Arc::try_unwrap(self.acknowledged)
            .map(Mutex::into_inner)
            .unwrap_or_default()
    }
}

async fn create_table(pg: &PgCluster) {
    let mut conn = PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::query("CREATE TABLE acks (id BIGINT PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn stored_ids(pg: &PgCluster) -> BTreeSet<i64> {
    let mut conn = PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::query_scalar::<_, i64>("SELECT id FROM acks")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn primary_of(pg: &PgCluster) -> String {
    pg.observe()
        .await
        .into_iter()
        .find(|i| i.alive && i.role == Role::Primary)
        .map(|i| i.name)
        .expect("a primary")
}

fn member_logs(pg: &PgCluster) -> String {
    ["pg0", "pg1", "pg2"]
        .map(|m| format!("== {m}\n{}", pg.log_of(m)))
        .join("\n")
}

/// Three instances with the `acks` table, and a routine that has seen the primary serve.
async fn supervised_cluster() -> (PgCluster, Supervisor) {
    let pg = PgCluster::start(3).await;
    create_table(&pg).await;
    let mut sup = Supervisor::new(policy());
    pg.tick_until(&mut sup, &pg, Duration::from_secs(30), |s| {
        matches!(s, Step::Healthy { .. })
    })
    .await;
    (pg, sup)
}

/// Waits until every standby streams from the primary and has replayed all it wrote.
async fn wait_caught_up(pg: &PgCluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = pg.observe().await;
        let primary = seen.iter().find(|i| i.alive && i.role == Role::Primary);
        let caught_up = primary.is_some_and(|p| {
            seen.iter()
                .filter(|i| i.name != p.name)
                .all(|s| s.alive && s.role == Role::Standby && s.replayed >= p.received)
        });
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "standbys never caught up: {seen:?}\n{}",
            member_logs(pg)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_sigkilled_mid_load_five_times_loses_no_acknowledged_commit() {
    let (pg, mut sup) = supervised_cluster().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xFA11);
    let next_id = Arc::new(AtomicI64::new(1));
    let mut promised = BTreeSet::new();
    for round in 0..5 {
        let load = WriteLoad::start(pg.url(), next_id.clone());
        let kill_after = rng.gen_range(100..1500);
        load.wait_for(kill_after, "before the kill", &pg).await;
        let old = primary_of(&pg).await;
        pg.kill(&old);
        let killed = Instant::now();
        let before = load.count().await;

        let step = pg
            .tick_until(&mut sup, &pg, Duration::from_secs(60), |s| {
                matches!(s, Step::FailedOver { .. })
            })
            .await;
        let Step::FailedOver { promoted, fenced } = step else {
            unreachable!()
        };
        assert_eq!(fenced, vec![old.clone()]);
        load.wait_for(before + 50, "after the failover", &pg).await;
        let resumed = killed.elapsed();
        assert!(
            resumed < Duration::from_secs(30),
            "writes resumed only after {resumed:?}"
        );
        load.wait_for(2000, "the round's load", &pg).await;
        let acknowledged = load.finish().await;

        let step = pg
            .tick_until(&mut sup, &pg, Duration::from_secs(60), |s| {
                matches!(s, Step::Rejoined { .. })
            })
            .await;
        assert_eq!(
            step,
            Step::Rejoined {
                instance: old.clone(),
                primary: promoted.clone()
            }
        );
        wait_caught_up(&pg).await;
        let status = replication_status(&pg.observe().await);
        assert_eq!(status.primary.as_deref(), Some(promoted.as_str()));
        assert!(
            status
                .standbys
                .iter()
                .all(|s| s.alive && s.replay_lag_bytes == Some(0)),
            "{status:?}"
        );

        promised.extend(acknowledged.iter().copied());
        let stored = stored_ids(&pg).await;
        let lost: Vec<_> = promised.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );
        eprintln!(
            "round {round}: killed {old} after {kill_after} commits, promoted {promoted}, \
             writes resumed after {resumed:.1?}, {} commits acknowledged, {} stored in all",
            acknowledged.len(),
            stored.len()
        );
    }
}

/// Which standby to take away before the primary dies.
#[derive(Debug, Clone, Copy)]
enum Unreachable {
    /// The one that received the least WAL.
    Behind,
    /// The one that received the most: it may hold commits the other lacks.
    Ahead,
}

async fn refuses_while_a_standby_is_unreachable(which: Unreachable) {
    let (pg, mut sup) = supervised_cluster().await;
    let load = WriteLoad::start(pg.url(), Arc::new(AtomicI64::new(1)));
    load.wait_for(500, "before the standby goes", &pg).await;
    let mut standbys: Vec<_> = pg
        .observe()
        .await
        .into_iter()
        .filter(|i| i.role == Role::Standby)
        .collect();
    standbys.sort_by_key(|i| i.received);
    let victim = match which {
        Unreachable::Behind => standbys[0].name.clone(),
        Unreachable::Ahead => standbys[standbys.len() - 1].name.clone(),
    };
    pg.stop(&victim);
    let before = load.count().await;
    load.wait_for(before + 300, "with one standby left", &pg)
        .await;
    let old = primary_of(&pg).await;
    pg.kill(&old);

    let step = pg
        .tick_until(&mut sup, &pg, Duration::from_secs(60), |s| {
            !matches!(s, Step::Waiting { .. })
        })
        .await;
    let Step::Refused { reason } = step else {
        panic!("{which:?}: expected a refusal, got {step:?}");
    };
    assert!(reason.contains("only 1 of 2 standbys answer"), "{reason}");
    // It keeps refusing while the standby stays away.
    for _ in 0..3 {
        let step = sup.tick(&pg, Instant::now()).await.unwrap();
        assert!(matches!(step, Step::Refused { .. }), "{step:?}");
    }

    pg.start_member(&victim);
    let step = pg
        .tick_until(&mut sup, &pg, Duration::from_secs(60), |s| {
            matches!(s, Step::FailedOver { .. })
        })
        .await;
    eprintln!("{which:?}: {victim} was away; refused, then {step:?}");
    let before = load.count().await;
    load.wait_for(before + 50, "after the failover", &pg).await;
    let acknowledged: BTreeSet<i64> = load.finish().await.into_iter().collect();
    let stored = stored_ids(&pg).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{which:?}: acknowledged but lost: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_lagging_standby_down_first_the_failover_is_refused_until_it_returns() {
    refuses_while_a_standby_is_unreachable(Unreachable::Behind).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_leading_standby_cut_off_the_failover_is_refused_until_it_returns() {
    refuses_while_a_standby_is_unreachable(Unreachable::Ahead).await;
}

/// Register, upload and finalize, retrying every step the service answered 503 (or did not
/// answer): what a client does while the database fails over.
async fn upload_retrying(c: &Cluster, token: &str, path: &str, bytes: &[u8]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let retry = |what: &str, status: Option<StatusCode>| {
        assert!(
            Instant::now() < deadline,
            "{what} kept failing: {status:?}\n{}",
            c.logs()
        );
    };
    let id = loop {
        let r = c
            .post_json(
                "/v1/file",
                token,
                &json!({"path": path, "size": bytes.len()}),
            )
            .await;
        if r.status == StatusCode::CREATED {
            break r.json()["fileId"].as_str().unwrap().to_owned();
        }
        retry("register", Some(r.status));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    loop {
        let r = c
            .put(&format!("/v1/files/{id}/content"), token, bytes.to_vec())
            .await;
        if r.status == StatusCode::OK {
            break;
        }
        retry("put", Some(r.status));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let r = c.finalize(token, &id, bytes).await;
        if r.status == StatusCode::OK {
            break;
        }
        retry("finalize", Some(r.status));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_downloads_carry_on_across_a_database_failover() {
    let pg = PgCluster::start(3).await;
    let mut admin = PgConnection::connect(&pg.url()).await.unwrap();
    sqlx::query("CREATE DATABASE filestore")
        .execute(&mut admin)
        .await
        .unwrap();
    drop(admin);
    let c = Cluster::builder("failover")
        .without_clamd()
        .env("FILESTORE_DATABASE_URL", &pg.url_for_database("filestore"))
        .start()
        .await;
    let t = c.token("gina");
    let mut sup = Supervisor::new(policy());
    pg.tick_until(&mut sup, &pg, Duration::from_secs(30), |s| {
        matches!(s, Step::Healthy { .. })
    })
    .await;

    let mut files = Vec::new();
    for n in 0..5u64 {
        let bytes = noise(300_000 + n as usize * 1000, n);
        files.push((
            upload_retrying(&c, &t, &format!("before/{n}"), &bytes).await,
            bytes,
        ));
    }
    // Uploads in flight while the primary dies and the routine fails over.
    let in_flight = {
        let c = &c;
        let t = &t;
        async move {
            let mut done = Vec::new();
            for n in 0..8u64 {
                let bytes = noise(200_000, 100 + n);
                done.push((
                    upload_retrying(c, t, &format!("during/{n}"), &bytes).await,
                    bytes,
                ));
            }
            done
        }
    };
    let failover = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old = primary_of(&pg).await;
        pg.kill(&old);
        pg.tick_until(&mut sup, &pg, Duration::from_secs(60), |s| {
            matches!(s, Step::FailedOver { .. })
        })
        .await
    };
    let (during, step) = tokio::join!(in_flight, failover);
    eprintln!("{step:?}");
    files.extend(during);
    for (id, bytes) in &files {
        assert_eq!(c.settle(&t, id).await, "ready", "{id}\n{}", c.logs());
        assert!(
            c.content(&t, id).await.body == *bytes,
            "{id} downloads intact"
        );
    }
}
