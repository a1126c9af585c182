//! The whole flow on the production backends: `filestore api` and `filestore worker` processes
//! on PostgreSQL, RabbitMQ, S3 (s3s-fs) and clamd.
use std::time::Duration;

use filestore_adapters::{ObjectStore, Queue};
use filestore_tests::cluster::Cluster;
use filestore_tests::{noise, sha256_hex, text};
use reqwest::StatusCode;
use serde_json::json;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_pipeline_and_download_run_on_the_production_backends() {
    let c = Cluster::builder("e2e").start().await;
    let t = c.token("alice");

    // One file of many chunks.
    let big = noise(3 * 1024 * 1024 + 5, 11);
    let id = c.upload_ready(&t, "big.bin", &big).await;
    let got = c.content(&t, &id).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.body == big, "the download equals the upload");

    // The descriptor hands out presigned S3 URLs that ask for private caching while valid.
    let d = c.get(&format!("/v1/file/{id}"), &t).await.json();
    let chunks = d["chunks"].as_array().unwrap();
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    let url = chunks[0]["url"].as_str().unwrap();
    assert!(url.starts_with(&c.ns.s3_endpoint), "{url}");
    let asked = reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "response-cache-control")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(asked.starts_with("private, max-age="), "{url}");
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // A batch: every file registered at once, then sent and finalized.
    let files: Vec<Vec<u8>> = (0..5).map(|i| text(10_000 + i * 70_000)).collect();
    let reg = c
        .post_json(
            "/v1/files",
            &t,
            &json!({"files": files.iter().enumerate()
                .map(|(i, f)| json!({"path": format!("batch/{i}.txt"), "size": f.len()}))
                .collect::<Vec<_>>()}),
        )
        .await;
    assert_eq!(reg.status, StatusCode::OK, "{:?}", reg.json());
    let ids: Vec<String> = reg.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fileId"].as_str().unwrap().to_owned())
        .collect();
    for (id, bytes) in ids.iter().zip(&files) {
        let put = c
            .put(&format!("/v1/files/{id}/content"), &t, bytes.clone())
            .await;
        assert_eq!(put.status, StatusCode::OK, "{:?}", put.json());
        assert_eq!(c.finalize(&t, id, bytes).await.status, StatusCode::OK);
    }
    for (id, bytes) in ids.iter().zip(&files) {
        assert_eq!(c.settle(&t, id).await, "ready");
        assert!(c.content(&t, id).await.body == *bytes);
    }

    // clamd catches the EICAR test file and the repository's own test signature.
    let eicar = c.upload(&t, "eicar.com", EICAR).await;
    assert_eq!(c.settle(&t, &eicar).await, "quarantined");
    let meta = c
        .get(&format!("/v1/files/{eicar}/metadata"), &t)
        .await
        .json();
    let reason = meta["reason"].as_str().unwrap();
    assert!(
        reason.contains("clamd") && reason.contains("EICAR"),
        "{reason}"
    );
    let custom = c
        .upload(&t, "custom.txt", b"xx FILESTORE-TEST-MALWARE-SIGNATURE xx")
        .await;
    assert_eq!(c.settle(&t, &custom).await, "quarantined");
    assert_eq!(
        c.content(&t, &eicar).await.code(),
        "file_quarantined",
        "quarantined files are never served"
    );

    // Raw uploads are gone once processed; chunks stay.
    let s3 = c.ns.s3();
    let raw = s3.list("raw/").await.unwrap();
    let leftovers: Vec<_> = raw
        .iter()
        .filter(|(k, _)| !k.contains(&eicar) && !k.contains(&custom))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_with_curl_to_its_presigned_url_reaches_ready() {
    let c = Cluster::builder("presigned").start().await;
    let t = c.token("bob");
    let dir = tempfile::tempdir().unwrap();
    let bytes = noise(700_000, 5);
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, &bytes).unwrap();

    let reg = c
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "photo.jpg", "size": bytes.len()}),
        )
        .await;
    assert_eq!(reg.status, StatusCode::CREATED);
    let reg = reg.json();
    let id = reg["fileId"].as_str().unwrap();
    let url = reg["directUpload"]["url"]
        .as_str()
        .expect("a presigned URL");
    assert_eq!(reg["directUpload"]["method"], "PUT");

    // Finalize before the bytes arrive: refused, nothing moves.
    assert_eq!(c.finalize(&t, id, &bytes).await.code(), "upload_incomplete");

    let curl = std::process::Command::new("curl")
        .args(["-sS", "--fail", "-T"])
        .arg(&path)
        .arg(url)
        .output()
        .expect("curl runs");
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // Finalize verifies what S3 holds: a wrong checksum is refused...
    let wrong = c
        .post_json(
            &format!("/v1/files/{id}/finalize"),
            &t,
            &json!({"checksum": format!("sha256-{}", sha256_hex(b"other")), "size": bytes.len()}),
        )
        .await;
    assert_eq!(wrong.code(), "checksum_mismatch");
    // ...the right one starts processing.
    assert_eq!(c.finalize(&t, id, &bytes).await.status, StatusCode::OK);
    assert_eq!(c.settle(&t, id).await, "ready");
    assert!(c.content(&t, id).await.body == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_parked_and_the_file_fails_with_the_reason() {
    // No worker yet, so the files wait in `processing` while the test sets the trap.
    let mut c = Cluster::builder("poison")
        .workers(0)
        .env("FILESTORE_MAX_DELIVERIES", "3")
        .start()
        .await;
    let t = c.token("carol");
    let queue = c.ns.rabbit().await;

    // Not even JSON: parked at once, the consumer carries on.
    queue
        .publish("file.uploaded", b"{this is not json")
        .await
        .unwrap();

    // A file whose stored upload the object store refuses to read, every time.
    let doomed = c.upload(&t, "doomed.bin", b"doomed").await;
    let pg = c.ns.postgres().await;
    sqlx::query("UPDATE files SET raw_key = $1 WHERE id = $2")
        .bind(format!("raw/{}", "x".repeat(2000)))
        .bind(&doomed)
        .execute(pg.pool())
        .await
        .unwrap();
    let fine = c.upload(&t, "fine.txt", b"fine").await;
    c.start_worker();
    // Other files are unaffected.
    assert_eq!(c.settle(&t, &fine).await, "ready");

    assert_eq!(c.settle(&t, &doomed).await, "failed");
    let reason = c
        .get(&format!("/v1/files/{doomed}/metadata"), &t)
        .await
        .json()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while queue.parked_depth().await.unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "both parked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(queue.parked_depth().await.unwrap(), 2);
    assert_eq!(queue.depth("filestore.scan").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_sent_part_by_part_to_presigned_urls_reaches_ready() {
    let c = Cluster::builder("multipart")
        .env("FILESTORE_DIRECT_PART_MIB", "5")
        .start()
        .await;
    let t = c.token("dora");
    let bytes = noise(12 * 1024 * 1024 + 3, 8);
    let reg = c
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "video.mp4", "size": bytes.len()}),
        )
        .await
        .json();
    let id = reg["fileId"].as_str().unwrap();
    let direct = &reg["directUpload"];
    let upload_id = direct["uploadId"].as_str().expect("a multipart upload");
    let parts = direct["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);

    // Parts go up in any order, in parallel, straight to S3.
    let http = reqwest::Client::new();
    let sends = parts.iter().rev().map(|p| {
        let offset = p["offset"].as_u64().unwrap() as usize;
        let length = p["length"].as_u64().unwrap() as usize;
        let body = bytes[offset..offset + length].to_vec();
        let req = http.put(p["url"].as_str().unwrap()).body(body);
        let number = p["number"].as_u64().unwrap();
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{}", resp.status());
            let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
            json!({"number": number, "etag": etag})
        }
    });
    let completed: Vec<serde_json::Value> = futures::future::join_all(sends).await;

    // A part number S3 cannot have is refused with a clear code before storage is asked.
    let mut wrong = completed.clone();
    wrong[0]["number"] = json!(0);
    let bad = c
        .post_json(
            &format!("/v1/files/{id}/finalize"),
            &t,
            &json!({"checksum": format!("sha256-{}", sha256_hex(&bytes)), "size": bytes.len(),
                    "multipart": {"uploadId": upload_id, "parts": wrong}}),
        )
        .await;
    assert_eq!(bad.code(), "invalid_multipart", "{:?}", bad.json());

    let fin = c
        .post_json(
            &format!("/v1/files/{id}/finalize"),
            &t,
            &json!({"checksum": format!("sha256-{}", sha256_hex(&bytes)), "size": bytes.len(),
                    "multipart": {"uploadId": upload_id, "parts": completed}}),
        )
        .await;
    assert_eq!(fin.status, StatusCode::OK, "{:?}", fin.json());
    assert_eq!(c.settle(&t, id).await, "ready");
    assert!(c.content(&t, id).await.body == bytes);
}
