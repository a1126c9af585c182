//! The tree contract (paths, revisions, versions, moves, trash, the change feed), kept alike by
//! the embedded SQLite store and by PostgreSQL.
use std::collections::BTreeSet;
use std::sync::Arc;

use filestore_adapters::meta::OutboxMessage;
use filestore_adapters::{ListQuery, MetadataStore, NewFile, SqliteStore, StoreError};
use filestore_domain::tree::{ChangeKind, Expect};
use filestore_domain::{FileEvent, FileId, FileStatus, OwnerId};
use filestore_tests::services::{Namespace, Services};
use filestore_tests::sha256_hex;

/// One owner's view of a store, with the steps a client takes to write a path.
#[derive(Clone)]
struct Tree {
    store: Arc<dyn MetadataStore>,
    owner: OwnerId,
}

impl Tree {
    fn new(store: Arc<dyn MetadataStore>, owner: &str) -> Self {
        Self {
            store,
            owner: owner.parse().unwrap(),
        }
    }

    /// Registers, records and finalizes `bytes` at `path`; the file is `processing` after.
    async fn write(&self, path: &str, bytes: &[u8], expect: Expect) -> Result<FileId, StoreError> {
        let f = NewFile {
            id: FileId::new(),
            owner: self.owner.clone(),
            path: path.into(),
            size: bytes.len() as u64,
            declared_sha256: None,
            content_type: "text/plain".into(),
            expect,
        };
        self.store.create_files(std::slice::from_ref(&f)).await?;
        let sha = sha256_hex(bytes);
        let size = bytes.len() as u64;
        self.store
            .record_upload(&f.id, &format!("raw/{}", f.id), size, &sha)
            .await?;
        let announce = OutboxMessage {
            routing_key: "file.uploaded".into(),
            payload: f.id.to_string().into_bytes(),
        };
        self.store
            .finalize_upload(&f.id, size, &sha, announce)
            .await?;
        Ok(f.id)
    }

    /// Writes and lets the pipeline finish, as the index stage would.
    async fn write_ready(&self, path: &str, bytes: &[u8], expect: Expect) -> FileId {
        let id = self.write(path, bytes, expect).await.unwrap();
        self.store
            .apply_event(&id, FileEvent::Indexed, None)
            .await
            .unwrap();
        id
    }

    async fn rev(&self, path: &str) -> i64 {
        self.store
            .entry(&self.owner, path)
            .await
            .unwrap()
            .expect("the path has a head")
            .rev
    }

    async fn list(&self, prefix: &str, trashed: bool) -> Vec<String> {
        let q = ListQuery {
            prefix: prefix.into(),
            after: None,
            limit: 1000,
            trashed,
        };
        let listing = self.store.list_tree(&self.owner, &q).await.unwrap();
        listing.entries.into_iter().map(|e| e.path).collect()
    }

    async fn feed(&self) -> Vec<(i64, ChangeKind, String)> {
        let page = self.store.changes(&self.owner, 0, 10_000).await.unwrap();
        page.changes
            .into_iter()
            .map(|c| (c.seq, c.kind, c.path))
            .collect()
    }
}

async fn revisions_guard_every_write(t: &Tree) {
    t.write("a.txt", b"one", Expect::Absent).await.unwrap();
    let r1 = t.rev("a.txt").await;
    let taken = t.write("a.txt", b"again", Expect::Absent).await;
    assert!(
        matches!(taken, Err(StoreError::RevConflict(m)) if m.current == Some(r1)),
        "a create onto a live file conflicts: {taken:?}"
    );
    t.write("a.txt", b"two", Expect::Rev(r1)).await.unwrap();
    let r2 = t.rev("a.txt").await;
    assert!(r2 > r1);
    let stale = t.write("a.txt", b"stale edit", Expect::Rev(r1)).await;
    assert!(
        matches!(stale, Err(StoreError::RevConflict(m)) if m.current == Some(r2)),
        "an edit of an old revision conflicts: {stale:?}"
    );
    t.write("a.txt", b"three", Expect::Any).await.unwrap();
    let versions = t.store.versions(&t.owner, "a.txt").await.unwrap();
    let sizes: Vec<u64> = versions.iter().map(|v| v.size).collect();
    assert_eq!(
        sizes,
        vec![5, 3, 3],
        "every accepted write is a version, newest first"
    );
    assert!(versions.windows(2).all(|w| w[0].rev > w[1].rev));
}

