//! Sync clients for tests: folders synced with an account on a running server, and what the
//! server holds for that account, to compare them.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use filestore_cli::client::Client;
use filestore_cli::sync::{Report, SyncOptions, Syncer};
use serde_json::Value;

use crate::{Api, sha256_hex};

/// One device: a folder and its sync client.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub syncer: Syncer,
}

impl Device {
    pub async fn open(api: &Api, token: &str, name: &str) -> Device {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = Client::new(&api.base, token).expect("client");
        let opts = SyncOptions {
            root: dir.path().to_path_buf(),
            host: name.to_owned(),
            concurrency: 16,
        };
        let syncer = Syncer::open(client, &api.base, opts)
            .await
            .expect("sync opens");
        Device { dir, syncer }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub async fn pass(&self) -> Report {
        self.syncer.pass().await.expect("sync pass")
    }

    pub async fn settle(&self) -> Report {
        self.syncer.until_settled(100).await.expect("sync settles")
    }

    /// The synced files and their SHA-256, by path.
    pub fn files(&self) -> BTreeMap<String, String> {
        folder_files(self.dir.path())
    }
}

/// Every file below `root` except the client's own folder, with its SHA-256.
pub fn folder_files(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in crate::files_under(root) {
        let rel = path
            .strip_prefix(root)
            .expect("below the root")
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with(".filestore/") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read a synced file");
        out.insert(rel, sha256_hex(&bytes));
    }
    out
}

async fn pages(api: &Api, token: &str, route: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let url = format!("{route}?limit=1000&after={after}");
        let page = api.get(&url, token).await.json();
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        out.extend(entries);
        match page["nextAfter"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return out,
        }
    }
}

/// The account's live tree: path to SHA-256.
pub async fn server_files(api: &Api, token: &str) -> BTreeMap<String, String> {
    pages(api, token, "/v1/tree")
        .await
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or_default().to_owned();
            (path, e["sha256"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// Every content the account still holds anywhere: live, as an older version, or in trash.
pub async fn server_contents(api: &Api, token: &str) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for route in ["/v1/tree", "/v1/trash"] {
        for e in pages(api, token, route).await {
            paths.insert(e["path"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut shas = BTreeSet::new();
    for p in paths {
        let url = format!("/v1/versions?path={}", urlencode(&p));
        let versions = api.get(&url, token).await.json();
        for v in versions["versions"].as_array().cloned().unwrap_or_default() {
            if let Some(sha) = v["sha256"].as_str() {
                shas.insert(sha.to_owned());
            }
        }
    }
    shas
}

/// Percent-encodes what a query value cannot hold as it is.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
