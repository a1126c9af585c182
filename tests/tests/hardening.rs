//! What a hostile client found (issue 15), each answered: slow clients are cut off, one
//! client address cannot take every connection, a small request cannot make the server store
//! more than the user's budget, trashed files are gone by id, signed chunk URLs are not
//! cached past their validity and need their signature, metrics are off the public listener,
//! and bodies past a route's limit get a problem document.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use filestore_domain::bundle::{self, BundleItem};
use filestore_tests::{Api, Reply, Service, noise, sha256_hex};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn assert_problem(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "expected {code}, got {:?}", r.json());
    assert_eq!(r.code(), code);
    assert!(r.is_problem(), "{code} must be application/problem+json");
}

/// Short timeouts so a test sees them end: 2 s for headers, for an idle keep-alive
/// connection, and as the body window (in which 200 bytes must arrive).
fn short_timeouts(svc: filestore_tests::ServiceBuilder) -> filestore_tests::ServiceBuilder {
    svc.api(|a| {
        a.limits.header_read_timeout = 2;
        a.limits.keep_alive_timeout = 2;
        a.limits.body_idle_timeout = 2;
        a.limits.body_min_rate = 100;
        a.limits.max_connections_per_ip = 50;
    })
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// How a raw connection ended: when the server closed it (if it did within `cap`), and what
/// it sent back.
struct Ended {
    closed_after: Option<Duration>,
    response: Vec<u8>,
}

impl Ended {
    fn response_text(&self) -> String {
        String::from_utf8_lossy(&self.response).into_owned()
    }
}

/// Sends `head` at once, then `trickle` one byte a second, reading whatever comes back until
/// the server closes the connection or `cap` passes.
async fn trickle(mut stream: TcpStream, head: Vec<u8>, trickle: Vec<u8>, cap: Duration) -> Ended {
    let started = Instant::now();
    let mut response = Vec::new();
    if stream.write_all(&head).await.is_err() {
        return Ended {
            closed_after: Some(started.elapsed()),
            response,
        };
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next = trickle.into_iter();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    return Ended { closed_after: Some(started.elapsed()), response };
                }
                Ok(n) => response.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                if let Some(b) = next.next()
                    && stream.write_all(&[b]).await.is_err()
                {
                    return Ended { closed_after: Some(started.elapsed()), response };
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                return Ended { closed_after: None, response };
            }
        }
    }
}

async fn connect_from(local: IpAddr, server: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((local, 0).into()).unwrap();
    socket.connect(server.parse().unwrap()).await.unwrap()
}

fn slow_headers(host: &str) -> (Vec<u8>, Vec<u8>) {
    let head = format!("GET /v1/usage HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").into_bytes();
    (head, vec![b'a'; 60])
}

fn slow_body(host: &str, token: &str, id: &str, size: usize) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "PUT /v1/files/{id}/content HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Length: {size}\r\n\r\n"
    )
    .into_bytes();
    (head, vec![b'x'; size])
}

fn temp_files(svc: &Service) -> Vec<std::path::PathBuf> {
    filestore_tests::files_under(&svc.objects_dir().join(".tmp"))
}

