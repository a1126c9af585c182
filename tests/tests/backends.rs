//! One contract, two implementations: every port behaves the same on its embedded adapter
//! (SQLite, a local directory, the database-backed queue) and on its production adapter
//! (PostgreSQL, S3, RabbitMQ) against the real servers.
use filestore_domain::tree::Expect;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use filestore_adapters::meta::OutboxMessage;
use filestore_adapters::{
    LocalDirStore, MetadataStore, NewFile, ObjectError, ObjectStore, PostgresOptions,
    PostgresStore, Queue, QueueError, SqliteQueue, SqliteStore, StoreError, UploadRecord,
};
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use filestore_tests::services::{Namespace, Services};
use filestore_tests::{noise, sha256_hex};
use futures::stream;

fn new_file(owner: &str, size: u64) -> NewFile {
    NewFile {
        id: FileId::new(),
        owner: owner.parse().unwrap(),
        path: "docs/a.txt".into(),
        size,
        declared_sha256: None,
        content_type: "text/plain".into(),
        expect: Expect::Any,
    }
}

fn announce(id: &FileId) -> OutboxMessage {
    OutboxMessage {
        routing_key: "file.uploaded".into(),
        payload: id.to_string().into_bytes(),
    }
}

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    (dir, store)
}

async fn namespace(tag: &str) -> Namespace {
    Namespace::create(Services::shared(), tag).await
}

// ---- metadata store ------------------------------------------------------------------------

async fn upload_lifecycle(store: &dyn MetadataStore) {
    let f = new_file("alice", 4);
    store.create_files(std::slice::from_ref(&f)).await.unwrap();
    let got = store.get_file(&f.id).await.unwrap().unwrap();
    assert_eq!(got.status, FileStatus::Uploading);
    assert_eq!(got.uploaded_size, None);

    let sha = sha256_hex(b"data");
    let first = store
        .record_upload(&f.id, "raw/a.1", 4, &sha)
        .await
        .unwrap();
    assert_eq!(
        first,
        UploadRecord::Recorded {
            superseded: Some(f.id.raw_key())
        }
    );
    let second = store
        .record_upload(&f.id, "raw/a.2", 4, &sha)
        .await
        .unwrap();
    assert_eq!(
        second,
        UploadRecord::Recorded {
            superseded: Some("raw/a.1".into())
        }
    );
    // Finalize only accepts what was recorded.
    assert!(matches!(
        store
            .finalize_upload(&f.id, 4, &sha256_hex(b"else"), announce(&f.id))
            .await,
        Err(StoreError::UploadMismatch)
    ));
    let finalized = store
        .finalize_upload(&f.id, 4, &sha, announce(&f.id))
        .await
        .unwrap();
    assert_eq!(finalized.status, FileStatus::Processing);
    // The revision it committed is the path's head now.
    let head = store.entry(&f.owner, &f.path).await.unwrap().unwrap();
    assert_eq!((finalized.rev, head.file_id), (Some(head.rev), f.id));
    // Content is frozen now; the same bytes again are a harmless retry.
    assert_eq!(
        store
            .record_upload(&f.id, "raw/a.3", 4, &sha)
            .await
            .unwrap(),
        UploadRecord::AlreadyHad
    );
    assert!(matches!(
        store
            .record_upload(&f.id, "raw/a.3", 5, &sha256_hex(b"other"))
            .await,
        Err(StoreError::NotUploading)
    ));
    let pending = store.outbox_pending(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].message, announce(&f.id));
    store.outbox_remove(&[pending[0].id]).await.unwrap();
    assert!(store.outbox_pending(10).await.unwrap().is_empty());

    // The state machine guards every event.
    assert!(matches!(
        store.apply_event(&f.id, FileEvent::Finalized, None).await,
        Ok(FileStatus::Processing)
    ));
    assert!(matches!(
        store
            .apply_event(
                &f.id,
                FileEvent::Restored {
                    to: FileStatus::Ready
                },
                None
            )
            .await,
        Err(StoreError::Illegal(_))
    ));
    let failed = store
        .apply_event(&f.id, FileEvent::ProcessingFailed, Some("why"))
        .await
        .unwrap();
    assert_eq!(failed, FileStatus::Failed);
    let got = store.get_file(&f.id).await.unwrap().unwrap();
    assert_eq!(got.status_reason.as_deref(), Some("why"));
    assert!(matches!(
        store
            .apply_event(&FileId::new(), FileEvent::Finalized, None)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

async fn concurrent_finalizes_announce_once(store: Arc<dyn MetadataStore>) {
    let f = new_file("bob", 4);
    store.create_files(std::slice::from_ref(&f)).await.unwrap();
    let sha = sha256_hex(b"data");
    store
        .record_upload(&f.id, "raw/b.1", 4, &sha)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let sha = sha.clone();
            let id = f.id;
            tokio::spawn(async move { store.finalize_upload(&id, 4, &sha, announce(&id)).await })
        })
        .collect();
    let mut committed = 0;
    for t in tasks {
        let finalized = t.await.unwrap().unwrap();
        assert_eq!(finalized.status, FileStatus::Processing);
        committed += usize::from(finalized.rev.is_some());
    }
    assert_eq!(committed, 1, "exactly one finalize committed a revision");
    let mine: Vec<_> = store
        .outbox_pending(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.message == announce(&f.id))
        .collect();
    assert_eq!(mine.len(), 1, "exactly one announcement");
}

