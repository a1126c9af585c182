//! Upload -> process -> download through the HTTP API of a real embedded service.
use filestore_tests::{Service, noise, sha256_hex, text};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_comes_back_byte_identical_from_the_stream_and_from_the_chunks() {
    let svc = Service::start().await;
    let alice = svc.token("alice");
    let bytes = [noise(700_000, 1), text(900_000)].concat();
    let id = svc.upload_ready(&alice, "docs/mixed.bin", &bytes).await;

    let streamed = svc.content(&alice, &id).await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(streamed.body, bytes);
    assert_eq!(
        streamed.headers["etag"],
        format!("\"{}\"", sha256_hex(&bytes)).as_str()
    );

    let d = svc.get(&format!("/v1/file/{id}"), &alice).await.json();
    let chunks = d["chunks"].as_array().expect("chunks");
    assert!(chunks.len() > 5, "a 1.6 MB file spans many 64 KiB chunks");
    let mut rebuilt = Vec::new();
    for c in chunks {
        let stored = svc
            .call(Method::GET, c["url"].as_str().unwrap(), None, None, &[])
            .await;
        assert_eq!(stored.status, StatusCode::OK);
        let cache = stored.headers["cache-control"].to_str().unwrap();
        assert!(cache.starts_with("private, max-age="), "{cache}");
        let key = filestore_domain::keys::SecretKey::from_hex(c["key"].as_str().unwrap()).unwrap();
        let id: filestore_domain::ChunkId = c["id"].as_str().unwrap().parse().unwrap();
        let mut sha = [0u8; 32];
        hex::decode_to_slice(c["sha256"].as_str().unwrap(), &mut sha).unwrap();
        let plain = filestore_domain::codec::decode(
            &stored.body,
            &id,
            &key,
            &sha,
            c["length"].as_u64().unwrap() as usize,
        )
        .expect("chunk decrypts and verifies");
        rebuilt.extend(plain);
    }
    assert_eq!(rebuilt, bytes);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_return_exactly_the_slice() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let bytes = noise(600_000, 2);
    let id = svc.upload_ready(&t, "r.bin", &bytes).await;
    let path = format!("/v1/files/{id}/content");
    for (range, lo, hi) in [
        ("bytes=0-0", 0, 1),
        ("bytes=65530-200000", 65530, 200_001),
        ("bytes=-10", 599_990, 600_000),
        ("bytes=599999-", 599_999, 600_000),
    ] {
        let r = svc
            .call(Method::GET, &path, Some(&t), None, &[("range", range)])
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body, &bytes[lo..hi], "{range}");
        assert_eq!(
            r.headers["content-range"],
            format!("bytes {lo}-{}/600000", hi - 1).as_str()
        );
    }
    let past = svc
        .call(
            Method::GET,
            &path,
            Some(&t),
            None,
            &[("range", "bytes=600000-")],
        )
        .await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.code(), "range_not_satisfiable");
    assert_eq!(past.headers["content-range"], "bytes */600000");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_etag_answers_not_modified() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.upload_ready(&t, "e.txt", b"etag me").await;
    let etag = format!("\"{}\"", sha256_hex(b"etag me"));
    let r = svc
        .call(
            Method::GET,
            &format!("/v1/files/{id}/content"),
            Some(&t),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_is_a_real_file() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.upload_ready(&t, "empty/__init__.py", b"").await;
    let r = svc.content(&t, &id).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    let d = svc.get(&format!("/v1/file/{id}"), &t).await.json();
    assert_eq!(d["chunks"].as_array().map(Vec::len), Some(0));
    assert_eq!(d["size"], 0);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_registers_each_item_on_its_own() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let files = json!({"files": [
        {"path": "a.txt", "size": 3},
        {"path": "../../etc/passwd", "size": 3},
        {"path": "b.txt", "size": -5},
        {"path": "c.txt", "size": 3, "contentType": "text/plain"}
    ]});
    let r = svc.post_json("/v1/files", &t, &files).await;
    assert_eq!(r.status, StatusCode::OK);
    let results = r.json()["results"].as_array().cloned().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "uploading");
    assert_eq!(results[1]["error"]["code"], "invalid_path");
    assert_eq!(results[2]["error"]["code"], "invalid_size");
    assert_eq!(results[3]["status"], "uploading");
    for ok in [&results[0], &results[3]] {
        let id = ok["fileId"].as_str().unwrap();
        let location = ok["location"].as_str().unwrap();
        assert_eq!(
            svc.put(location, &t, b"abc".to_vec()).await.status,
            StatusCode::OK
        );
        assert_eq!(svc.finalize(&t, id, b"abc").await.status, StatusCode::OK);
        assert_eq!(svc.settle(&t, id).await, "ready");
    }
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_descriptors_answer_each_id() {
    let svc = Service::start().await;
    let (alice, bob) = (svc.token("alice"), svc.token("bob"));
    let a = svc.upload_ready(&alice, "a", b"alice's").await;
    let b = svc.upload_ready(&bob, "b", b"bob's").await;
    let r = svc
        .get(&format!("/v1/files?id={a},{b},not-an-id"), &alice)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let files = r.json()["files"].as_array().cloned().unwrap();
    assert_eq!(files[0]["descriptor"]["fileId"], a.as_str());
    assert_eq!(files[1]["error"]["status"], 404);
    assert_eq!(files[1]["error"]["code"], "not_found");
    assert_eq!(files[2]["error"]["code"], "not_found");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_work_without_a_token() {
    let svc = Service::start().await;
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let r = svc.call(Method::GET, path, None, None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
    }
    let doc = svc
        .call(Method::GET, "/openapi.json", None, None, &[])
        .await
        .json();
    for route in [
        "/v1/file",
        "/v1/files",
        "/v1/files/{id}/content",
        "/v1/files/{id}/finalize",
        "/v1/file/{id}",
        "/v1/chunks/{id}",
    ] {
        assert!(
            doc["paths"][route].is_object(),
            "{route} missing from the OpenAPI document"
        );
    }
    let unknown = svc.call(Method::GET, "/v2/nothing", None, None, &[]).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "no_route".into())
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_api_speaks_https() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let svc = Service::builder()
        .api(|a| {
            a.tls_cert = Some(fixtures.join("tls-cert.pem"));
            a.tls_key = Some(fixtures.join("tls-key.pem"));
        })
        .start()
        .await;
    assert!(svc.base.starts_with("https://"), "{}", svc.base);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("tls-ca.pem")).unwrap())
        .unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let t = svc.token("alice");
    let resp = https
        .get(format!("{}/v1/usage", svc.base))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let plain = svc.base.replace("https://", "http://");
    assert!(
        reqwest::get(format!("{plain}/healthz")).await.is_err(),
        "no plain HTTP on the TLS port"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_an_ingress_chunk_urls_are_absolute_under_the_public_url() {
    let svc = Service::builder()
        .api(|a| a.public_url = Some("https://files.example.com/".into()))
        .start()
        .await;
    let t = svc.token("alice");
    let id = svc.upload_ready(&t, "p.bin", &noise(10_000, 4)).await;
    let d = svc.get(&format!("/v1/file/{id}"), &t).await.json();
    let url = d["chunks"][0]["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://files.example.com/v1/chunks/"),
        "{url}"
    );
    svc.stop().await;
}