/// Finding 3: 50 connections trickling headers or bodies a byte a second are all closed
/// within the configured timeouts, the 51st from the same address is refused, and a client
/// at another address is served promptly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_clients_are_cut_off_while_others_are_served() {
    let svc = short_timeouts(Service::builder()).start().await;
    let t = svc.token("alice");
    let host = host_port(&svc.base);
    // Everything but the trickling comes from another address, so that it neither takes
    // one of 127.0.0.1's 50 connections nor is refused for them.
    let other = Api {
        base: svc.base.clone(),
        http: reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
            .build()
            .unwrap(),
    };
    let mut stalled_ids = Vec::new();
    for i in 0..25 {
        stalled_ids.push(other.register(&t, &format!("slow/{i}.bin"), 1000).await);
    }
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let cap = Duration::from_secs(20);
    let mut tricklers = Vec::new();
    for i in 0..50 {
        let stream = connect_from(here, &host).await;
        let (head, rest) = if i % 2 == 0 {
            slow_headers(&host)
        } else {
            slow_body(&host, &t, &stalled_ids[i / 2], 1000)
        };
        tricklers.push((i % 2 == 1, tokio::spawn(trickle(stream, head, rest, cap))));
    }

    // One connection past the per-address bound is closed without an answer.
    let extra = connect_from(here, &host).await;
    let refused = trickle(extra, Vec::new(), Vec::new(), Duration::from_secs(5)).await;
    assert!(
        refused.closed_after.is_some(),
        "the 51st connection from one address must be refused"
    );
    assert!(refused.response.is_empty(), "{}", refused.response_text());

    // Another client is served meanwhile.
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        let started = Instant::now();
        assert_eq!(other.get("/v1/usage", &t).await.status, StatusCode::OK);
        let bytes = noise(100_000, round);
        other.upload(&t, &format!("fast/{round}.bin"), &bytes).await;
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("slowest normal round trip while 50 connections trickled: {slowest:?}");
    assert!(slowest < Duration::from_secs(10), "{slowest:?}");

    let mut last = Duration::ZERO;
    for (body, handle) in tricklers {
        let ended = handle.await.unwrap();
        let after = ended
            .closed_after
            .unwrap_or_else(|| panic!("a trickling connection is still open after {cap:?}"));
        last = last.max(after);
        if body {
            let text = ended.response_text();
            assert!(text.starts_with("HTTP/1.1 408"), "{text}");
            assert!(text.contains("request_timeout"), "{text}");
            assert!(text.contains("application/problem+json"), "{text}");
        }
    }
    eprintln!("the last trickling connection was closed after {last:?} (timeouts: 2 s)");
    assert!(last < Duration::from_secs(12), "{last:?}");

    // The stalled uploads left their files waiting for content, and nothing on disk.
    for id in &stalled_ids {
        assert_eq!(svc.status(&t, id).await, "uploading");
        assert!(svc.raw_objects(id).is_empty());
    }
    assert_eq!(temp_files(&svc), Vec::<std::path::PathBuf>::new());
    // The address has its connections back.
    assert_eq!(svc.get("/v1/usage", &t).await.status, StatusCode::OK);
    svc.stop().await;
}

/// Finding 3: a stalled upload is answered 408 `request_timeout`; the file still takes its
/// content, no temporary file is left, and the next attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_answered_408_and_the_file_stays_uploading() {
    let svc = short_timeouts(Service::builder()).start().await;
    let t = svc.token("alice");
    let host = host_port(&svc.base);
    let bytes = noise(100_000, 1);
    let id = svc.register(&t, "stalled.bin", bytes.len()).await;
    let mut head = format!(
        "PUT /v1/files/{id}/content HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\nContent-Length: {}\r\n\r\n",
        bytes.len()
    )
    .into_bytes();
    head.extend_from_slice(&bytes[..10_000]);
    let stream = TcpStream::connect(&host).await.unwrap();
    let ended = trickle(stream, head, Vec::new(), Duration::from_secs(20)).await;
    let text = ended.response_text();
    assert!(ended.closed_after.is_some(), "the connection is closed");
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert_eq!(svc.status(&t, &id).await, "uploading");
    assert!(svc.raw_objects(&id).is_empty());
    assert_eq!(temp_files(&svc), Vec::<std::path::PathBuf>::new());

    let put = svc
        .put(&format!("/v1/files/{id}/content"), &t, bytes.clone())
        .await;
    assert_eq!(put.status, StatusCode::OK, "{:?}", put.json());
    assert_eq!(svc.finalize(&t, &id, &bytes).await.status, StatusCode::OK);
    svc.stop().await;
}