async fn files_and_folders_never_share_a_name(t: &Tree) {
    t.write("n/doc", b"x", Expect::Any).await.unwrap();
    let under_file = t.write("n/doc/inner", b"x", Expect::Any).await;
    assert!(matches!(under_file, Err(StoreError::ParentIsFile(p)) if p == "n/doc"));
    t.write("n/dir/inner", b"x", Expect::Any).await.unwrap();
    let over_folder = t.write("n/dir", b"x", Expect::Any).await;
    assert!(matches!(over_folder, Err(StoreError::PathIsFolder(p)) if p == "n/dir"));
}

async fn listings_page_in_path_order(t: &Tree) {
    for p in ["l/b", "l/a", "l/c/d", "lx/e"] {
        t.write(p, p.as_bytes(), Expect::Any).await.unwrap();
    }
    let mut q = ListQuery {
        prefix: "l/".into(),
        after: None,
        limit: 2,
        trashed: false,
    };
    let first = t.store.list_tree(&t.owner, &q).await.unwrap();
    let paths: Vec<_> = first.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["l/a", "l/b"]);
    assert_eq!(
        first.cursor,
        t.feed().await.last().unwrap().0,
        "a listing knows the feed position it reflects"
    );
    q.after = Some("l/b".into());
    let second = t.store.list_tree(&t.owner, &q).await.unwrap();
    let paths: Vec<_> = second.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["l/c/d"], "the prefix 'l/' excludes 'lx/'");
}

async fn moves_carry_versions_and_folders(t: &Tree) {
    t.write("m/one", b"1", Expect::Any).await.unwrap();
    t.write("m/one", b"11", Expect::Any).await.unwrap();
    t.write("m/sub/two", b"2", Expect::Any).await.unwrap();
    let r = t.rev("m/one").await;
    let stale = t
        .store
        .move_path(&t.owner, "m/one", "m/uno", Expect::Rev(r - 1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::RevConflict(_))),
        "{stale:?}"
    );
    let moved = t
        .store
        .move_path(&t.owner, "m/one", "m/uno", Expect::Rev(r))
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].kind, ChangeKind::Move);
    assert_eq!(moved[0].from_path.as_deref(), Some("m/one"));
    assert_eq!(t.store.versions(&t.owner, "m/uno").await.unwrap().len(), 2);
    assert!(matches!(
        t.store.versions(&t.owner, "m/one").await,
        Err(StoreError::PathNotFound(_))
    ));

    let folder = t
        .store
        .move_path(&t.owner, "m", "moved", Expect::Any)
        .await
        .unwrap();
    assert_eq!(folder.len(), 2, "both files inside the folder moved");
    assert_eq!(
        t.list("moved/", false).await,
        ["moved/sub/two", "moved/uno"]
    );
    assert!(t.list("m/", false).await.is_empty());

    t.write("other", b"o", Expect::Any).await.unwrap();
    let onto = t
        .store
        .move_path(&t.owner, "other", "moved/uno", Expect::Any)
        .await;
    assert!(matches!(onto, Err(StoreError::PathTaken(p)) if p == "moved/uno"));
    let into_itself = t
        .store
        .move_path(&t.owner, "moved", "moved/deeper", Expect::Any)
        .await;
    assert!(matches!(into_itself, Err(StoreError::InvalidMove(_))));
    let under_file = t
        .store
        .move_path(&t.owner, "moved", "other/x", Expect::Any)
        .await;
    assert!(
        matches!(under_file, Err(StoreError::ParentIsFile(_))),
        "{under_file:?}"
    );
    assert_eq!(
        t.list("moved/", false).await,
        ["moved/sub/two", "moved/uno"],
        "a refused move changes nothing"
    );
}

