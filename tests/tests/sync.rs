//! `filestore sync`: two-way sync between folders and one account, through a real embedded
//! server. Scenarios first, then the randomized test: devices doing random creates, edits,
//! renames and deletes and syncing in random order, after which every folder equals the
//! server's tree and nothing any device held at a sync is lost.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;

use filestore_tests::process::filestore_bin;
use filestore_tests::sync::{Device, folder_files, server_contents, server_files};
use filestore_tests::{Service, noise, sha256_hex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn write(d: &Device, rel: &str, bytes: &[u8]) {
    let path = d.path(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn read(d: &Device, rel: &str) -> Vec<u8> {
    std::fs::read(d.path(rel)).unwrap_or_default()
}

/// Two devices of `user`, with the user's token.
async fn laptop_and_phone(svc: &Service, user: &str) -> (String, Device, Device) {
    let t = svc.token(user);
    let laptop = Device::open(svc, &t, "laptop").await;
    let phone = Device::open(svc, &t, "phone").await;
    (t, laptop, phone)
}

/// `rel` written on the laptop and synced to the phone.
async fn on_both(laptop: &Device, phone: &Device, rel: &str, bytes: &[u8]) {
    write(laptop, rel, bytes);
    laptop.settle().await;
    phone.settle().await;
}

/// Whether a file can go at `rel`, as a user would put it there: an empty folder in the way is
/// removed first; a folder with files in it, or a file where one of its folders would be, stops it.
fn make_room(d: &Device, rel: &str) -> bool {
    let path = d.path(rel);
    let _ = std::fs::remove_dir(&path);
    !path.is_dir()
        && std::path::Path::new(rel)
            .ancestors()
            .skip(1)
            .all(|folder| !d.dir.path().join(folder).is_file())
}

/// The paths of `files` that are conflicted copies of `path` (in its folder).
fn copies_of<'a>(files: &'a BTreeMap<String, String>, path: &str) -> Vec<&'a String> {
    let prefix = format!("{path} (conflicted copy ");
    files.keys().filter(|p| p.starts_with(&prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_renames_and_deletes_reach_the_other_device() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;

    write(&laptop, "docs/plan.txt", b"first plan");
    write(&laptop, "photo.jpg", b"jpeg bytes");
    let up = laptop.settle().await;
    assert_eq!(up.uploaded, 2);
    let down = phone.settle().await;
    assert_eq!(down.downloaded, 2);
    assert_eq!(read(&phone, "docs/plan.txt"), b"first plan");

    write(&phone, "docs/plan.txt", b"better plan");
    phone.settle().await;
    laptop.settle().await;
    assert_eq!(read(&laptop, "docs/plan.txt"), b"better plan");

    std::fs::create_dir_all(laptop.path("album")).unwrap();
    std::fs::rename(laptop.path("photo.jpg"), laptop.path("album/photo.jpg")).unwrap();
    let renamed = laptop.settle().await;
    assert_eq!(
        (renamed.moved_remote, renamed.bytes_sent),
        (1, 0),
        "a rename sends no bytes"
    );
    let moved = phone.settle().await;
    assert_eq!(moved.moved_local, 1, "and arrives as a rename: {moved:?}");
    assert!(!phone.path("photo.jpg").exists());
    assert_eq!(read(&phone, "album/photo.jpg"), b"jpeg bytes");

    std::fs::remove_file(phone.path("docs/plan.txt")).unwrap();
    phone.settle().await;
    laptop.settle().await;
    assert!(!laptop.path("docs/plan.txt").exists());
    assert!(
        !laptop.path("docs").exists(),
        "the folder it emptied goes too"
    );
    let trash = svc.get("/v1/trash", &t).await.json();
    assert_eq!(
        trash["entries"][0]["path"], "docs/plan.txt",
        "a delete goes to trash"
    );
    assert_eq!(laptop.files(), server_files(&svc, &t).await);
    assert_eq!(phone.files(), server_files(&svc, &t).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_true_conflict_keeps_both_versions() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    on_both(&laptop, &phone, "notes.txt", b"shared").await;

    write(&laptop, "notes.txt", b"laptop's edit");
    write(&phone, "notes.txt", b"phone's edit!");
    laptop.settle().await;
    let conflicted = phone.settle().await;
    assert_eq!(conflicted.conflicts, 1, "{conflicted:?}");
    laptop.settle().await;

    let files = phone.files();
    assert_eq!(files, laptop.files());
    assert_eq!(files, server_files(&svc, &t).await);
    assert_eq!(
        files["notes.txt"],
        sha256_hex(b"laptop's edit"),
        "the first to sync keeps the name"
    );
    let copies: Vec<&String> = files
        .keys()
        .filter(|p| p.contains("conflicted copy phone"))
        .collect();
    assert_eq!(copies.len(), 1, "{files:?}");
    assert!(copies[0].starts_with("notes (conflicted copy phone ") && copies[0].ends_with(").txt"));
    assert_eq!(files[copies[0]], sha256_hex(b"phone's edit!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_files_stay_local_and_an_edit_beats_a_delete() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let a = Device::open(&svc, &t, "a").await;
    let b = Device::open(&svc, &t, "b").await;
    write(&a, ".filestoreignore", b"*.tmp\nbuild/\n");
    write(&a, "scratch.tmp", b"never leaves");
    write(&a, "build/out.o", b"object");
    write(&a, "keep.txt", b"v1");
    a.settle().await;
    b.settle().await;
    let on_server: Vec<String> = server_files(&svc, &t).await.into_keys().collect();
    assert_eq!(on_server, [".filestoreignore", "keep.txt"]);

    // One device deletes what the other edits meanwhile: the edit comes back everywhere.
    std::fs::remove_file(a.path("keep.txt")).unwrap();
    write(&b, "keep.txt", b"v2, edited offline");
    a.settle().await;
    b.settle().await;
    a.settle().await;
    assert_eq!(read(&a, "keep.txt"), b"v2, edited offline");
    assert_eq!(read(&b, "keep.txt"), b"v2, edited offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_file_is_reported_not_retried_and_a_local_edit_replaces_it() {
    let svc = Service::start().await;
    let (_t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    write(&laptop, "virus.com", filestore_worker::scanner::EICAR);
    write(&laptop, "fine.txt", b"fine");
    laptop.settle().await;

    let report = phone.settle().await;
    assert_eq!(report.unavailable, ["virus.com: quarantined"], "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(read(&phone, "fine.txt"), b"fine");
    assert!(!phone.path("virus.com").exists());

    write(&phone, "virus.com", b"a clean file of that name");
    let replaced = phone.settle().await;
    assert_eq!(replaced.uploaded, 1, "{replaced:?}");
    laptop.settle().await;
    assert_eq!(read(&laptop, "virus.com"), b"a clean file of that name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignoring_a_synced_file_stops_syncing_it_and_deletes_it_nowhere() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    on_both(&laptop, &phone, "debug.log", b"yesterday's log").await;

    write(&laptop, ".filestoreignore", b"*.log\n");
    write(&laptop, "debug.log", b"today's log, never sent");
    let after = laptop.settle().await;
    assert_eq!(after.deleted_remote, 0, "{after:?}");
    phone.settle().await;
    write(&phone, "phone.log", b"stays on the phone");
    phone.settle().await;

    let on_server = server_files(&svc, &t).await;
    assert_eq!(on_server["debug.log"], sha256_hex(b"yesterday's log"));
    assert!(!on_server.contains_key("phone.log"));
    assert_eq!(read(&phone, "debug.log"), b"yesterday's log");
    assert_eq!(read(&laptop, "debug.log"), b"today's log, never sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_file_named_like_a_folder_of_ignored_files_is_kept_beside_it() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    write(&phone, "build", b"a file called build");
    phone.settle().await;
    // The laptop's `build/` holds only what its rules ignore, so its sync sees no folder there.
    write(&laptop, ".filestoreignore", b"build/\n");
    write(&laptop, "build/out.o", b"object code");

    let report = laptop.settle().await;
    assert!(
        report.failed.is_empty() && report.waiting == 0,
        "{report:?}"
    );
    phone.settle().await;

    assert_eq!(read(&laptop, "build/out.o"), b"object code");
    let on_server = server_files(&svc, &t).await;
    let copies = copies_of(&on_server, "build");
    assert_eq!(copies.len(), 1, "{on_server:?}");
    for device in [&laptop, &phone] {
        assert_eq!(read(device, copies[0]), b"a file called build");
    }
    assert!(
        !phone.path("build").exists(),
        "the phone's file moved along"
    );
}

/// A folder beside the synced folder, to prove that nothing reaches it: `keep/empty/sub/` (an
/// empty tree) and `secret.txt`.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keep/empty/sub")).unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        Outside { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Every file and folder in it.
    fn listing(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                out.push(e.path().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// Whether the account's trash is empty: nothing on the server was deleted.
async fn trash_is_empty(svc: &Service, t: &str) -> bool {
    let trash = svc.get("/v1/trash", t).await.json();
    trash["entries"].as_array().is_some_and(Vec::is_empty)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_the_folder_are_never_followed_and_what_lies_under_them_is_refused() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    let outside = Outside::new();
    // On the laptop these are ordinary files and folders...
    write(&laptop, "link/pwned.txt", b"written through a folder link");
    write(
        &laptop,
        "link/keep",
        b"a file where an empty folder tree is",
    );
    write(&laptop, "file-link", b"written through a file link");
    write(&laptop, "plain.txt", b"plain");
    laptop.settle().await;
    // ...on the phone, links out of its folder.
    std::os::unix::fs::symlink(outside.path(), phone.path("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), phone.path("file-link")).unwrap();
    let before = outside.listing();

    let report = phone.settle().await;
    assert_eq!(read(&phone, "plain.txt"), b"plain");
    assert_eq!(
        outside.listing(),
        before,
        "nothing outside the folder changed"
    );
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).unwrap(),
        b"secret"
    );
    assert!(outside.path().join("keep/empty/sub").is_dir());
    for path in ["link/pwned.txt", "link/keep", "file-link"] {
        assert!(
            report
                .refused
                .iter()
                .any(|r| r.starts_with(&format!("{path}: "))),
            "{path} is reported: {report:?}"
        );
    }
    assert!(
        report.failed.is_empty(),
        "refusals are not failures: {report:?}"
    );

    // Nothing was recorded as synced under the links, so nothing is taken for a local delete.
    let again = phone.settle().await;
    assert_eq!(again.deleted_remote, 0, "{again:?}");
    assert!(trash_is_empty(&svc, &t).await);
    assert_eq!(server_files(&svc, &t).await.len(), 4);
    assert!(phone.path("link").is_symlink() && phone.path("file-link").is_symlink());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_move_into_a_linked_folder_moves_nothing_out_of_the_folder() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    let outside = Outside::new();
    on_both(&laptop, &phone, "report.txt", b"the report").await;
    std::os::unix::fs::symlink(outside.path(), phone.path("link")).unwrap();
    let before = outside.listing();

    std::fs::create_dir_all(laptop.path("link")).unwrap();
    std::fs::rename(laptop.path("report.txt"), laptop.path("link/report.txt")).unwrap();
    assert_eq!(laptop.settle().await.moved_remote, 1);
    let report = phone.settle().await;

    assert_eq!(outside.listing(), before, "nothing moved out of the folder");
    assert!(
        report
            .refused
            .iter()
            .any(|r| r.starts_with("link/report.txt: ")),
        "{report:?}"
    );
    assert!(trash_is_empty(&svc, &t).await);
    assert_eq!(
        server_files(&svc, &t).await["link/report.txt"],
        sha256_hex(b"the report")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_a_hostile_proxy_rewrites_are_refused_and_nothing_outside_changes() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let outside = Outside::new();
    let absolute = outside.path().join("absolute.txt").display().to_string();
    let long = "n".repeat(300);
    let rewrites = [
        ("escape.txt", "../escape.txt"),
        ("deep.txt", "../../deep.txt"),
        ("absolute.txt", absolute.as_str()),
        ("backslash.txt", "..\\backslash.txt"),
        ("nulbyte.txt", "a\0b.txt"),
        ("long.txt", long.as_str()),
        ("state.txt", ".filestore/state.db"),
    ];
    for (name, _) in rewrites {
        svc.upload_ready(&t, name, name.as_bytes()).await;
    }
    svc.upload_ready(&t, "kept.txt", b"an ordinary file").await;
    let proxy = filestore_tests::rewriting_proxy::RewritingProxy::start(&svc.base, &rewrites).await;
    let through = filestore_tests::Api::new(proxy.base.clone());
    let device = Device::open(&through, &t, "laptop").await;
    let before = outside.listing();

    let report = tokio::time::timeout(Duration::from_secs(120), device.settle())
        .await
        .expect("the sync settles instead of looping");

    assert_eq!(device.files().keys().collect::<Vec<_>>(), ["kept.txt"]);
    assert_eq!(
        outside.listing(),
        before,
        "nothing outside the folder changed"
    );
    assert!(
        !outside
            .dir
            .path()
            .parent()
            .unwrap()
            .join("escape.txt")
            .exists()
    );
    for (_, to) in rewrites {
        let quoted = format!("{to:?}");
        assert!(
            report.refused.iter().any(|r| r.starts_with(&quoted)),
            "{quoted} is reported: {report:#?}"
        );
    }
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(trash_is_empty(&svc, &t).await);
    assert_eq!(server_files(&svc, &t).await.len(), rewrites.len() + 1);
}

/// Two devices that each make a file under names a case-insensitive file system takes for one
/// (`Readme.txt`, `README.txt`): the server holds one name, so the second is kept beside it as
/// a conflicted copy, and every device ends with both contents. A later rename of the case
/// alone reaches the other device as a rename.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_differ_only_in_case_never_shadow_each_other() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    write(&laptop, "Readme.txt", b"the laptop's readme");
    write(&phone, "README.txt", b"the phone's readme");
    laptop.settle().await;
    let second = phone.settle().await;
    assert_eq!(second.conflicts, 1, "{second:?}");
    laptop.settle().await;

    let on_server = server_files(&svc, &t).await;
    assert_eq!(on_server.len(), 2, "{on_server:?}");
    let contents: BTreeSet<&String> = on_server.values().collect();
    let both: BTreeSet<String> = [
        sha256_hex(b"the laptop's readme"),
        sha256_hex(b"the phone's readme"),
    ]
    .into();
    assert_eq!(contents, both.iter().collect());
    assert_eq!(laptop.files(), on_server);
    assert_eq!(phone.files(), on_server);

    std::fs::rename(laptop.path("Readme.txt"), laptop.path("README.TXT")).unwrap();
    assert_eq!(laptop.settle().await.moved_remote, 1);
    let renamed = phone.settle().await;
    assert_eq!(renamed.moved_local, 1, "{renamed:?}");
    assert_eq!(read(&phone, "README.TXT"), b"the laptop's readme");
    assert_eq!(phone.files(), server_files(&svc, &t).await);
}

/// A file on one device and a folder of the same name on another, whichever syncs first: both
/// are kept everywhere, the folder under the name and the file as a conflicted copy beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_and_a_folder_of_one_name_keep_both() {
    let svc = Service::start().await;
    for file_first in [true, false] {
        let (t, laptop, phone) = laptop_and_phone(&svc, &format!("alice{file_first}")).await;
        write(&laptop, "d1", b"a file named d1");
        write(&phone, "d1/a.txt", b"a file in the folder d1");
        let (first, second) = if file_first {
            (&laptop, &phone)
        } else {
            (&phone, &laptop)
        };
        first.settle().await;
        let resolved = second.settle().await;
        assert!(resolved.failed.is_empty(), "{resolved:?}");
        assert_eq!(resolved.conflicts, 1, "{resolved:?}");
        first.settle().await;
        second.settle().await;

        let files = laptop.files();
        assert_eq!(files, phone.files(), "file first: {file_first}");
        assert_eq!(files, server_files(&svc, &t).await);
        assert_eq!(files["d1/a.txt"], sha256_hex(b"a file in the folder d1"));
        let copies = copies_of(&files, "d1");
        assert_eq!(copies.len(), 1, "{files:?}");
        assert_eq!(files[copies[0]], sha256_hex(b"a file named d1"));
        assert_eq!(files.len(), 2, "{files:?}");
    }
}

/// The folder `d1` emptied on one device (the folder itself left behind) while another makes
/// `d1` a file; then that file moved into a folder of its own name: each arrives as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_takes_the_name_of_a_folder_that_was_emptied() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    on_both(&laptop, &phone, "d1/a.txt", b"in the folder").await;

    // The phone's user deletes the file; the empty folder stays on the phone.
    std::fs::remove_file(phone.path("d1/a.txt")).unwrap();
    phone.settle().await;
    laptop.settle().await;
    assert!(phone.path("d1").is_dir());
    write(&laptop, "d1", b"now a file");
    laptop.settle().await;
    let down = phone.settle().await;
    assert!(down.failed.is_empty(), "{down:?}");
    assert_eq!(read(&phone, "d1"), b"now a file");

    // Back to a folder: the file moves into a folder of its own name.
    std::fs::rename(laptop.path("d1"), laptop.path("moving")).unwrap();
    std::fs::create_dir(laptop.path("d1")).unwrap();
    std::fs::rename(laptop.path("moving"), laptop.path("d1/a.txt")).unwrap();
    let up = laptop.settle().await;
    assert!(up.failed.is_empty(), "{up:?}");
    let down = phone.settle().await;
    assert!(down.failed.is_empty(), "{down:?}");
    assert_eq!(read(&phone, "d1/a.txt"), b"now a file");
    assert_eq!(laptop.files(), phone.files());
    assert_eq!(phone.files(), server_files(&svc, &t).await);
}

/// One device edits `d1/a.txt` while the other moves it out to the name `d1` (the server then
/// refuses the edit, `parent_is_file`): the folder keeps the name, the moved file goes aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_inside_a_folder_beats_a_file_that_took_its_name() {
    let svc = Service::start().await;
    let (t, laptop, phone) = laptop_and_phone(&svc, "alice").await;
    on_both(&laptop, &phone, "d1/a.txt", b"v1").await;

    std::fs::rename(laptop.path("d1/a.txt"), laptop.path("moving")).unwrap();
    std::fs::remove_dir(laptop.path("d1")).unwrap();
    std::fs::rename(laptop.path("moving"), laptop.path("d1")).unwrap();
    write(&phone, "d1/a.txt", b"v2, edited meanwhile");
    laptop.settle().await;
    let resolved = phone.settle().await;
    assert!(resolved.failed.is_empty(), "{resolved:?}");
    laptop.settle().await;

    let files = phone.files();
    assert_eq!(files, laptop.files());
    assert_eq!(files, server_files(&svc, &t).await);
    assert_eq!(files["d1/a.txt"], sha256_hex(b"v2, edited meanwhile"));
    let copies = copies_of(&files, "d1");
    assert_eq!(copies.len(), 1, "{files:?}");
    assert_eq!(files[copies[0]], sha256_hex(b"v1"));
}

/// Small names, so devices collide on the same paths often; `d1` is also a folder's name, so a
/// file and a folder collide too.
const FOLDERS: [&str; 3] = ["", "d1/", "d2/"];
const NAMES: [&str; 5] = ["a.txt", "b.txt", "c.md", "d", "d1"];

fn random_path(rng: &mut StdRng) -> String {
    format!(
        "{}{}",
        FOLDERS[rng.gen_range(0..FOLDERS.len())],
        NAMES[rng.gen_range(0..NAMES.len())]
    )
}

/// One seed: 2 or 3 devices on a fresh account, 30 random steps, then everyone syncs until
/// quiet. Returns a description of what went wrong, if anything did.
async fn run_seed(svc: &Service, seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let t = svc.token(&format!("seed{seed}"));
    let count = rng.gen_range(2..=3);
    let mut devices = Vec::new();
    for i in 0..count {
        devices.push(Device::open(svc, &t, &format!("dev{i}")).await);
    }
    // Every content a device held when it synced must survive somewhere on the server.
    let mut held: BTreeSet<String> = BTreeSet::new();
    let mut log = Vec::new();
    for step in 0..30 {
        let d = &devices[rng.gen_range(0..devices.len())];
        let name = d.syncer.root().display().to_string();
        let present: Vec<String> = folder_files(d.dir.path()).into_keys().collect();
        let op = rng.gen_range(0..10);
        match op {
            0..=2 => {
                let p = random_path(&mut rng);
                let body = format!(
                    "seed {seed} step {step} {}",
                    "x".repeat(rng.gen_range(0..64))
                );
                if !present.contains(&p) && make_room(d, &p) {
                    write(d, &p, body.as_bytes());
                    log.push(format!("{name}: create {p}"));
                }
            }
            3 | 4 if !present.is_empty() => {
                let p = &present[rng.gen_range(0..present.len())];
                write(d, p, format!("seed {seed} step {step} edit").as_bytes());
                log.push(format!("{name}: edit {p}"));
            }
            5 if !present.is_empty() => {
                let from = &present[rng.gen_range(0..present.len())];
                let to = random_path(&mut rng);
                if !present.contains(&to) && make_room(d, &to) {
                    std::fs::create_dir_all(d.path(&to).parent().unwrap()).unwrap();
                    std::fs::rename(d.path(from), d.path(&to)).unwrap();
                    log.push(format!("{name}: rename {from} -> {to}"));
                }
            }
            6 if !present.is_empty() => {
                let p = &present[rng.gen_range(0..present.len())];
                std::fs::remove_file(d.path(p)).unwrap();
                log.push(format!("{name}: delete {p}"));
            }
            _ => {
                held.extend(d.files().into_values());
                let r = d.pass().await;
                log.push(format!("{name}: sync {r:?}"));
            }
        }
    }
    for d in &devices {
        held.extend(d.files().into_values());
    }
    // Everyone syncs until a whole round is quiet.
    let mut quiet = false;
    for _round in 0..10 {
        quiet = true;
        for d in &devices {
            let r = d.settle().await;
            quiet &= !r.did_work();
        }
        if quiet {
            break;
        }
    }
    let server = server_files(svc, &t).await;
    let explain = |what: String| format!("seed {seed}: {what}\n{}", log.join("\n"));
    if !quiet {
        return Err(explain("the devices never went quiet".into()));
    }
    for d in &devices {
        let files = d.files();
        if files != server {
            return Err(explain(format!(
                "{} holds {files:?}\nthe server {server:?}",
                d.syncer.root().display()
            )));
        }
    }
    let kept = server_contents(svc, &t).await;
    let lost: Vec<&String> = held.difference(&kept).collect();
    if !lost.is_empty() {
        return Err(explain(format!("lost contents {lost:?}")));
    }
    Ok(())
}

/// `FILESTORE_SYNC_SEEDS` seeds (200 by default) from `FILESTORE_SYNC_FIRST_SEED` (0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_devices_converge_and_lose_nothing() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seeds = env("FILESTORE_SYNC_SEEDS", 200);
    let first = env("FILESTORE_SYNC_FIRST_SEED", 0);
    let svc = Service::start().await;
    let failures: Vec<String> = futures::stream::iter(first..first + seeds)
        .map(|seed| {
            let svc = &svc;
            async move { run_seed(svc, seed).await.err() }
        })
        .buffer_unordered(8)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed; the first:\n{}",
        failures.len(),
        failures[0]
    );
}

/// The real `filestore sync` process, SIGKILLed at random moments mid-transfer: each restart
/// resumes, no file ever appears under its real name half-written, and the last run converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sync_resumes_and_never_leaves_a_partial_file() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let source = Device::open(&svc, &t, "source").await;
    let mut known = BTreeSet::new();
    for i in 0..24u64 {
        let bytes = noise(256 * 1024 + (i as usize) * 40_000, i);
        known.insert(sha256_hex(&bytes));
        write(&source, &format!("from-server/{i}.bin"), &bytes);
    }
    source.settle().await;
    let folder = tempfile::tempdir().unwrap();
    for i in 0..24u64 {
        let bytes = noise(200 * 1024 + (i as usize) * 30_000, 1000 + i);
        known.insert(sha256_hex(&bytes));
        let path = folder.path().join(format!("from-folder/{i}.bin"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let sync = || {
        let mut c = std::process::Command::new(filestore_bin());
        c.args([
            "sync",
            folder.path().to_str().unwrap(),
            "--device",
            "killed",
        ])
        .env("FILESTORE_URL", &svc.base)
        .env("FILESTORE_TOKEN", &t)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    let mut rng = StdRng::seed_from_u64(7);
    for round in 0..8 {
        let mut child = sync().spawn().expect("start filestore sync");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..600))).await;
        let _ = child.kill();
        let _ = child.wait();
        for (path, sha) in folder_files(folder.path()) {
            assert!(
                known.contains(&sha),
                "round {round}: {path} is not a whole file of any known content"
            );
            assert!(
                !path.ends_with(".filestore-partial"),
                "round {round}: {path}"
            );
        }
    }
    let last = sync().status().expect("run filestore sync");
    assert!(last.success(), "the last sync completes");
    let files = folder_files(folder.path());
    assert_eq!(files.len(), 48, "{files:?}");
    assert_eq!(files, server_files(&svc, &t).await);
}

/// Many small files up from one device and down to another, timed (reported, never asserted):
/// `FILESTORE_SYNC_SMALL_FILES` files (1,000 by default) of 1-10 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_sync_up_and_down() {
    let count: usize = std::env::var("FILESTORE_SYNC_SMALL_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let svc = Service::start().await;
    let t = svc.token("alice");
    let up = Device::open(&svc, &t, "up").await;
    let down = Device::open(&svc, &t, "down").await;
    let mut rng = StdRng::seed_from_u64(3);
    for i in 0..count {
        let len = rng.gen_range(1024..=10 * 1024);
        let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen::<u8>()).collect();
        write(&up, &format!("small/{:02}/{i}.dat", i % 50), &bytes);
    }
    let started = std::time::Instant::now();
    let sent = up.settle().await;
    let up_secs = started.elapsed().as_secs_f64();
    assert_eq!(sent.uploaded, count);
    let started = std::time::Instant::now();
    let got = down.settle().await;
    let down_secs = started.elapsed().as_secs_f64();
    assert_eq!(got.downloaded, count, "{got:?}");
    assert_eq!(down.files(), up.files());
    println!(
        "{count} small files: up {:.0} files/s ({up_secs:.1} s), down {:.0} files/s ({down_secs:.1} s, including waiting for the pipeline)",
        count as f64 / up_secs,
        count as f64 / down_secs
    );
}

/// Delta transfer both ways: an edit in the middle of a large file sends, and fetches, only
/// the chunks around the edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_inside_a_large_file_moves_only_the_chunks_around_it() {
    let svc = Service::start().await;
    let t = svc.token("alice");
    let a = Device::open(&svc, &t, "a").await;
    let b = Device::open(&svc, &t, "b").await;
    let size = 4 * 1024 * 1024;
    let original = noise(size, 5);
    write(&a, "big.bin", &original);
    assert_eq!(
        a.settle().await.bytes_sent,
        size as u64,
        "the first version goes whole"
    );
    b.settle().await;

    let mut edited = original.clone();
    edited.splice(size / 2..size / 2, *b"an edit in the middle");
    write(&a, "big.bin", &edited);
    let up = a.settle().await;
    assert_eq!(up.uploaded, 1);
    assert!(
        up.bytes_sent < (size / 8) as u64,
        "sent {} bytes of a {size}-byte file for a 21-byte edit",
        up.bytes_sent
    );
    let down = b.settle().await;
    assert_eq!(down.downloaded, 1, "{down:?}");
    assert!(
        down.bytes_received < (size / 8) as u64,
        "fetched {} bytes for a 21-byte edit",
        down.bytes_received
    );
    assert_eq!(read(&b, "big.bin"), edited);
    let versions = svc.get("/v1/versions?path=big.bin", &t).await.json();
    assert_eq!(versions["versions"][0]["sha256"], sha256_hex(&edited));
}