/// Finding 3: past the global bound, a connection waits (unaccepted) until one ends; then it
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_global_bound_wait_for_a_free_one() {
    let svc = short_timeouts(Service::builder())
        .api(|a| a.limits.max_connections = 3)
        .start()
        .await;
    let host = host_port(&svc.base);
    let mut silent = Vec::new();
    for _ in 0..3 {
        let s = TcpStream::connect(&host).await.unwrap();
        silent.push(tokio::spawn(trickle(
            s,
            Vec::new(),
            Vec::new(),
            Duration::from_secs(20),
        )));
    }
    let started = Instant::now();
    let waiting = TcpStream::connect(&host).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let served = trickle(
        waiting,
        request.into_bytes(),
        Vec::new(),
        Duration::from_secs(20),
    )
    .await;
    let waited = started.elapsed();
    assert!(
        served.response_text().starts_with("HTTP/1.1 200"),
        "{}",
        served.response_text()
    );
    // Served only once a silent connection had used up its 2 s for headers.
    assert!(waited >= Duration::from_secs(1), "served after {waited:?}");
    for s in silent {
        assert!(s.await.unwrap().closed_after.is_some());
    }
    svc.stop().await;
}

/// A download the client stops reading does not hold its connection (and the chunks in
/// flight) forever: once nothing could be sent for the body window, the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_no_one_reads_is_abandoned() {
    let svc = short_timeouts(Service::builder()).start().await;
    let t = svc.token("alice");
    let host = host_port(&svc.base);
    let size = 16 * 1024 * 1024;
    let id = svc.upload_ready(&t, "big.bin", &noise(size, 5)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(host.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /v1/files/{id}/content HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {t}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read nothing for well past the 2 s window, then take whatever is still coming.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection is still open");
    assert!(
        got < size,
        "all {got} bytes came: the stalled response went on"
    );
    svc.stop().await;
}

/// Finding 3: a keep-alive connection left idle is closed after the keep-alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let svc = short_timeouts(Service::builder()).start().await;
    let host = host_port(&svc.base);
    let stream = TcpStream::connect(&host).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
    let ended = trickle(stream, request, Vec::new(), Duration::from_secs(15)).await;
    assert!(ended.response_text().starts_with("HTTP/1.1 200"));
    let after = ended.closed_after.expect("an idle connection is closed");
    assert!(after < Duration::from_secs(12), "{after:?}");
    svc.stop().await;
}