async fn trash_restores_and_purges(t: &Tree) {
    let kept = t.write_ready("t/keep", b"keep me", Expect::Any).await;
    t.write_ready("t/d/x", b"x", Expect::Any).await;
    t.write_ready("t/d/y", b"y", Expect::Any).await;
    let one = t
        .store
        .trash_path(&t.owner, "t/keep", Expect::Any)
        .await
        .unwrap();
    assert_eq!(one[0].kind, ChangeKind::Delete);
    assert_eq!(t.list("t/", false).await, ["t/d/x", "t/d/y"]);
    assert_eq!(t.list("t/", true).await, ["t/keep"]);
    let restored = t.store.restore_path(&t.owner, "t/keep").await.unwrap();
    assert_eq!(restored[0].kind, ChangeKind::Create);
    assert_eq!(restored[0].file_id, kept, "the same content comes back");

    let folder = t
        .store
        .trash_path(&t.owner, "t/d", Expect::Any)
        .await
        .unwrap();
    assert_eq!(folder.len(), 2);
    // A new file where a trashed one was: the trashed head stays, as a version.
    t.write("t/d/x", b"new x", Expect::Absent).await.unwrap();
    assert_eq!(t.store.versions(&t.owner, "t/d/x").await.unwrap().len(), 2);
    let purged = t.store.purge_path(&t.owner, "t/d").await.unwrap();
    assert_eq!(purged, 1, "only what is in trash is purged: t/d/y");
    let gone = t.store.get_file(&folder[1].file_id).await.unwrap().unwrap();
    assert_eq!(gone.status, FileStatus::Deleted);
    assert!(t.store.file_chunks(&gone.id).await.unwrap().is_empty());
    assert!(matches!(
        t.store.purge_path(&t.owner, "t/d/y").await,
        Err(StoreError::PathNotFound(_))
    ));
    assert!(matches!(
        t.store.restore_path(&t.owner, "t/nothing").await,
        Err(StoreError::PathNotFound(_))
    ));
}

async fn purging_a_quarantined_version_orphans_its_raw_bytes(t: &Tree) {
    // The ready file purged before: its raw key is recorded too, in case removing the bytes
    // when it was indexed failed.
    let earlier = t.store.orphaned_objects(10).await.unwrap();
    assert_eq!(earlier.len(), 1, "{earlier:?}");
    t.store.forget_orphaned_object(&earlier[0]).await.unwrap();
    let bad = t
        .write("q/eicar.com", b"malware", Expect::Any)
        .await
        .unwrap();
    t.store
        .apply_event(&bad, FileEvent::MalwareFound, Some("Eicar-Signature"))
        .await
        .unwrap();
    t.store
        .trash_path(&t.owner, "q/eicar.com", Expect::Any)
        .await
        .unwrap();
    assert!(t.store.orphaned_objects(10).await.unwrap().is_empty());

    t.store.purge_path(&t.owner, "q").await.unwrap();
    let raw = format!("raw/{bad}");
    assert_eq!(
        t.store.orphaned_objects(10).await.unwrap(),
        std::slice::from_ref(&raw)
    );
    t.store.forget_orphaned_object(&raw).await.unwrap();
    assert!(t.store.orphaned_objects(10).await.unwrap().is_empty());
}

async fn old_versions_come_back_as_new_revisions(t: &Tree) {
    let first = t.write_ready("v/doc", b"first", Expect::Any).await;
    t.write_ready("v/doc", b"second", Expect::Any).await;
    let old = t.store.versions(&t.owner, "v/doc").await.unwrap()[1].rev;
    let change = t
        .store
        .restore_version(&t.owner, "v/doc", old)
        .await
        .unwrap();
    assert_eq!(change.kind, ChangeKind::Update);
    assert_eq!(change.file_id, first);
    assert!(change.seq > old);
    assert_eq!(t.store.versions(&t.owner, "v/doc").await.unwrap().len(), 3);
    let processing = t.write("v/doc", b"third", Expect::Any).await.unwrap();
    let rev = t.rev("v/doc").await;
    t.write_ready("v/doc", b"fourth", Expect::Any).await;
    assert!(
        matches!(
            t.store.restore_version(&t.owner, "v/doc", rev).await,
            Err(StoreError::VersionUnavailable(_))
        ),
        "a version still processing ({processing}) cannot be restored yet"
    );
}