async fn manifests_and_usage(store: &dyn MetadataStore) {
    use filestore_domain::messages::ChunkEntry;
    let owner: OwnerId = "carol".parse().unwrap();
    let f = new_file("carol", 300);
    store.create_files(std::slice::from_ref(&f)).await.unwrap();
    let sha = sha256_hex(&[7u8; 300]);
    store
        .record_upload(&f.id, "raw/c", 300, &sha)
        .await
        .unwrap();
    store
        .finalize_upload(&f.id, 300, &sha, announce(&f.id))
        .await
        .unwrap();
    let chunks: Vec<ChunkEntry> = (0..3u32)
        .map(|i| ChunkEntry {
            index: i,
            offset: u64::from(i) * 100,
            length: 100,
            id: format!("{:064x}", i + 1).parse().unwrap(),
            sha256: [i as u8; 32],
            stored_size: 80,
        })
        .collect();
    for c in &chunks {
        // Recording the same chunk twice (a redelivered chunk stage) changes nothing.
        for _ in 0..2 {
            let write = store.begin_chunk_write(&c.id.to_string()).await.unwrap();
            write.record(&owner, 100, 80).await.unwrap();
        }
    }
    let ids: Vec<String> = chunks.iter().map(|c| c.id.to_string()).collect();
    let mut known = store.known_chunks(&owner, &ids).await.unwrap();
    known.sort();
    assert_eq!(known.len(), 3);
    assert!(
        store
            .known_chunks(&"dave".parse().unwrap(), &ids)
            .await
            .unwrap()
            .is_empty(),
        "dedupe never crosses tenants"
    );
    assert_eq!(
        store.index_file(&f.id, &chunks).await.unwrap(),
        FileStatus::Ready
    );
    // Indexing again (a redelivered message) is a no-op.
    assert_eq!(
        store.index_file(&f.id, &chunks).await.unwrap(),
        FileStatus::Ready
    );
    assert_eq!(store.file_chunks(&f.id).await.unwrap(), chunks);
    let usage = store.usage(&owner).await.unwrap();
    assert_eq!((usage.files, usage.logical_bytes), (1, 300));
    assert_eq!((usage.chunks, usage.chunk_stored_bytes), (3, 240));
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let (_dir, store) = sqlite().await;
    upload_lifecycle(&store).await;
    manifests_and_usage(&store).await;
    concurrent_finalizes_announce_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_keeps_the_contract() {
    let ns = namespace("pgcontract").await;
    let store = ns.postgres().await;
    upload_lifecycle(&store).await;
    manifests_and_usage(&store).await;
    concurrent_finalizes_announce_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_idempotent_and_concurrent_starts_are_safe() {
    let ns = namespace("pgmigrate").await;
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = ns.database_url.clone();
            tokio::spawn(async move { PostgresStore::connect(&PostgresOptions::new(url)).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap().ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outbox_relays_never_claim_the_same_rows() {
    let ns = namespace("pgoutbox").await;
    let store = ns.postgres().await;
    for _ in 0..50 {
        let f = new_file("erin", 1);
        store.create_files(std::slice::from_ref(&f)).await.unwrap();
        let sha = sha256_hex(b"x");
        store.record_upload(&f.id, "raw/e", 1, &sha).await.unwrap();
        store
            .finalize_upload(&f.id, 1, &sha, announce(&f.id))
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(store.outbox_pending(30), store.outbox_pending(30));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 50);
    assert!(a.iter().all(|x| b.iter().all(|y| x.id != y.id)));
    // Claimed rows stay invisible to other relays until the claim runs out.
    assert!(store.outbox_pending(30).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_unavailable_not_a_hang() {
    let port = filestore_tests::process::free_port();
    let opts = PostgresOptions {
        acquire_timeout: Duration::from_secs(2),
        ..PostgresOptions::new(format!("postgres://postgres@127.0.0.1:{port}/none"))
    };
    let started = Instant::now();
    let err = PostgresStore::connect(&opts).await.err().unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---- object store --------------------------------------------------------------------------

fn body_of(bytes: &[u8], piece: usize) -> filestore_adapters::objects::ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = bytes
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(pieces))
}

async fn objects_contract(objects: &dyn ObjectStore) {
    // Large enough to span several multipart parts on S3.
    let big = noise(12 * 1024 * 1024 + 17, 1);
    let out = objects
        .put_stream("raw/big", body_of(&big, 100_000), big.len() as u64)
        .await
        .unwrap();
    assert_eq!(out.size, big.len() as u64);
    assert_eq!(out.sha256_hex, sha256_hex(&big));
    assert_eq!(
        objects.head("raw/big").await.unwrap(),
        Some(big.len() as u64)
    );
    assert_eq!(objects.get_bytes("raw/big").await.unwrap(), big);

    let small = b"small object".to_vec();
    objects
        .put_stream("raw/small", body_of(&small, 5), 100)
        .await
        .unwrap();
    let mut read = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut objects.open("raw/small").await.unwrap(), &mut read)
        .await
        .unwrap();
    assert_eq!(read, small);

    // Over the limit: refused, and nothing is left behind.
    let err = objects
        .put_stream("raw/over", body_of(&big, 1 << 20), 6 * 1024 * 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::TooLarge { .. }), "{err}");
    assert_eq!(objects.head("raw/over").await.unwrap(), None);

    // A body that breaks midway: refused, nothing stored.
    let mut pieces: Vec<std::io::Result<Bytes>> = big
        .chunks(1 << 20)
        .take(7)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    pieces.push(Err(std::io::Error::other("client went away")));
    let err = objects
        .put_stream("raw/broken", Box::pin(stream::iter(pieces)), u64::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectError::Source(_)), "{err}");
    assert_eq!(objects.head("raw/broken").await.unwrap(), None);

    objects
        .put_bytes("chunks/ab/abcd", Bytes::from_static(b"chunk"))
        .await
        .unwrap();
    assert_eq!(
        objects.list("chunks/").await.unwrap(),
        vec![("chunks/ab/abcd".to_owned(), 5)]
    );
    let mut raw: Vec<String> = objects
        .list("raw/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    raw.sort();
    assert_eq!(raw, ["raw/big", "raw/small"]);

    assert!(matches!(
        objects.get_bytes("raw/missing").await,
        Err(ObjectError::NotFound(_))
    ));
    assert_eq!(objects.head("raw/missing").await.unwrap(), None);
    objects.delete("raw/missing").await.unwrap();
    objects.delete("raw/big").await.unwrap();
    assert_eq!(objects.head("raw/big").await.unwrap(), None);
}

#[tokio::test]
async fn local_directory_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::open(dir.path()).await.unwrap();
    objects_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_keeps_the_contract() {
    let ns = namespace("s3contract").await;
    let store = filestore_adapters::S3Store::new(filestore_adapters::S3Options {
        part_size: 5 * 1024 * 1024,
        ..ns.s3_options()
    });
    objects_contract(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_presigned_chunk_urls_ask_for_private_caching_and_work() {
    let ns = namespace("s3presign").await;
    let store = ns.s3();
    store
        .put_bytes("chunks/cd/cdef", Bytes::from_static(b"ciphertext"))
        .await
        .unwrap();
    let url = store
        .presign_get("chunks/cd/cdef", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("S3 presigns");
    // The object is immutable, but the URL ends: it asks (signed) for private caching no
    // longer than it is valid, which S3 answers instead of the object's own Cache-Control.
    let asked = reqwest::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "response-cache-control")
        .map(|(_, v)| v.into_owned());
    assert_eq!(asked.as_deref(), Some("private, max-age=60"), "{url}");
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"ciphertext");

    let put = store
        .presign_put("raw/direct", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let resp = reqwest::Client::new()
        .put(&put)
        .body("sent straight to S3")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        store.get_bytes("raw/direct").await.unwrap().as_ref(),
        b"sent straight to S3"
    );
    // A tampered signature is refused by the server.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    assert_eq!(reqwest::get(&tampered).await.unwrap().status(), 403);
}

// ---- queue ---------------------------------------------------------------------------------

async fn next_within(
    sub: &mut Box<dyn filestore_adapters::Subscription>,
    secs: u64,
) -> filestore_adapters::Delivery {
    tokio::time::timeout(Duration::from_secs(secs), sub.next())
        .await
        .expect("a delivery in time")
        .expect("a delivery")
}

async fn queue_contract(queue: &dyn Queue) {
    let q = "filestore.scan";
    queue.publish("file.uploaded", b"one").await.unwrap();
    let mut sub = queue.subscribe(q).await.unwrap();
    let d = next_within(&mut sub, 10).await;
    assert_eq!((d.body.as_slice(), d.deliveries), (b"one".as_slice(), 1));
    assert_eq!(d.routing_key, "file.uploaded");

    // Retried: comes back later, counted.
    let asked = Instant::now();
    sub.retry_later(&d, Duration::from_millis(500))
        .await
        .unwrap();
    let again = next_within(&mut sub, 20).await;
    assert!(asked.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        (again.body.as_slice(), again.deliveries),
        (b"one".as_slice(), 2)
    );

    // Parked: never delivered again.
    sub.park(&again, "operator, look at this").await.unwrap();
    queue.publish("file.uploaded", b"two").await.unwrap();
    let two = next_within(&mut sub, 10).await;
    assert_eq!(two.body, b"two");
    sub.ack(&two).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), sub.next())
            .await
            .is_err(),
        "nothing else is waiting"
    );
    assert_eq!(queue.depth(q).await.unwrap(), 0);

    // Nothing is bound to this key: the publisher hears so instead of losing the message.
    assert!(matches!(
        queue.publish("no.such.key", b"x").await,
        Err(QueueError::Unroutable(_))
    ));
}

#[tokio::test]
async fn sqlite_queue_keeps_the_contract() {
    let (_dir, store) = sqlite().await;
    let queue = SqliteQueue::new(store, Duration::from_secs(30));
    queue_contract(&queue).await;
    assert_eq!(queue.parked("filestore.scan").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_queue_keeps_the_contract() {
    let ns = namespace("amqpcontract").await;
    let queue = ns.rabbit().await;
    queue_contract(&queue).await;
    assert_eq!(queue.parked_depth().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_held_by_a_consumer_that_vanishes_is_delivered_again() {
    let ns = namespace("amqpredeliver").await;
    let queue = ns.rabbit().await;
    queue.publish("file.scanned", b"work").await.unwrap();
    {
        let other = ns.rabbit().await;
        let mut sub = other.subscribe("filestore.chunk").await.unwrap();
        let d = next_within(&mut sub, 10).await;
        assert_eq!(d.deliveries, 1);
        // Gone with its connection, never acked: a crashed worker.
        other.close().await;
    }
    let mut sub = queue.subscribe("filestore.chunk").await.unwrap();
    let d = next_within(&mut sub, 30).await;
    assert_eq!(d.body, b"work");
    assert_eq!(d.deliveries, 2, "the crash counts as a delivery");
    sub.ack(&d).await.unwrap();
}

async fn exact_puts(objects: &dyn ObjectStore) {
    let bytes = noise(3 * 1024 * 1024 + 1, 4);
    let n = bytes.len() as u64;
    let out = objects
        .put_stream_exact("raw/exact", body_of(&bytes, 64 * 1024), n)
        .await
        .unwrap();
    assert_eq!((out.size, out.sha256_hex), (n, sha256_hex(&bytes)));
    assert_eq!(objects.get_bytes("raw/exact").await.unwrap(), bytes);
    for (what, declared) in [("short", n + 10), ("long", n - 10)] {
        let key = format!("raw/{what}");
        let err = objects
            .put_stream_exact(&key, body_of(&bytes, 64 * 1024), declared)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ObjectError::SizeMismatch { .. } | ObjectError::TooLarge { .. }
            ),
            "{what}: {err}"
        );
        assert_eq!(
            objects.head(&key).await.unwrap(),
            None,
            "{what}: nothing stored"
        );
    }
}

#[tokio::test]
async fn exact_puts_store_all_or_nothing_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    exact_puts(&LocalDirStore::open(dir.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_puts_store_all_or_nothing_on_s3() {
    let ns = namespace("s3exact").await;
    exact_puts(&ns.s3()).await;
}
