//! Who may call what: tokens are checked strictly, and other users' files do not exist.
use filestore_adapters::clock::now_secs;
use filestore_tests::Service;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn claims(sub: &str, aud: &str, iss: &str, exp: i64, nbf: i64) -> Value {
    let now = now_secs() as i64;
    json!({"sub": sub, "aud": aud, "iss": iss, "exp": now + exp, "nbf": now + nbf, "iat": now})
}

fn hs256(secret: &str, c: &Value) -> String {
    encode(
        &Header::default(),
        c,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_a_problem_body() {
    let svc = Service::start().await;
    let secret = svc.running.as_ref().unwrap().jwt_secret.clone();
    let good = claims("alice", "filestore", "filestore", 600, -10);
    let cases = [
        (
            "expired",
            hs256(
                &secret,
                &claims("alice", "filestore", "filestore", -3600, -7200),
            ),
        ),
        (
            "not yet valid",
            hs256(
                &secret,
                &claims("alice", "filestore", "filestore", 7200, 3600),
            ),
        ),
        ("wrongly signed", hs256("not-the-secret", &good)),
        (
            "another audience",
            hs256(
                &secret,
                &claims("alice", "other-app", "filestore", 600, -10),
            ),
        ),
        (
            "another issuer",
            hs256(
                &secret,
                &claims("alice", "filestore", "someone-else", 600, -10),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        (
            "bad subject",
            hs256(
                &secret,
                &claims("../root", "filestore", "filestore", 600, -10),
            ),
        ),
    ];
    for (what, token) in &cases {
        let r = svc.get("/v1/usage", token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(r.code(), "invalid_token", "{what}");
        assert!(r.is_problem(), "{what}");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    let mut listed = good.clone();
    listed["aud"] = json!(["another-app", "filestore"]);
    assert_eq!(
        svc.get("/v1/usage", &hs256(&secret, &listed)).await.status,
        StatusCode::OK,
        "aud may be an array"
    );
    let missing = svc.call(Method::GET, "/v1/usage", None, None, &[]).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
    let basic = svc
        .call(
            Method::GET,
            "/v1/usage",
            None,
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        svc.get("/v1/usage", &hs256(&secret, &good)).await.status,
        StatusCode::OK
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_file_is_answered_like_a_missing_one_on_every_route() {
    let svc = Service::start().await;
    let (alice, bob) = (svc.token("alice"), svc.token("bob"));
    let id = svc.upload_ready(&alice, "secret.txt", b"alice only").await;
    let pending = svc.register(&alice, "pending.txt", 3).await;
    let missing = filestore_domain::FileId::new().to_string();
    for target in [&id, &pending] {
        let routes: Vec<(Method, String, Option<Vec<u8>>)> = vec![
            (Method::GET, format!("/v1/files/{target}/metadata"), None),
            (Method::GET, format!("/v1/file/{target}"), None),
            (Method::GET, format!("/v1/files/{target}/content"), None),
            (
                Method::PUT,
                format!("/v1/files/{target}/content"),
                Some(b"abc".to_vec()),
            ),
            (
                Method::POST,
                format!("/v1/files/{target}/finalize"),
                Some(
                    serde_json::to_vec(
                        &json!({"checksum": format!("sha256-{}", "0".repeat(64)), "size": 3}),
                    )
                    .unwrap(),
                ),
            ),
        ];
        for (method, path, body) in routes {
            let foreign = svc
                .call(
                    method.clone(),
                    &path,
                    Some(&bob),
                    body.clone(),
                    &[("content-type", "application/json")],
                )
                .await;
            let absent_path = path.replace(target.as_str(), &missing);
            let absent = svc
                .call(
                    method.clone(),
                    &absent_path,
                    Some(&bob),
                    body,
                    &[("content-type", "application/json")],
                )
                .await;
            assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(
                foreign.body, absent.body,
                "{method} {path}: foreign and missing must look alike"
            );
        }
    }
    // Bob's attempts changed nothing for Alice.
    assert_eq!(svc.status(&alice, &pending).await, "uploading");
    assert_eq!(svc.content(&alice, &id).await.body, b"alice only");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_chunk_urls_expire_and_cannot_be_forged() {
    let svc = Service::builder()
        .api(|a| a.signed_url_ttl = 1)
        .start()
        .await;
    let t = svc.token("alice");
    let id = svc
        .upload_ready(&t, "c.bin", &filestore_tests::noise(100_000, 9))
        .await;
    let d = svc.get(&format!("/v1/file/{id}"), &t).await.json();
    let url = d["chunks"][0]["url"].as_str().unwrap().to_owned();
    let forged = format!("{}0", url);
    let r = svc.call(Method::GET, &forged, None, None, &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "invalid_signature".into())
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = svc.call(Method::GET, &url, None, None, &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "url_expired".into())
    );
    svc.stop().await;
}

const ES256_PRIVATE: &str = include_str!("../fixtures/es256-private.pem");
const JWKS: &str = include_str!("../fixtures/jwks.json");

fn es256(kid: Option<&str>, c: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        c,
        &EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_with_a_pem_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("pub.pem");
    std::fs::write(&pem, include_str!("../fixtures/es256-public.pem")).unwrap();
    let svc = Service::builder()
        .api(|a| a.jwt_public_key = Some(pem))
        .start()
        .await;
    let good = es256(None, &claims("carol", "filestore", "filestore", 600, -10));
    assert_eq!(svc.get("/v1/usage", &good).await.status, StatusCode::OK);
    let hs = svc.token("carol");
    assert_eq!(
        svc.get("/v1/usage", &hs).await.code(),
        "invalid_token",
        "HS256 is refused when a public key is set"
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_with_keys_from_a_jwks_url() {
    // Some identity providers leave `alg` out of their keys; the key type implies it.
    let without_alg = JWKS.replace("\"alg\": \"ES256\",", "").to_owned();
    assert_ne!(without_alg, JWKS);
    let app = axum::Router::new()
        .route(
            "/jwks.json",
            axum::routing::get(|| async { ([("content-type", "application/json")], JWKS) }),
        )
        .route(
            "/no-alg.json",
            axum::routing::get(move || {
                let body = without_alg.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let svc = Service::builder()
        .api(|a| a.jwks_url = Some(format!("http://{addr}/jwks.json")))
        .start()
        .await;
    let c = claims("dave", "filestore", "filestore", 600, -10);
    assert_eq!(
        svc.get("/v1/usage", &es256(Some("test-es256"), &c))
            .await
            .status,
        StatusCode::OK
    );
    let unknown = svc.get("/v1/usage", &es256(Some("other-kid"), &c)).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    let no_kid = svc.get("/v1/usage", &es256(None, &c)).await;
    assert_eq!(no_kid.status, StatusCode::UNAUTHORIZED);
    svc.stop().await;
    let svc = Service::builder()
        .api(|a| a.jwks_url = Some(format!("http://{addr}/no-alg.json")))
        .start()
        .await;
    assert_eq!(
        svc.get("/v1/usage", &es256(Some("test-es256"), &c))
            .await
            .status,
        StatusCode::OK
    );
    svc.stop().await;
}
