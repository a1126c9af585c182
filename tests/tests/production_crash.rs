//! Real crashes on the production backends: the API and the workers are SIGKILLed at random
//! moments while work is in flight, and the promises of DESIGN §2 are checked afterwards.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use filestore_adapters::ObjectStore;
use filestore_domain::ChunkId;
use filestore_tests::cluster::Cluster;
use filestore_tests::{Api, noise, sha256_hex};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Mutex;

/// How one client's upload ended, as the client saw it.
enum Outcome {
    /// Finalize answered 200: the service promised the file.
    Promised { id: String, bytes: Vec<u8> },
    /// The bytes were never acknowledged; the client gave up on this file.
    Failed { id: String },
}

/// A client that retries what is safe to retry (register, finalize) and gives up on a PUT the
/// service did not acknowledge.
async fn client_upload(api: &Api, token: &str, n: usize, bytes: Vec<u8>) -> Outcome {
    let mut id = None;
    while id.is_none() {
        let r = api
            .http
            .post(format!("{}/v1/file", api.base))
            .bearer_auth(token)
            .json(&json!({"path": format!("up/{n}.bin"), "size": bytes.len()}))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::CREATED => {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                id = v["fileId"].as_str().map(str::to_owned);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let id = id.unwrap_or_default();
    let put = api
        .http
        .put(format!("{}/v1/files/{id}/content", api.base))
        .bearer_auth(token)
        .body(bytes.clone())
        .send()
        .await;
    if !matches!(&put, Ok(r) if r.status() == StatusCode::OK) {
        return Outcome::Failed { id };
    }
    let fin = json!({"checksum": format!("sha256-{}", sha256_hex(&bytes)), "size": bytes.len()});
    loop {
        let r = api
            .http
            .post(format!("{}/v1/files/{id}/finalize", api.base))
            .bearer_auth(token)
            .json(&fin)
            .send()
            .await;
        match r {
            Ok(r) if r.status() == StatusCode::OK => return Outcome::Promised { id, bytes },
            Ok(r) if r.status().is_client_error() => {
                panic!("finalize of {id} refused: {}", r.status())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilling_the_api_during_50_concurrent_uploads_breaks_no_promise() {
    let c = Arc::new(Mutex::new(
        Cluster::builder("apikill").workers(2).start().await,
    ));
    let (api, t) = {
        let c = c.lock().await;
        (c.api.clone(), c.token("alice"))
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xA11CE);
    let uploads: Vec<_> = (0..50)
        .map(|n| {
            let api = api.clone();
            let t = t.clone();
            let bytes = noise(rng.gen_range(50_000..1_500_000), n as u64);
            // Staggered, so the kills land before, during and after different uploads.
            let start = Duration::from_millis(40 * n as u64);
            tokio::spawn(async move {
                tokio::time::sleep(start).await;
                client_upload(&api, &t, n, bytes).await
            })
        })
        .collect();
    // Kill the API at random moments while the uploads run, restarting it each time.
    let killer = {
        let c = c.clone();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(100..900))).await;
                let mut c = c.lock().await;
                c.kill_api();
                c.start_api();
            }
        })
    };
    let mut outcomes = Vec::new();
    for u in uploads {
        outcomes.push(u.await.unwrap());
    }
    killer.await.unwrap();
    let c = c.lock().await;
    c.wait_ready().await;

    let mut promised = 0;
    let mut failed = Vec::new();
    for o in &outcomes {
        match o {
            Outcome::Promised { id, bytes } => {
                promised += 1;
                assert_eq!(c.settle(&t, id).await, "ready", "promised file {id}");
                assert!(
                    c.content(&t, id).await.body == *bytes,
                    "promised file {id} comes back byte-identical"
                );
            }
            Outcome::Failed { id } => failed.push(id.clone()),
        }
    }
    // Give anything wrongly announced time to be processed, then check nobody got `ready`.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for id in &failed {
        let status = c.status(&t, id).await;
        assert_ne!(status, "ready", "unacknowledged upload {id} became ready");
    }
    eprintln!(
        "{promised} uploads promised, {} refused by a killed API",
        failed.len()
    );
    assert!(promised > 0);
}

