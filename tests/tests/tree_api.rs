//! The tree over HTTP: revisions with 409s, listings, moves, trash, versions and the change
//! feed with long-poll, as a sync client uses them.
use std::time::{Duration, Instant};

use filestore_tests::{Api, Service, sha256_hex};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Registers `bytes` at `path` against `parent_rev`, sends and finalizes them; the reply is
/// the finalize's (or the registration's, when that is refused).
async fn write(api: &Api, token: &str, path: &str, bytes: &[u8], parent_rev: Value) -> Value {
    let body = json!({"path": path, "size": bytes.len(), "parentRev": parent_rev});
    let reg = api.post_json("/v1/file", token, &body).await;
    if reg.status != StatusCode::CREATED {
        return json!({"status": reg.status.as_u16(), "code": reg.code()});
    }
    let id = reg.json()["fileId"].as_str().unwrap().to_owned();
    let put = api
        .put(&format!("/v1/files/{id}/content"), token, bytes.to_vec())
        .await;
    assert_eq!(put.status, StatusCode::OK);
    let fin = api.finalize(token, &id, bytes).await;
    let mut answer = fin.json();
    answer["status"] = json!(fin.status.as_u16());
    if fin.status != StatusCode::OK {
        answer["code"] = json!(fin.code());
    }
    answer["fileId"] = json!(id);
    answer
}