/// Finding 4, the zstd shape (33 KB that decode to 1 GiB for a 1 GiB registration), scaled
/// down: what a user may have registered and not finalized is bounded, so a tiny compressed
/// body can make the server store at most that budget; a body that decodes past its declared
/// size stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_compressed_body_cannot_make_the_server_store_past_the_budget() {
    const MIB: usize = 1024 * 1024;
    let svc = Service::builder()
        .api(|a| a.max_pending_upload_bytes = 4 * MIB as u64)
        .start()
        .await;
    let t = svc.token("mallory");
    let zeros = vec![0u8; 3 * MIB];
    let bomb = zstd::bulk::compress(&zeros, 19).unwrap();
    assert!(bomb.len() < 1024, "{} bytes", bomb.len());
    let id = svc.register(&t, "bomb.bin", zeros.len()).await;

    // A second registration past the budget is refused before a byte is sent.
    let r = svc
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "bomb2.bin", "size": 3 * MIB}),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::INSUFFICIENT_STORAGE,
        "upload_budget_exceeded",
    );
    let batch = svc
        .post_json(
            "/v1/files",
            &t,
            &json!({"files": [{"path": "small.bin", "size": MIB}, {"path": "big.bin", "size": 2 * MIB}]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    let results = batch.json()["results"].clone();
    assert!(results[0]["fileId"].is_string(), "{results}");
    assert_eq!(results[1]["error"]["code"], "upload_budget_exceeded");
    assert_eq!(results[1]["error"]["status"], 507);

    // A body that decodes past the declared size is refused and leaves nothing.
    let past = zstd::bulk::compress(&vec![0u8; 3 * MIB + 1], 19).unwrap();
    let r = svc
        .call(
            Method::PUT,
            &format!("/v1/files/{id}/content"),
            Some(&t),
            Some(past),
            &[("content-encoding", "zstd")],
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    assert!(svc.raw_objects(&id).is_empty());
    assert_eq!(temp_files(&svc), Vec::<std::path::PathBuf>::new());

    // Other users have budgets of their own.
    let other = svc.token("bob");
    svc.register(&other, "fine.bin", 3 * MIB).await;

    // Finalizing frees the budget.
    let r = svc
        .call(
            Method::PUT,
            &format!("/v1/files/{id}/content"),
            Some(&t),
            Some(bomb),
            &[("content-encoding", "zstd")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(svc.finalize(&t, &id, &zeros).await.status, StatusCode::OK);
    svc.register(&t, "after.bin", 3 * MIB).await;
    svc.stop().await;
}

/// Finding 4, the assembly shape (one 600 KB chunk named 1,000 times in a 98 KB request),
/// scaled down: the registration that would take it is over the budget, and an assembly
/// naming more chunks than allowed, or chunks that add up past the registered size, is
/// refused before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assembly_cannot_make_the_server_write_more_than_was_registered_and_budgeted() {
    const KIB: usize = 1024;
    let svc = Service::builder()
        .api(|a| {
            a.max_pending_upload_bytes = 4 * 1024 * KIB as u64;
            a.max_assemble_chunks = 100;
        })
        .start()
        .await;
    let t = svc.token("mallory");
    let chunk = noise(60 * KIB, 7);
    let sha = sha256_hex(&chunk);
    let put = svc
        .put(&format!("/v1/chunks/{sha}/content"), &t, chunk.clone())
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{:?}", put.json());
    let one_ref = json!({"sha256": sha, "length": chunk.len()});

    // The file the attack needs (the chunk 1,000 times) is over the budget.
    let r = svc
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "amplified.bin", "size": 1000 * chunk.len()}),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::INSUFFICIENT_STORAGE,
        "upload_budget_exceeded",
    );

    // Within the budget, naming the chunk more often than the registration holds, or more
    // often than an assembly may, is refused before a byte is written.
    let id = svc.register(&t, "ten.bin", 10 * chunk.len()).await;
    let too_many = json!({"chunks": vec![one_ref.clone(); 101]});
    let r = svc
        .post_json(&format!("/v1/files/{id}/assemble"), &t, &too_many)
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_many_chunks");
    let past_size = json!({"chunks": vec![one_ref.clone(); 50]});
    let r = svc
        .post_json(&format!("/v1/files/{id}/assemble"), &t, &past_size)
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "size_mismatch");
    let oversized_ref = json!({"chunks": [{"sha256": sha, "length": 10 * chunk.len()}]});
    let r = svc
        .post_json(&format!("/v1/files/{id}/assemble"), &t, &oversized_ref)
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "invalid_chunk_length");
    assert!(svc.raw_objects(&id).is_empty());
    assert_eq!(svc.status(&t, &id).await, "uploading");

    // The honest assembly still works.
    let exact = json!({"chunks": vec![one_ref; 10]});
    let r = svc
        .post_json(&format!("/v1/files/{id}/assemble"), &t, &exact)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    svc.stop().await;
}

async fn by_id_routes(svc: &Service, t: &str, id: &str) -> Vec<Reply> {
    vec![
        svc.get(&format!("/v1/file/{id}"), t).await,
        svc.get(&format!("/v1/files/{id}/metadata"), t).await,
        svc.content(t, id).await,
    ]
}