/// The feed numbers every change of the owner, gap-free and in order, with its kind.
async fn the_feed_has_every_change_in_order(t: &Tree) {
    let feed = t.feed().await;
    let seqs: Vec<i64> = feed.iter().map(|c| c.0).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected);
    let kinds: BTreeSet<ChangeKind> = feed.iter().map(|c| c.1).collect();
    assert_eq!(kinds.len(), 4, "create, update, move and delete all appear");
    let page = t.store.changes(&t.owner, 2, 3).await.unwrap();
    assert_eq!(page.changes.len(), 3);
    assert_eq!((page.changes[0].seq, page.cursor), (3, 5));
    assert!(page.has_more);
    let end = t
        .store
        .changes(&t.owner, seqs.len() as i64, 10)
        .await
        .unwrap();
    assert!(end.changes.is_empty() && !end.has_more);
    assert_eq!(end.cursor, seqs.len() as i64);
}

/// Many clients writing one owner's tree at once: one edit per revision wins, and the feed
/// still has no gaps.
async fn concurrent_writers_serialise(t: &Tree) {
    t.write("c/shared", b"base", Expect::Any).await.unwrap();
    let base = t.rev("c/shared").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let edit = format!("edit {i}");
            let edited = t
                .write("c/shared", edit.as_bytes(), Expect::Rev(base))
                .await;
            let own = t
                .write(&format!("c/own-{i}"), b"mine", Expect::Absent)
                .await;
            (edited.is_ok(), own.is_ok())
        }));
    }
    let mut won = 0;
    for task in tasks {
        let (edit, own) = task.await.unwrap();
        won += usize::from(edit);
        assert!(own);
    }
    assert_eq!(won, 1, "exactly one edit of revision {base} is accepted");
    let seqs: Vec<i64> = t.feed().await.iter().map(|c| c.0).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

/// One name, one file (DESIGN invariant 8): spellings that differ in case or Unicode
/// normalization are one path, shown as first written; a rename of the case alone works.
async fn a_name_is_one_file_whatever_its_case_or_normalization(t: &Tree) {
    t.write("case/Readme.txt", b"one", Expect::Absent)
        .await
        .unwrap();
    let r = t.rev("CASE/README.TXT").await;
    let taken = t.write("case/README.txt", b"two", Expect::Absent).await;
    assert!(
        matches!(taken, Err(StoreError::RevConflict(_))),
        "a new file may not take another spelling of a live one: {taken:?}"
    );
    t.write("case/README.txt", b"two", Expect::Rev(r))
        .await
        .unwrap();
    assert_eq!(
        t.list("case/", false).await,
        ["case/Readme.txt"],
        "the first spelling stays"
    );
    let versions = t.store.versions(&t.owner, "Case/readme.TXT").await.unwrap();
    assert_eq!(versions.len(), 2);

    t.write("case/caf\u{e9}.txt", b"nfc", Expect::Absent)
        .await
        .unwrap();
    let nfd = t
        .write("case/cafe\u{301}.txt", b"nfd", Expect::Absent)
        .await;
    assert!(matches!(nfd, Err(StoreError::RevConflict(_))), "{nfd:?}");

    // A folder is one folder too, spelled as the tree already spells it.
    t.write("CASE/other.txt", b"x", Expect::Absent)
        .await
        .unwrap();
    let listed = t.list("CaSe/", false).await;
    assert_eq!(
        listed,
        ["case/Readme.txt", "case/caf\u{e9}.txt", "case/other.txt"]
    );
    let under_file = t.write("Case/readme.TXT/inner", b"x", Expect::Any).await;
    assert!(
        matches!(under_file, Err(StoreError::ParentIsFile(_))),
        "{under_file:?}"
    );

    // Renames that change only the case, of a file and of a folder.
    let r = t.rev("case/Readme.txt").await;
    t.store
        .move_path(
            &t.owner,
            "case/readme.txt",
            "case/README.txt",
            Expect::Rev(r),
        )
        .await
        .unwrap();
    t.store
        .move_path(&t.owner, "case", "Case", Expect::Any)
        .await
        .unwrap();
    let listed = t.list("case/", false).await;
    assert_eq!(
        listed,
        ["Case/README.txt", "Case/caf\u{e9}.txt", "Case/other.txt"]
    );
    assert_eq!(
        t.store
            .versions(&t.owner, "Case/README.txt")
            .await
            .unwrap()
            .len(),
        2
    );
    let into_itself = t
        .store
        .move_path(&t.owner, "Case", "CASE/sub", Expect::Any)
        .await;
    assert!(
        matches!(into_itself, Err(StoreError::InvalidMove(_))),
        "{into_itself:?}"
    );
    // A folder moved onto another spelling of an existing one joins it, under its spelling,
    // and the joined folder moves as one.
    t.write("join/x/f.txt", b"f", Expect::Absent).await.unwrap();
    t.store
        .move_path(&t.owner, "join/x", "CASE", Expect::Any)
        .await
        .unwrap();
    assert!(
        t.list("case/", false)
            .await
            .contains(&"Case/f.txt".to_owned())
    );
    t.store
        .move_path(&t.owner, "case", "joined", Expect::Any)
        .await
        .unwrap();
    assert_eq!(t.list("case/", false).await, Vec::<String>::new());
    assert_eq!(t.list("joined/", false).await.len(), 4);
    t.store
        .move_path(&t.owner, "joined", "Case", Expect::Any)
        .await
        .unwrap();
    let onto_other = t
        .store
        .move_path(&t.owner, "Case/other.txt", "case/readme.TXT", Expect::Any)
        .await;
    assert!(
        matches!(onto_other, Err(StoreError::PathTaken(_))),
        "{onto_other:?}"
    );
}