async fn paths(api: &Api, token: &str, route: &str) -> Vec<String> {
    let r = api.get(route, token).await;
    assert_eq!(r.status, StatusCode::OK, "{route}: {:?}", r.json());
    r.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_name_the_revision_they_change_and_stale_ones_get_409() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let created = write(&svc, &t, "notes.txt", b"v1", json!(0)).await;
    assert_eq!(created["status"], 200);
    let rev = created["rev"]
        .as_i64()
        .expect("finalize reports the revision");
    let again = write(&svc, &t, "notes.txt", b"v1 again", json!(0)).await;
    assert_eq!(
        (again["status"].as_u64(), again["code"].as_str()),
        (Some(409), Some("rev_conflict")),
        "refused at registration, before any bytes are sent"
    );
    let edit = write(&svc, &t, "notes.txt", b"v2", json!(rev)).await;
    assert_eq!(edit["status"], 200);

    // Two clients edit the same revision: both registered, only the first finalize wins.
    let head = edit["rev"].as_i64().unwrap();
    let reg = |bytes: &'static [u8]| {
        let svc = svc.api.clone();
        let t = t.clone();
        async move {
            let body = json!({"path": "notes.txt", "size": bytes.len(), "parentRev": head});
            let r = svc.post_json("/v1/file", &t, &body).await;
            let id = r.json()["fileId"].as_str().unwrap().to_owned();
            svc.put(&format!("/v1/files/{id}/content"), &t, bytes.to_vec())
                .await;
            (id, bytes)
        }
    };
    let (a, a_bytes) = reg(b"laptop edit").await;
    let (b, b_bytes) = reg(b"phone edit").await;
    assert_eq!(svc.finalize(&t, &a, a_bytes).await.status, StatusCode::OK);
    let lost = svc.finalize(&t, &b, b_bytes).await;
    assert_eq!(
        (lost.status, lost.code()),
        (StatusCode::CONFLICT, "rev_conflict".into())
    );
    assert!(lost.is_problem());
    assert_eq!(
        svc.status(&t, &b).await,
        "uploading",
        "nothing half-committed"
    );

    let bad = svc
        .post_json(
            "/v1/file",
            &t,
            &json!({"path": "x", "size": 1, "parentRev": -3}),
        )
        .await;
    assert_eq!(bad.code(), "invalid_parent_rev");
    let versions = svc.get("/v1/versions?path=notes.txt", &t).await.json();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_lists_moves_trashes_and_restores_without_reuploading() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    for (p, body) in [
        ("docs/a.txt", "a"),
        ("docs/b.txt", "b"),
        ("docs/deep/c.txt", "c"),
    ] {
        let id = svc.upload(&t, p, body.as_bytes()).await;
        assert_eq!(svc.settle(&t, &id).await, "ready");
    }
    svc.upload(&t, "top.txt", b"top").await;
    let page = svc.get("/v1/tree?prefix=docs/&limit=2", &t).await.json();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    assert_eq!(page["nextAfter"], "docs/b.txt");
    let rest = paths(&svc, &t, "/v1/tree?prefix=docs/&limit=2&after=docs/b.txt").await;
    assert_eq!(rest, ["docs/deep/c.txt"]);

    let moved = svc
        .post_json(
            "/v1/tree/move",
            &t,
            &json!({"from": "docs", "to": "papers"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.json());
    assert_eq!(moved.json()["changes"].as_array().unwrap().len(), 3);
    let listed = paths(&svc, &t, "/v1/tree?prefix=papers/").await;
    assert_eq!(
        listed,
        ["papers/a.txt", "papers/b.txt", "papers/deep/c.txt"]
    );
    let entry = svc.get("/v1/entry?path=papers/a.txt", &t).await.json();
    let content = svc.content(&t, entry["fileId"].as_str().unwrap()).await;
    assert_eq!(
        content.body, b"a",
        "a moved file is the same content, not a new upload"
    );

    let taken = svc
        .post_json(
            "/v1/tree/move",
            &t,
            &json!({"from": "top.txt", "to": "papers/a.txt"}),
        )
        .await;
    assert_eq!(
        (taken.status, taken.code()),
        (StatusCode::CONFLICT, "destination_exists".into())
    );
    let itself = svc
        .post_json(
            "/v1/tree/move",
            &t,
            &json!({"from": "papers", "to": "papers/x"}),
        )
        .await;
    assert_eq!(itself.code(), "invalid_move");

    let del = svc
        .post_json("/v1/tree/delete", &t, &json!({"path": "papers/deep"}))
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(paths(&svc, &t, "/v1/trash").await, ["papers/deep/c.txt"]);
    let restored = svc
        .post_json(
            "/v1/trash/restore",
            &t,
            &json!({"path": "papers/deep/c.txt"}),
        )
        .await;
    assert_eq!(restored.json()["changes"][0]["kind"], "create");
    svc.post_json("/v1/tree/delete", &t, &json!({"path": "papers/b.txt"}))
        .await;
    let purged = svc
        .post_json("/v1/trash/purge", &t, &json!({"path": "papers/b.txt"}))
        .await;
    assert_eq!(purged.json()["purged"], 1);
    assert!(paths(&svc, &t, "/v1/trash").await.is_empty());
    let missing = svc
        .post_json("/v1/trash/restore", &t, &json!({"path": "papers/b.txt"}))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );

    // Nobody else sees any of it.
    let bob = svc.token("bob");
    assert!(paths(&svc, &bob, "/v1/tree").await.is_empty());
    let foreign = svc.get("/v1/versions?path=papers/a.txt", &bob).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_version_becomes_the_head_again() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    svc.upload_ready(&t, "essay.md", b"first draft").await;
    svc.upload_ready(&t, "essay.md", b"ruined").await;
    let versions = svc.get("/v1/versions?path=essay.md", &t).await.json();
    let first = versions["versions"][1]["rev"].as_i64().unwrap();
    let restored = svc
        .post_json(
            "/v1/versions/restore",
            &t,
            &json!({"path": "essay.md", "rev": first}),
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{:?}", restored.json());
    let head = svc.get("/v1/entry?path=essay.md", &t).await.json();
    assert_eq!(head["sha256"], sha256_hex(b"first draft"));
    assert!(head["rev"].as_i64().unwrap() > first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_long_polls_and_reports_every_kind_of_change() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let start = svc.get("/v1/tree", &t).await.json()["cursor"]
        .as_i64()
        .unwrap();
    assert_eq!(start, 0);

    // A long-poll waits for the change instead of answering empty at once.
    let waiting = {
        let api = svc.api.clone();
        let t = t.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let r = api.get("/v1/changes?cursor=0&timeout=30", &t).await;
            (r.json(), began.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the long-poll waits for a change");
    svc.upload(&t, "a.txt", b"a").await;
    let (woken, _) = waiting.await.unwrap();
    assert_eq!(woken["changes"][0]["kind"], "create");
    assert_eq!(woken["changes"][0]["path"], "a.txt");
    let cursor = woken["cursor"].as_i64().unwrap();

    svc.upload(&t, "a.txt", b"a2").await;
    svc.post_json(
        "/v1/tree/move",
        &t,
        &json!({"from": "a.txt", "to": "b.txt"}),
    )
    .await;
    svc.post_json("/v1/tree/delete", &t, &json!({"path": "b.txt"}))
        .await;
    let feed = svc
        .get(&format!("/v1/changes?cursor={cursor}&limit=2"), &t)
        .await
        .json();
    let kinds: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["update", "move"]);
    assert_eq!(feed["changes"][1]["fromPath"], "a.txt");
    assert_eq!(feed["hasMore"], true);
    let rest = svc
        .get(&format!("/v1/changes?cursor={}", feed["cursor"]), &t)
        .await
        .json();
    assert_eq!(rest["changes"][0]["kind"], "delete");
    assert_eq!(rest["hasMore"], false);

    // Nothing new: a short timeout answers empty, with the same cursor.
    let idle = svc
        .get(
            &format!("/v1/changes?cursor={}&timeout=1", rest["cursor"]),
            &t,
        )
        .await
        .json();
    assert_eq!(idle["changes"].as_array().unwrap().len(), 0);
    assert_eq!(idle["cursor"], rest["cursor"]);
    let bad = svc.get("/v1/changes?cursor=-1", &t).await;
    assert_eq!(bad.code(), "invalid_cursor");
    let bad = svc.get("/v1/changes?limit=0", &t).await;
    assert_eq!(bad.code(), "invalid_limit");
}

/// DESIGN invariant 8 over HTTP: names that macOS or Windows would take for one are one file,
/// names Windows cannot hold are refused, and a rename of the case alone works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_is_one_file_as_macos_and_windows_see_it() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let first = write(&svc, &t, "norm/caf\u{e9}.txt", b"nfc", json!(0)).await;
    assert_eq!(first["status"], 200);
    let nfd = write(&svc, &t, "norm/cafe\u{301}.txt", b"nfd", json!(0)).await;
    assert_eq!(
        (nfd["status"].as_u64(), nfd["code"].as_str()),
        (Some(409), Some("rev_conflict"))
    );
    let readme = write(&svc, &t, "Readme.txt", b"first", json!(0)).await;
    assert_eq!(readme["status"], 200);
    let shadow = write(&svc, &t, "README.txt", b"second", json!(0)).await;
    assert_eq!(shadow["status"], 409, "{shadow}");
    let other_folder = write(&svc, &t, "NORM/other.txt", b"x", json!(0)).await;
    assert_eq!(other_folder["status"], 200);
    assert_eq!(
        paths(&svc, &t, "/v1/tree").await,
        ["Readme.txt", "norm/caf\u{e9}.txt", "norm/other.txt"],
        "one spelling each, the first, and one folder"
    );
    // Decomposed input is answered in NFC, by any spelling.
    let entry = svc.get("/v1/entry?path=NORM/CAFE%CC%81.TXT", &t).await;
    assert_eq!(entry.json()["path"], "norm/caf\u{e9}.txt");

    let moved = svc
        .post_json(
            "/v1/tree/move",
            &t,
            &json!({"from": "readme.txt", "to": "README.txt"}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{:?}", moved.json());
    assert!(
        paths(&svc, &t, "/v1/tree")
            .await
            .contains(&"README.txt".to_owned())
    );

    for bad in [
        "CON",
        "docs/nul.txt",
        "a:b.txt",
        "what?.txt",
        "trailing.",
        "trailing ",
    ] {
        let r = svc
            .post_json("/v1/file", &t, &json!({"path": bad, "size": 1}))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_name".to_owned()),
            "{bad:?}"
        );
    }
}