/// Finding 6: a trashed file is answered by id exactly like a missing one, whether it is
/// its path's head, was moved before it went to trash, or is an older version of a trashed
/// path; the trash and versions routes still reach it, and a restore brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trashed_file_answers_by_id_like_a_missing_one() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let old = svc.upload_ready(&t, "docs/a.txt", b"first").await;
    let head = svc.upload_ready(&t, "docs/a.txt", b"second").await;
    let moved = svc.upload_ready(&t, "m/before.txt", b"moved").await;
    let r = svc
        .post_json(
            "/v1/tree/move",
            &t,
            &json!({"from": "m/before.txt", "to": "m/after.txt"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    let missing = by_id_routes(&svc, &t, "0190c5d3-0000-7000-8000-000000000000").await;
    for path in ["docs/a.txt", "m/after.txt"] {
        let r = svc
            .post_json("/v1/tree/delete", &t, &json!({"path": path}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    }

    for id in [&old, &head, &moved] {
        for (got, absent) in by_id_routes(&svc, &t, id).await.iter().zip(&missing) {
            assert_problem(got, StatusCode::NOT_FOUND, "not_found");
            assert_eq!(got.body, absent.body, "a trashed file must look missing");
        }
        let batch = svc.get(&format!("/v1/files?id={id}"), &t).await;
        assert_eq!(batch.json()["files"][0]["error"]["code"], "not_found");
    }
    let trash = svc.get("/v1/trash", &t).await;
    assert_eq!(trash.status, StatusCode::OK);
    let listed = trash.body.clone();
    assert!(String::from_utf8_lossy(&listed).contains("docs/a.txt"));
    let versions = svc.get("/v1/versions?path=docs/a.txt", &t).await;
    assert_eq!(versions.status, StatusCode::OK, "{:?}", versions.json());

    let r = svc
        .post_json("/v1/trash/restore", &t, &json!({"path": "docs/a.txt"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert_eq!(svc.content(&t, &head).await.body, b"second");
    assert_eq!(
        svc.content(&t, &old).await.body,
        b"first",
        "an older version is live again"
    );
    svc.stop().await;
}

/// Finding 6: a signed chunk URL may be cached only privately and only while it is valid,
/// and one without (or with a malformed) signature gets a stable code, not a parser message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_chunk_urls_are_cached_no_longer_than_valid_and_need_their_signature() {
    let svc = Service::builder()
        .api(|a| a.signed_url_ttl = 600)
        .start()
        .await;
    let t = svc.token("alice");
    let id = svc.upload_ready(&t, "c.bin", &noise(100_000, 3)).await;
    let d = svc.get(&format!("/v1/file/{id}"), &t).await.json();
    let url = d["chunks"][0]["url"].as_str().unwrap().to_owned();
    let r = svc.call(Method::GET, &url, None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let cache = r.headers["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.starts_with("private, max-age="), "{cache}");
    assert!(
        !cache.contains("public") && !cache.contains("immutable"),
        "{cache}"
    );
    let max_age: u64 = cache
        .trim_start_matches("private, max-age=")
        .parse()
        .unwrap();
    assert!(max_age <= 600, "{cache}");

    let bare = url.split('?').next().unwrap().to_owned();
    let r = svc.call(Method::GET, &bare, None, None, &[]).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "missing_signature");
    let r = svc
        .call(Method::GET, &format!("{bare}?sig=00"), None, None, &[])
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "missing_signature");
    let r = svc
        .call(
            Method::GET,
            &format!("{bare}?exp=soon&sig=00"),
            None,
            None,
            &[],
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "invalid_signature");
    assert!(!String::from_utf8_lossy(&r.body).contains("deserialize"));
    svc.stop().await;
}

/// Finding 6: /metrics is served on its own listener, not on the public one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener_only() {
    let svc = Service::builder()
        .api(|a| a.metrics_listen = Some("127.0.0.1:0".parse().unwrap()))
        .start()
        .await;
    let t = svc.token("alice");
    svc.get("/v1/usage", &t).await;
    let public = svc.call(Method::GET, "/metrics", None, None, &[]).await;
    assert_problem(&public, StatusCode::NOT_FOUND, "no_route");
    let at = svc
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("a metrics listener");
    let scraped = reqwest::get(format!("http://{at}/metrics")).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("filestore_http_requests_total"), "{text}");
    svc.stop().await;
}

/// Finding 6: a JSON body over the limit, and a bundle over its own, get 413 problem
/// documents (they were a 400 and a plain-text 413).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_a_routes_limit_get_413_problems() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let mut huge = br#"{"files": [{"path": "a", "size": 1, "pad": ""#.to_vec();
    huge.resize(17 * 1024 * 1024, b'x');
    huge.extend_from_slice(br#""}]}"#);
    let r = svc
        .call(
            Method::POST,
            "/v1/files",
            Some(&t),
            Some(huge),
            &[("content-type", "application/json")],
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    let big = vec![0u8; 18 * 1024 * 1024];
    let item = BundleItem {
        file_id: "0190c5d3-0000-7000-8000-000000000000".into(),
        size: big.len() as u64,
        sha256: sha256_hex(&big),
    };
    let body = bundle::encode(&[(item, &big[..])]);
    let r = svc
        .call(
            Method::POST,
            "/v1/files/bundle",
            Some(&t),
            Some(body),
            &[("content-type", "application/vnd.filestore.bundle")],
        )
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    svc.stop().await;
}