async fn owners_see_only_their_own_tree(store: Arc<dyn MetadataStore>) {
    let bob = Tree::new(store, "bob");
    assert!(bob.list("", false).await.is_empty());
    assert!(bob.feed().await.is_empty());
    assert!(
        bob.store
            .entry(&bob.owner, "a.txt")
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        bob.store.trash_path(&bob.owner, "a.txt", Expect::Any).await,
        Err(StoreError::PathNotFound(_))
    ));
}

async fn tree_contract(store: Arc<dyn MetadataStore>) {
    let t = Tree::new(store.clone(), "alice");
    revisions_guard_every_write(&t).await;
    files_and_folders_never_share_a_name(&t).await;
    listings_page_in_path_order(&t).await;
    moves_carry_versions_and_folders(&t).await;
    trash_restores_and_purges(&t).await;
    purging_a_quarantined_version_orphans_its_raw_bytes(&t).await;
    old_versions_come_back_as_new_revisions(&t).await;
    the_feed_has_every_change_in_order(&t).await;
    concurrent_writers_serialise(&t).await;
    a_name_is_one_file_whatever_its_case_or_normalization(&t).await;
    owners_see_only_their_own_tree(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_keeps_the_tree_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("m.db")).await.unwrap();
    tree_contract(Arc::new(store)).await;
}

/// Rows written before paths had folded keys get them when the store opens, and are found by
/// any spelling from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_from_before_the_name_policy_get_their_keys_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let t = Tree::new(Arc::new(store.clone()), "alice");
    t.write_ready("Old/Name.txt", b"old", Expect::Absent).await;
    for table in ["entries", "versions"] {
        sqlx::query(&format!("UPDATE {table} SET path_key = NULL"))
            .execute(store.pool())
            .await
            .unwrap();
    }
    assert!(
        t.store
            .entry(&t.owner, "old/name.txt")
            .await
            .unwrap()
            .is_none()
    );
    drop((t, store));

    let reopened = SqliteStore::open(&db).await.unwrap();
    let t = Tree::new(Arc::new(reopened), "alice");
    let found = t
        .store
        .entry(&t.owner, "OLD/NAME.TXT")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.path, "Old/Name.txt");
    assert_eq!(
        t.store
            .versions(&t.owner, "old/name.txt")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_store_keeps_the_tree_contract() {
    let ns = Namespace::create(Services::shared(), "tree").await;
    tree_contract(Arc::new(ns.postgres().await)).await;
}
