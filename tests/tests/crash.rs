//! `kill -9` of the whole embedded service mid-pipeline: after a restart the file finishes
//! with no new upload and comes back byte-identical.
use std::time::{Duration, Instant};

use filestore_tests::process::{DevProcess, SMALL_CHUNK_FLAGS, data_dir_in, free_port};
use filestore_tests::{sha256_hex, text};
use serde_json::{Value, json};

async fn call(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.expect("request");
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap_or(Value::Null)
}

fn count_files(dir: &std::path::Path) -> usize {
    filestore_tests::files_under(dir).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_being_chunked_when_the_process_is_killed_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_in(&dir);
    let port = free_port();
    // Slow chunking on purpose (one chunk at a time, heavy compression) so the kill lands in
    // the middle of it.
    let slow = [
        ["--chunk-parallelism", "1", "--zstd-level", "19"].as_slice(),
        &SMALL_CHUNK_FLAGS,
    ]
    .concat();
    let dev = DevProcess::start(&data, port, &slow);
    let http = reqwest::Client::new();
    let bytes = text(24 * 1024 * 1024);
    let base = dev.base.clone();
    let token = dev.token.clone();

    let reg = call(
        http.post(format!("{base}/v1/file"))
            .bearer_auth(&token)
            .json(&json!({"path": "big.txt", "size": bytes.len()})),
    )
    .await;
    let id = reg["fileId"].as_str().unwrap().to_owned();
    call(
        http.put(format!("{base}/v1/files/{id}/content"))
            .bearer_auth(&token)
            .body(bytes.clone()),
    )
    .await;
    let fin = json!({"checksum": format!("sha256-{}", sha256_hex(&bytes)), "size": bytes.len()});
    call(
        http.post(format!("{base}/v1/files/{id}/finalize"))
            .bearer_auth(&token)
            .json(&fin),
    )
    .await;

    let chunks_dir = data.join("objects").join("chunks");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = call(
            http.get(format!("{base}/v1/files/{id}/metadata"))
                .bearer_auth(&token),
        )
        .await["status"]
            .clone();
        assert_eq!(
            status, "processing",
            "the kill must land while the file is processing"
        );
        if count_files(&chunks_dir) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "chunking never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    dev.kill9();
    let stored_at_kill = count_files(&chunks_dir);
    assert!(
        (3..24).contains(&stored_at_kill),
        "killed mid-way: {stored_at_kill} chunks stored"
    );

    let dev = DevProcess::start(&data, port, &[]);
    let token = dev.token.clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let meta = call(
            http.get(format!("{base}/v1/files/{id}/metadata"))
                .bearer_auth(&token),
        )
        .await;
        if meta["status"] == "ready" {
            break;
        }
        assert_eq!(meta["status"], "processing", "{meta}");
        assert!(
            Instant::now() < deadline,
            "the file never finished after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = http
        .get(format!("{base}/v1/files/{id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&body), sha256_hex(&bytes));
    assert!(
        filestore_tests::raw_objects(&data, &id).is_empty(),
        "the raw upload is removed once chunks hold the content"
    );
    drop(dev);
}
