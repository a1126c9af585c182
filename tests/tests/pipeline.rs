//! What the pipeline does to content: dedupe, malware quarantine, tamper detection.
use filestore_tests::{Service, noise, sha256_hex};
use reqwest::StatusCode;
use serde_json::json;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_content_twice_is_stored_once_and_an_insert_adds_few_chunks() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let original = noise(4 * 1024 * 1024, 11);
    svc.upload_ready(&t, "one.bin", &original).await;
    let first = svc.usage(&t).await;
    let chunks_after_first = first["chunks"].as_u64().unwrap();
    assert!(chunks_after_first > 20);

    svc.upload_ready(&t, "two.bin", &original).await;
    let second = svc.usage(&t).await;
    assert_eq!(
        second["chunks"], first["chunks"],
        "identical upload adds no chunks"
    );
    assert_eq!(second["chunkStoredBytes"], first["chunkStoredBytes"]);
    assert_eq!(svc.chunk_files().len() as u64, chunks_after_first);

    let mut edited = original.clone();
    edited.splice(2 * 1024 * 1024..2 * 1024 * 1024, *b"0123456789");
    let id = svc.upload_ready(&t, "edited.bin", &edited).await;
    let third = svc.usage(&t).await;
    let added = third["chunks"].as_u64().unwrap() - chunks_after_first;
    assert!(
        (1..=3).contains(&added),
        "a 10-byte insert added {added} chunks"
    );
    assert_eq!(svc.content(&t, &id).await.body, edited);

    // Dedupe is per tenant: Bob's identical file gets chunks of his own.
    let bob = svc.token("bob");
    svc.upload_ready(&bob, "same.bin", &original).await;
    assert_eq!(svc.usage(&bob).await["chunks"], first["chunks"]);
    assert_eq!(
        svc.chunk_files().len() as u64,
        third["chunks"].as_u64().unwrap() + chunks_after_first
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eicar_test_file_is_quarantined_and_never_served() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.upload(&t, "eicar.com", EICAR).await;
    assert_eq!(svc.settle(&t, &id).await, "quarantined");
    let meta = svc
        .get(&format!("/v1/files/{id}/metadata"), &t)
        .await
        .json();
    assert!(
        meta["reason"]
            .as_str()
            .unwrap()
            .contains("Eicar-Test-Signature")
    );
    for path in [format!("/v1/file/{id}"), format!("/v1/files/{id}/content")] {
        let r = svc.get(&path, &t).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "file_quarantined".into()),
            "{path}"
        );
    }
    let batch = svc.get(&format!("/v1/files?id={id}"), &t).await.json();
    assert_eq!(batch["files"][0]["error"]["code"], "file_quarantined");
    assert!(svc.chunk_files().is_empty(), "malware is never chunked");

    // Its raw bytes stay while the file exists (in trash too); a purge removes them.
    assert_eq!(svc.raw_objects(&id).len(), 1);
    let trashed = svc
        .post_json("/v1/tree/delete", &t, &json!({"path": "eicar.com"}))
        .await;
    assert_eq!(trashed.status, StatusCode::OK);
    assert_eq!(svc.raw_objects(&id).len(), 1);
    let purged = svc
        .post_json("/v1/trash/purge", &t, &json!({"path": "eicar.com"}))
        .await;
    assert_eq!(purged.json()["purged"], 1);
    assert!(
        svc.raw_objects(&id).is_empty(),
        "a purge leaves no bytes behind"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocklisted_digests_are_quarantined() {
    let bad = b"a file an administrator has banned";
    let svc = Service::builder().blocklist(&sha256_hex(bad)).start().await;
    let t = svc.token("alice");
    let id = svc.upload(&t, "banned.txt", bad).await;
    assert_eq!(svc.settle(&t, &id).await, "quarantined");
    let fine = svc.upload(&t, "fine.txt", b"harmless").await;
    assert_eq!(svc.settle(&t, &fine).await, "ready");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_stored_chunk_fails_the_download_instead_of_lying() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let bytes = noise(300_000, 5);
    let id = svc.upload_ready(&t, "victim.bin", &bytes).await;
    let chunks = svc.chunk_files();
    let target = &chunks[chunks.len() / 2];
    let mut stored = std::fs::read(target).unwrap();
    let mid = stored.len() / 2;
    stored[mid] ^= 0x01;
    std::fs::write(target, &stored).unwrap();

    // The plaintext stream is cut short: never the full length, never a wrong byte. When the
    // bad chunk is among the first ones decrypted, the connection closes before the headers.
    let url = format!("{}/v1/files/{id}/content", svc.base);
    let mut arrived = Vec::new();
    if let Ok(resp) = svc.http.get(&url).bearer_auth(&t).send().await {
        assert_eq!(resp.status(), StatusCode::OK);
        let mut resp = resp;
        while let Ok(Some(piece)) = resp.chunk().await {
            arrived.extend_from_slice(&piece);
        }
    }
    assert!(
        arrived.len() < bytes.len(),
        "a corrupted file must not arrive whole"
    );
    assert_eq!(
        arrived,
        bytes[..arrived.len()],
        "what did arrive is a true prefix"
    );

    // The parallel client refuses the chunk and leaves no file behind.
    let client = filestore_cli::client::Client::new(&svc.base, &t).unwrap();
    let d = client.descriptor(&id).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("victim.bin");
    let err = filestore_cli::download::download(
        &client,
        d,
        filestore_cli::download::Target::File(dest.clone()),
        4,
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("failed verification"),
        "{err:#}"
    );
    assert!(
        std::fs::read_dir(out.path()).unwrap().next().is_none(),
        "no partial or wrong file remains"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_notices_a_raw_object_that_vanished() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.register(&t, "gone.bin", 4).await;
    assert_eq!(
        svc.put(&format!("/v1/files/{id}/content"), &t, b"data".to_vec())
            .await
            .status,
        StatusCode::OK
    );
    let raw = svc.raw_objects(&id);
    assert_eq!(raw.len(), 1);
    std::fs::remove_file(&raw[0]).unwrap();
    // Finalize sees the object is gone.
    assert_eq!(
        svc.finalize(&t, &id, b"data").await.code(),
        "upload_incomplete"
    );
    assert_eq!(svc.status(&t, &id).await, "uploading");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_parked_and_other_files_carry_on() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let running = svc.running.as_ref().unwrap();
    use filestore_adapters::Queue;
    running
        .queue
        .publish("file.uploaded", b"{this is not json")
        .await
        .unwrap();
    let id = svc.upload(&t, "ok.txt", b"fine").await;
    assert_eq!(svc.settle(&t, &id).await, "ready");
    let parked = running.queue.parked("filestore.scan").await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(parked[0].1.contains("not valid JSON"), "{}", parked[0].1);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_object_lost_after_finalize_fails_the_file_with_the_reason() {
    let svc = Service::builder()
        .worker(|w| w.stages.clear())
        .start()
        .await;
    let t = svc.token("alice");
    let id = svc.upload(&t, "lost.bin", b"data").await;
    assert_eq!(svc.status(&t, &id).await, "processing");
    let raw = svc.raw_objects(&id);
    assert_eq!(raw.len(), 1);
    std::fs::remove_file(&raw[0]).unwrap();
    let svc = svc
        .restart_with(|b| {
            *b = b
                .clone()
                .worker(|w| w.stages = filestore_domain::messages::Stage::ALL.to_vec())
        })
        .await;
    assert_eq!(svc.settle(&t, &id).await, "failed");
    let meta = svc
        .get(&format!("/v1/files/{id}/metadata"), &t)
        .await
        .json();
    assert!(
        meta["reason"].as_str().unwrap().contains("missing"),
        "{meta}"
    );
    assert_eq!(
        svc.get(&format!("/v1/file/{id}"), &t).await.code(),
        "file_failed"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_fault_is_retried_then_the_file_fails_and_its_message_is_parked() {
    let svc = Service::builder()
        .worker(|w| w.max_deliveries = 3)
        .start()
        .await;
    let t = svc.token("alice");
    // Chunk objects cannot be written: their directory is a plain file.
    std::fs::write(svc.objects_dir().join("chunks"), b"in the way").unwrap();
    let id = svc.upload(&t, "doomed.bin", &noise(50_000, 3)).await;
    assert_eq!(svc.settle(&t, &id).await, "failed");
    let reason = svc
        .get(&format!("/v1/files/{id}/metadata"), &t)
        .await
        .json()["reason"]
        .clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .contains("gave up after 3 attempts"),
        "{reason}"
    );
    let parked = svc
        .running
        .as_ref()
        .unwrap()
        .queue
        // One worker runs every stage, so the file went on from the scan stage in one piece
        // and that stage's message is the one parked.
        .parked("filestore.scan")
        .await
        .unwrap();
    assert_eq!(parked.len(), 1);
    // Once the fault is gone, other files go through.
    std::fs::remove_file(svc.objects_dir().join("chunks")).unwrap();
    let ok = svc.upload(&t, "fine.bin", b"fine").await;
    assert_eq!(svc.settle(&t, &ok).await, "ready");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_a_claim_while_a_long_job_runs_never_stalls_it() {
    // Claims renewed every few milliseconds land while the chunk stage is mid-write, again
    // and again; the job must still finish.
    let svc = Service::builder()
        .worker(|w| w.keep_alive_ms = 2)
        .start()
        .await;
    let t = svc.token("alice");
    let bytes = noise(8 * 1024 * 1024, 21);
    let id = svc.upload(&t, "long.bin", &bytes).await;
    assert_eq!(svc.settle(&t, &id).await, "ready");
    assert_eq!(svc.content(&t, &id).await.body, bytes);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire_with_their_bytes() {
    let svc = Service::builder()
        .worker(|w| {
            w.upload_expiry_secs = 3;
            w.janitor_interval_secs = 1;
        })
        .start()
        .await;
    let t = svc.token("alice");
    let abandoned = svc.register(&t, "never-finalized.bin", 4).await;
    let put = svc
        .put(
            &format!("/v1/files/{abandoned}/content"),
            &t,
            b"data".to_vec(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(svc.raw_objects(&abandoned).len(), 1);
    let finished = svc.upload_ready(&t, "finished.bin", b"kept").await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while svc
        .get(&format!("/v1/files/{abandoned}/metadata"), &t)
        .await
        .status
        != StatusCode::NOT_FOUND
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned upload never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(svc.raw_objects(&abandoned).is_empty(), "its bytes are gone");
    let store = &svc.running.as_ref().unwrap().store;
    let record = store
        .get_file(&abandoned.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, filestore_domain::FileStatus::Deleted);
    assert!(record.status_reason.unwrap().contains("abandoned"));
    // A late PUT is refused and stores nothing.
    let late = svc
        .put(
            &format!("/v1/files/{abandoned}/content"),
            &t,
            b"data".to_vec(),
        )
        .await;
    assert_eq!(late.status, StatusCode::NOT_FOUND);
    assert!(svc.raw_objects(&abandoned).is_empty());
    assert_eq!(
        svc.content(&t, &finished).await.body,
        b"kept",
        "settled files are untouched"
    );
    svc.stop().await;
}
