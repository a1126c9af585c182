//! Bad input gets a 4xx with a stable code, never a 500, and never leaves a file half-way.
use filestore_tests::{Reply, Service, sha256_hex};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn assert_problem(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "expected {code}, got {:?}", r.json());
    assert_eq!(r.code(), code);
    assert!(r.is_problem(), "{code} must be application/problem+json");
}

async fn register_raw(svc: &Service, token: &str, body: &[u8]) -> Reply {
    svc.call(
        Method::POST,
        "/v1/file",
        Some(token),
        Some(body.to_vec()),
        &[("content-type", "application/json")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_registrations_are_refused_with_their_own_codes() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let long_component = "a".repeat(300);
    let long_path = vec!["abcdefghij"; 500].join("/");
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "truncated JSON",
            br#"{"path": "a.txt", "size": "#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "not an object",
            b"[1,2,3]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            // Serde reads a struct from an array of its fields; no schema here allows one.
            "the fields as an array",
            br#"["a.txt", 1]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "missing size",
            br#"{"path": "a.txt"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "lone surrogate",
            br#"{"path": "bad\udc80name", "size": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            b"{\"path\": \"bad\xff\xfename\", \"size\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "negative size",
            br#"{"path": "a.txt", "size": -1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            "fractional size",
            br#"{"path": "a.txt", "size": 1.5}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            "absurd size",
            br#"{"path": "a.txt", "size": 1e30}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_size",
        ),
        (
            "over the limit",
            br#"{"path": "a.txt", "size": 18446744073709551615}"#.to_vec(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
        ),
        (
            "string size",
            br#"{"path": "a.txt", "size": "10"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "traversal",
            br#"{"path": "../../etc/passwd", "size": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "empty path",
            br#"{"path": "", "size": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "NUL in path",
            br#"{"path": "a\u0000b", "size": 1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "replacement char",
            "{\"path\": \"a\u{FFFD}b\", \"size\": 1}"
                .as_bytes()
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_path",
        ),
        (
            "long component",
            format!(r#"{{"path": "{long_component}", "size": 1}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "path_too_long",
        ),
        (
            "long path",
            format!(r#"{{"path": "{long_path}", "size": 1}}"#).into_bytes(),
            StatusCode::BAD_REQUEST,
            "path_too_long",
        ),
        (
            "bad sha256",
            br#"{"path": "a.txt", "size": 1, "sha256": "xyz"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_checksum",
        ),
        (
            "bad content type",
            br#"{"path": "a.txt", "size": 1, "contentType": "nonsense"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
    ];
    for (what, body, status, code) in cases {
        let r = register_raw(&svc, &t, &body).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.json());
        assert_eq!(r.code(), code, "{what}");
        assert!(r.is_problem(), "{what}");
    }
    let usage = svc.usage(&t).await;
    assert_eq!(usage["files"], 0, "no refused registration created a file");
    let empty_batch = svc.post_json("/v1/files", &t, &json!({"files": []})).await;
    assert_problem(&empty_batch, StatusCode::BAD_REQUEST, "invalid_batch");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_that_do_not_match_their_registration_leave_the_file_uploading() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.register(&t, "a.txt", 5).await;
    let content = format!("/v1/files/{id}/content");

    assert_problem(
        &svc.put(&content, &t, b"too many bytes".to_vec()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    assert_problem(
        &svc.put(&content, &t, b"abc".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "size_mismatch",
    );
    assert_problem(
        &svc.finalize(&t, &id, b"12345").await,
        StatusCode::CONFLICT,
        "upload_incomplete",
    );
    assert_eq!(svc.status(&t, &id).await, "uploading");
    assert!(
        std::fs::read_dir(svc.objects_dir().join(".tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no temporary file is left"
    );

    assert_eq!(
        svc.put(&content, &t, b"hello".to_vec()).await.status,
        StatusCode::OK
    );
    assert_problem(
        &svc.finalize(&t, &id, b"HELLO").await,
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
    );
    let wrong_size = json!({"checksum": format!("sha256-{}", sha256_hex(b"hello")), "size": 6});
    assert_problem(
        &svc.post_json(&format!("/v1/files/{id}/finalize"), &t, &wrong_size)
            .await,
        StatusCode::BAD_REQUEST,
        "size_mismatch",
    );
    let no_prefix = json!({"checksum": sha256_hex(b"hello"), "size": 5});
    assert_problem(
        &svc.post_json(&format!("/v1/files/{id}/finalize"), &t, &no_prefix)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_checksum",
    );
    let negative = json!({"checksum": format!("sha256-{}", sha256_hex(b"hello")), "size": -5});
    assert_problem(
        &svc.post_json(&format!("/v1/files/{id}/finalize"), &t, &negative)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_size",
    );
    assert_eq!(
        svc.status(&t, &id).await,
        "uploading",
        "failed finalizes change nothing"
    );

    assert_eq!(
        svc.finalize(&t, &id, b"hello").await.json()["status"],
        "processing"
    );
    let again = svc.finalize(&t, &id, b"hello").await;
    assert_eq!(again.status, StatusCode::OK, "finalize is idempotent");
    assert_eq!(svc.settle(&t, &id).await, "ready");
    assert_problem(
        &svc.finalize(&t, &id, b"other").await,
        StatusCode::CONFLICT,
        "already_finalized",
    );
    assert_problem(
        &svc.put(&content, &t, b"hello".to_vec()).await,
        StatusCode::CONFLICT,
        "not_uploading",
    );
    assert_eq!(svc.content(&t, &id).await.body, b"hello");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_checksum_is_enforced_at_upload() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let r = svc
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "x", "size": 5, "sha256": sha256_hex(b"hello")}),
        )
        .await;
    let id = r.json()["fileId"].as_str().unwrap().to_owned();
    let put = svc
        .put(&format!("/v1/files/{id}/content"), &t, b"jello".to_vec())
        .await;
    assert_problem(&put, StatusCode::BAD_REQUEST, "checksum_mismatch");
    assert_eq!(svc.status(&t, &id).await, "uploading");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_of_unfinished_files_say_not_ready() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.register(&t, "later.txt", 3).await;
    assert_problem(
        &svc.get(&format!("/v1/file/{id}"), &t).await,
        StatusCode::CONFLICT,
        "not_ready",
    );
    assert_problem(
        &svc.content(&t, &id).await,
        StatusCode::CONFLICT,
        "not_ready",
    );
    assert_problem(
        &svc.get("/v1/files/not-a-uuid/metadata", &t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_and_queries_still_get_problem_documents() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    assert_problem(
        &svc.get("/v1/files/%FF%FE/metadata", &t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &svc.get("/v1/files", &t).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let chunk = svc
        .call(
            Method::GET,
            "/v1/chunks/abc?exp=soon&sig=x",
            None,
            None,
            &[],
        )
        .await;
    assert_problem(&chunk, StatusCode::FORBIDDEN, "invalid_signature");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_replaces_the_first_without_leaving_it_behind() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let id = svc.register(&t, "twice.txt", 5).await;
    let content = format!("/v1/files/{id}/content");
    assert_eq!(
        svc.put(&content, &t, b"aaaaa".to_vec()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        svc.put(&content, &t, b"bbbbb".to_vec()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        svc.raw_objects(&id).len(),
        1,
        "the superseded attempt is removed"
    );
    assert_problem(
        &svc.finalize(&t, &id, b"aaaaa").await,
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
    );
    assert_eq!(svc.finalize(&t, &id, b"bbbbb").await.status, StatusCode::OK);
    assert_eq!(svc.settle(&t, &id).await, "ready");
    assert_eq!(svc.content(&t, &id).await.body, b"bbbbb");
    assert!(
        svc.raw_objects(&id).is_empty(),
        "processed files keep no raw copy"
    );
    svc.stop().await;
}