/// Chunk object keys in S3 and chunk ids the database references, for the audit.
async fn chunk_audit(c: &Cluster) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let stored: BTreeSet<String> =
        c.ns.s3()
            .list("chunks/")
            .await
            .unwrap()
            .into_iter()
            .filter_map(|(k, _)| k.rsplit('/').next().map(str::to_owned))
            .collect();
    let pg = c.ns.postgres().await;
    let indexed: BTreeSet<String> = sqlx::query_scalar::<_, String>("SELECT id FROM chunks")
        .fetch_all(pg.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
    let referenced: BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT DISTINCT chunk_id FROM file_chunks")
            .fetch_all(pg.pool())
            .await
            .unwrap()
            .into_iter()
            .collect();
    (stored, indexed, referenced)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sigkilled_at_random_moments_lose_nothing_over_ten_rounds() {
    let mut c = Cluster::builder("workerkill")
        .workers(2)
        .without_clamd()
        .start()
        .await;
    let t = c.token("bob");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xB0B);
    let mut all = Vec::new();
    for round in 0..10u64 {
        let mut ids = Vec::new();
        for n in 0..20u64 {
            // Some files repeat earlier content, so dedupe races with the kills too.
            let seed = if n % 5 == 0 { n } else { round * 100 + n };
            let bytes = noise(rng.gen_range(20_000..900_000), seed);
            let id = c.upload(&t, &format!("r{round}/{n}.bin"), &bytes).await;
            ids.push((id, bytes));
        }
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..700))).await;
            c.kill_workers();
            c.start_worker();
            c.start_worker();
        }
        for (id, bytes) in &ids {
            assert_eq!(
                c.settle(&t, id).await,
                "ready",
                "round {round}: {id}\n{}",
                c.logs()
            );
            assert!(
                c.content(&t, id).await.body == *bytes,
                "round {round}: {id}"
            );
        }
        all.extend(ids);
    }
    // Every chunk the database references is in S3; what S3 holds beyond that is reported, and
    // swept.
    let (stored, indexed, referenced) = chunk_audit(&c).await;
    let missing: Vec<_> = referenced.difference(&stored).collect();
    assert!(missing.is_empty(), "referenced but not stored: {missing:?}");
    assert!(referenced.is_subset(&indexed));
    let orphans = stored.difference(&indexed).count();
    let unreferenced = indexed.difference(&referenced).count();
    eprintln!(
        "{} files, {} chunk objects, {} indexed, {} referenced: {orphans} orphaned objects, {unreferenced} unreferenced chunks",
        all.len(),
        stored.len(),
        indexed.len(),
        referenced.len(),
    );
    // Add one of each kind, so the sweep provably has work: an object whose worker died before
    // recording it, and a chunk recorded for a file that then failed.
    let s3 = c.ns.s3();
    let lost_write = ChunkId([0x5a; 32]);
    let failed_files_chunk = ChunkId([0xa5; 32]);
    for id in [lost_write, failed_files_chunk] {
        s3.put_bytes(&id.object_key(), Bytes::from_static(b"sealed"))
            .await
            .unwrap();
    }
    sqlx::query(
        "INSERT INTO chunks (owner, id, plain_size, stored_size, created_at, last_used)
         VALUES ('bob', $1, 6, 6, 0, 0)",
    )
    .bind(failed_files_chunk.to_string())
    .execute(c.ns.postgres().await.pool())
    .await
    .unwrap();

    let out = c.run(&["sweep", "--grace-secs", "0"]);
    eprintln!("filestore sweep: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["unrecordedRemoved"], json!(orphans + 1), "{report}");
    assert_eq!(
        report["unreferencedRemoved"],
        json!(unreferenced + 1),
        "{report}"
    );

    let (stored, indexed, referenced) = chunk_audit(&c).await;
    assert_eq!(stored, referenced, "S3 holds exactly the referenced chunks");
    assert_eq!(
        indexed, referenced,
        "the index holds exactly the referenced chunks"
    );
    for (id, bytes) in &all {
        assert!(
            c.content(&t, id).await.body == *bytes,
            "{id} after the sweep"
        );
    }
}
