//! Small files in bundles and compressed request bodies: what a client sends in fewer or
//! smaller requests is stored exactly as if it had come one plain request at a time.
use filestore_domain::bundle::{self, BundleItem};
use filestore_tests::{Reply, Service, noise, sha256_hex, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const BUNDLE: &str = "application/vnd.filestore.bundle";

fn item(id: &str, bytes: &[u8]) -> BundleItem {
    BundleItem {
        file_id: id.into(),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

/// Registers `files` (path, bytes) in one batch; their ids in order.
async fn register_all(svc: &Service, token: &str, files: &[(&str, Vec<u8>)]) -> Vec<String> {
    let req: Vec<Value> = files
        .iter()
        .map(|(path, bytes)| json!({"path": path, "size": bytes.len()}))
        .collect();
    let r = svc
        .post_json("/v1/files", token, &json!({ "files": req }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    r.json()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|x| x["fileId"].as_str().expect("registered").to_owned())
        .collect()
}

async fn post_bundle(svc: &Service, token: &str, body: Vec<u8>, encoding: Option<&str>) -> Reply {
    let mut headers = vec![("content-type", BUNDLE)];
    if let Some(e) = encoding {
        headers.push(("content-encoding", e));
    }
    svc.call(
        Method::POST,
        "/v1/files/bundle",
        Some(token),
        Some(body),
        &headers,
    )
    .await
}

/// A PUT of `body` sent as `encoding`.
async fn put_encoded(
    svc: &Service,
    token: &str,
    path: &str,
    body: Vec<u8>,
    encoding: &str,
) -> Reply {
    svc.call(
        Method::PUT,
        path,
        Some(token),
        Some(body),
        &[("content-encoding", encoding)],
    )
    .await
}

fn bundle_of(ids: &[String], files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let parts: Vec<(BundleItem, &[u8])> = ids
        .iter()
        .zip(files)
        .map(|(id, (_, bytes))| (item(id, bytes), bytes.as_slice()))
        .collect();
    bundle::encode(&parts)
}

fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("docs/a.txt", text(3000)),
        ("docs/empty.txt", Vec::new()),
        ("pics/b.bin", noise(9000, 1)),
        ("c.txt", text(10)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_stores_and_finalizes_every_file_it_carries() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    for encoding in [None, Some("zstd")] {
        let files = sample_files();
        let ids = register_all(&svc, &t, &files).await;
        let mut body = bundle_of(&ids, &files);
        if encoding.is_some() {
            body = zstd::bulk::compress(&body, 3).unwrap();
        }
        let r = post_bundle(&svc, &t, body, encoding).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
        let results = r.json()["results"].as_array().cloned().unwrap();
        assert_eq!(results.len(), files.len());
        for (n, ((id, (path, bytes)), result)) in ids.iter().zip(&files).zip(&results).enumerate() {
            assert_eq!(result["index"], n);
            assert_eq!(result["fileId"], id.as_str());
            assert_eq!(result["error"], Value::Null, "{path}: {result}");
            assert!(result["rev"].as_i64().is_some(), "{path} became a revision");
            assert_eq!(svc.settle(&t, id).await, "ready", "{path}");
            assert_eq!(svc.content(&t, id).await.body, *bytes, "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_file_in_a_bundle_fails_alone() {
    let svc = Service::start().await;
    let alice = svc.token("alice");
    let bob = svc.token("bob");
    let files = sample_files();
    let mut ids = register_all(&svc, &alice, &files).await;
    // Bob's file rides in Alice's bundle: to her it does not exist.
    let bobs = register_all(&svc, &bob, &[("mine.txt", text(10))]).await;
    ids[3] = bobs[0].clone();
    let mut parts: Vec<(BundleItem, &[u8])> = ids
        .iter()
        .zip(&files)
        .map(|(id, (_, bytes))| (item(id, bytes), bytes.as_slice()))
        .collect();
    parts[2].0.sha256 = sha256_hex(b"something else");
    let r = post_bundle(&svc, &alice, bundle::encode(&parts), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let results = r.json()["results"].as_array().cloned().unwrap();
    let code = |n: usize| results[n]["error"]["code"].as_str().map(str::to_owned);
    assert_eq!(code(0), None);
    assert_eq!(code(1), None);
    assert_eq!(code(2).as_deref(), Some("checksum_mismatch"));
    assert_eq!(code(3).as_deref(), Some("not_found"));
    assert_eq!(svc.settle(&alice, &ids[0]).await, "ready");
    assert_eq!(
        svc.status(&alice, &ids[2]).await,
        "uploading",
        "nothing recorded"
    );
    assert_eq!(
        svc.status(&bob, &bobs[0]).await,
        "uploading",
        "bob's file untouched"
    );
    assert!(
        svc.raw_objects(&ids[2]).is_empty(),
        "the refused bytes were removed"
    );
}

/// What is wrong, the body, its Content-Encoding, and the status and code it must get.
type BadBundle = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_bundle_stores_nothing() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let files = sample_files();
    let ids = register_all(&svc, &t, &files).await;
    let good = bundle_of(&ids, &files);
    let mut padded = good.clone();
    padded.extend_from_slice(b"extra");
    let cases: Vec<BadBundle> = vec![
        (
            "padded",
            padded,
            None,
            StatusCode::BAD_REQUEST,
            "bad_bundle",
        ),
        (
            "cut short",
            good[..good.len() - 3].to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_bundle",
        ),
        (
            "no manifest",
            b"\x00\x00".to_vec(),
            None,
            StatusCode::BAD_REQUEST,
            "bad_bundle",
        ),
        (
            "empty",
            bundle::encode(&[]),
            None,
            StatusCode::BAD_REQUEST,
            "bad_bundle",
        ),
        (
            "not zstd",
            good.clone(),
            Some("zstd"),
            StatusCode::BAD_REQUEST,
            "bad_encoding",
        ),
        (
            "gzip",
            good.clone(),
            Some("gzip"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            "expands past the limit",
            zstd::bulk::compress(&vec![0u8; 17 << 20], 3).unwrap(),
            Some("zstd"),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (what, body, encoding, status, code) in cases {
        let r = post_bundle(&svc, &t, body, encoding).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{what}: {:?}",
            r.json()
        );
        assert!(r.is_problem(), "{what}");
    }
    for id in &ids {
        assert_eq!(svc.status(&t, id).await, "uploading");
        assert!(svc.raw_objects(id).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_content_is_stored_and_checked_as_its_decoded_bytes() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let plain = text(200_000);
    let packed = zstd::bulk::compress(&plain, 3).unwrap();
    assert!(packed.len() < plain.len() / 2);
    let id = svc.register(&t, "notes.txt", plain.len()).await;
    let put = put_encoded(&svc, &t, &format!("/v1/files/{id}/content"), packed, "zstd").await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.json());
    assert_eq!(put.json()["size"], plain.len());
    assert_eq!(put.json()["sha256"], sha256_hex(&plain));
    assert_eq!(svc.finalize(&t, &id, &plain).await.status, StatusCode::OK);
    assert_eq!(svc.settle(&t, &id).await, "ready");
    assert_eq!(svc.content(&t, &id).await.body, plain);

    // More decoded bytes than registered: refused, nothing kept.
    let id = svc.register(&t, "small.txt", 1000).await;
    let bomb = zstd::bulk::compress(&vec![b'a'; 1 << 20], 3).unwrap();
    let put = put_encoded(&svc, &t, &format!("/v1/files/{id}/content"), bomb, "zstd").await;
    assert_eq!(
        put.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{:?}",
        put.json()
    );
    assert_eq!(put.code(), "body_too_large");
    assert!(svc.raw_objects(&id).is_empty());

    let put = put_encoded(
        &svc,
        &t,
        &format!("/v1/files/{id}/content"),
        b"hello".to_vec(),
        "br",
    )
    .await;
    assert_eq!(put.code(), "unsupported_encoding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_chunk_is_stored_under_its_plaintext_hash() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let chunk = text(100_000);
    let sha = sha256_hex(&chunk);
    let packed = zstd::bulk::compress(&chunk, 3).unwrap();
    let put = put_encoded(
        &svc,
        &t,
        &format!("/v1/chunks/{sha}/content"),
        packed.clone(),
        "zstd",
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.json());
    let missing = svc
        .post_json("/v1/chunks/missing", &t, &json!({ "sha256": [sha] }))
        .await;
    assert_eq!(missing.json()["sha256"], json!([]), "the server has it now");

    // Sent under another chunk's name, the decoded bytes do not match.
    let other = sha256_hex(b"other");
    let put = put_encoded(
        &svc,
        &t,
        &format!("/v1/chunks/{other}/content"),
        packed,
        "zstd",
    )
    .await;
    assert_eq!(put.code(), "checksum_mismatch");
}
