//! Outages of the broker and the database in the middle of a run: nothing is lost, clients get
//! a clear 503 instead of a hang, and everything recovers without a restart.
use std::time::{Duration, Instant};

use filestore_tests::cluster::Cluster;
use filestore_tests::services::{Namespace, PrivateServices};
use filestore_tests::{noise, text};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_loses_nothing_and_consumers_come_back() {
    let private = PrivateServices::start("rabbitmq");
    let ns = Namespace::create(&private.services, "brokerdown").await;
    let c = Cluster::builder("brokerdown")
        .namespace(ns)
        .workers(2)
        .without_clamd()
        .start()
        .await;
    let t = c.token("alice");
    let before = c.upload_ready(&t, "before.txt", &text(50_000)).await;
    assert_eq!(c.status(&t, &before).await, "ready");

    private.services.rabbitmqctl(&["stop_app"]);
    // Uploads still succeed: the announcements wait in the outbox.
    let mut during = Vec::new();
    for n in 0..10u64 {
        let bytes = noise(30_000 + n as usize * 10_000, n);
        let id = c.upload(&t, &format!("during/{n}.bin"), &bytes).await;
        during.push((id, bytes));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (id, _) in &during {
        assert_eq!(c.status(&t, id).await, "processing");
    }
    let pg = c.ns.postgres().await;
    let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(waiting, 10, "every announcement is kept");

    private.services.rabbitmqctl(&["start_app"]);
    for (id, bytes) in &during {
        assert_eq!(c.settle(&t, id).await, "ready", "{id}\n{}", c.logs());
        assert!(c.content(&t, id).await.body == *bytes);
    }
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_recovers_by_itself() {
    let private = PrivateServices::start("postgres");
    let ns = Namespace::create(&private.services, "dbdown").await;
    let c = Cluster::builder("dbdown")
        .namespace(ns)
        .without_clamd()
        .env("FILESTORE_DATABASE_ACQUIRE_TIMEOUT", "2")
        .start()
        .await;
    let t = c.token("bob");
    let id = c.upload_ready(&t, "a.txt", b"hello").await;

    private.services.pg_ctl(&["stop", "-m", "fast"]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for (method, path) in [
        (reqwest::Method::GET, format!("/v1/files/{id}/metadata")),
        (reqwest::Method::POST, "/v1/file".to_owned()),
        (reqwest::Method::GET, "/readyz".to_owned()),
    ] {
        let resp = http
            .request(method, format!("{}{path}", c.base))
            .bearer_auth(&t)
            .json(&serde_json::json!({"path": "b.txt", "size": 1}))
            .send()
            .await
            .expect("an answer, not a hang");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "database_unavailable", "{path}");
    }

    private.services.pg_ctl(&["start"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.get(&format!("/v1/files/{id}/metadata"), &t).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the API did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = c.upload_ready(&t, "after.txt", b"after the outage").await;
    assert_eq!(c.status(&t, &again).await, "ready");
}
