//! The server side: the tree as the change feed reports it. The first sync lists the whole
//! tree and keeps the cursor that listing is consistent with; later syncs only read the
//! changes after it. A change is applied only if it is newer than what the mirror holds for
//! its path, so replaying changes a listing already reflected does nothing.
//!
//! Nothing the server (or anything between it and this client) sends is trusted as a local
//! path: a path that is not in the domain's canonical form, or that names the client's own
//! folder, never reaches the mirror, so no step is ever planned for it; it is reported once.
use std::collections::BTreeMap;

use filestore_api::dto::tree::{ChangeInfo, EntryInfo};
use filestore_domain::tree::ChangeKind;

use super::local::is_client_dir;
use super::plan::{Base, Remote};
use crate::client::{Client, ClientError};

const PAGE: u32 = 1000;

fn remote_of(e: &EntryInfo) -> Remote {
    Remote {
        file_id: e.file_id.to_string(),
        rev: e.rev,
        sha256: e.sha256.clone().unwrap_or_default(),
        size: e.size,
        status: e.status,
    }
}

/// Why a path from the server cannot be a path in the folder, if it cannot.
pub fn refusal(path: &str) -> Option<String> {
    if let Err(e) = filestore_domain::paths::normalize(path) {
        return Some(format!(
            "{path:?}: the server sent a path no folder may hold: {e}"
        ));
    }
    if !filestore_domain::paths::is_canonical(path) {
        return Some(format!(
            "{path:?}: the server sent a path that is not canonical"
        ));
    }
    is_client_dir(path)
        .then(|| format!("{path:?}: the server sent a path in the client's own folder"))
}

/// Takes `path` into the mirror only if it may be a path in the folder; else says why.
fn usable(path: &str, refused: &mut Vec<String>) -> bool {
    match refusal(path) {
        Some(why) => {
            refused.push(why);
            false
        }
        None => true,
    }
}

/// Applies one change of the feed to the mirror; a path it refuses goes to `refused`.
pub fn apply_change(
    mirror: &mut BTreeMap<String, Remote>,
    c: &ChangeInfo,
    refused: &mut Vec<String>,
) {
    let older =
        |m: &BTreeMap<String, Remote>, path: &str| m.get(path).is_none_or(|r| r.rev < c.rev);
    match c.kind {
        ChangeKind::Create | ChangeKind::Update => {
            if usable(&c.path, refused) && older(mirror, &c.path) {
                mirror.insert(c.path.clone(), remote_of_change(c));
            }
        }
        ChangeKind::Move => {
            if let Some(from) = &c.from_path
                && usable(from, refused)
                && older(mirror, from)
            {
                mirror.remove(from);
            }
            if usable(&c.path, refused) && older(mirror, &c.path) {
                mirror.insert(c.path.clone(), remote_of_change(c));
            }
        }
        ChangeKind::Delete => {
            if usable(&c.path, refused) && older(mirror, &c.path) {
                mirror.remove(&c.path);
            }
        }
    }
}

fn remote_of_change(c: &ChangeInfo) -> Remote {
    Remote {
        file_id: c.file_id.to_string(),
        rev: c.rev,
        sha256: c.sha256.clone().unwrap_or_default(),
        size: c.size,
        status: c.status,
    }
}

/// The whole tree and the cursor it is consistent with; paths it refuses go to `refused`.
pub async fn list_all(
    client: &Client,
    refused: &mut Vec<String>,
) -> Result<(BTreeMap<String, Remote>, i64), ClientError> {
    let mut mirror = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut cursor = None;
    loop {
        let page = client.list_tree("", after.as_deref(), PAGE).await?;
        // The first page's position: anything later is in the feed after it.
        cursor.get_or_insert(page.cursor);
        for e in &page.entries {
            if usable(&e.path, refused) {
                mirror.insert(e.path.clone(), remote_of(e));
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok((mirror, cursor.unwrap_or(0)))
}

/// Whether the mirror holds a head this client still needs whose status may have moved on
/// without a change in the feed (processing finished): then only a listing tells.
pub fn needs_listing(mirror: &BTreeMap<String, Remote>, base: &BTreeMap<String, Base>) -> bool {
    mirror.iter().any(|(path, r)| {
        let settled = r.ready() || r.unavailable();
        !settled && base.get(path).is_none_or(|b| b.rev != r.rev)
    })
}

/// Brings `mirror` and `cursor` up to date with the server; returns the paths it refused.
pub async fn refresh(
    client: &Client,
    mirror: &mut BTreeMap<String, Remote>,
    cursor: &mut Option<i64>,
    base: &BTreeMap<String, Base>,
) -> Result<Vec<String>, ClientError> {
    let mut refused = Vec::new();
    if cursor.is_none() || needs_listing(mirror, base) {
        let (listed, at) = list_all(client, &mut refused).await?;
        *mirror = listed;
        *cursor = Some(at);
    }
    let mut at = cursor.unwrap_or(0);
    loop {
        let page = client.changes(at, PAGE, 0).await?;
        for c in &page.changes {
            apply_change(mirror, c, &mut refused);
        }
        at = page.cursor;
        if !page.has_more {
            break;
        }
    }
    *cursor = Some(at);
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use filestore_domain::{FileId, FileStatus};

    fn change(kind: &str, path: &str, from: Option<&str>, rev: i64) -> ChangeInfo {
        ChangeInfo {
            rev,
            kind: kind.parse().unwrap(),
            path: path.into(),
            from_path: from.map(str::to_owned),
            file_id: FileId::new(),
            size: 1,
            sha256: Some("s".into()),
            status: FileStatus::Ready,
            at: String::new(),
        }
    }

    #[test]
    fn changes_apply_in_order_and_replays_of_older_ones_do_nothing() {
        let mut m = BTreeMap::new();
        let mut refused = Vec::new();
        apply_change(&mut m, &change("create", "a", None, 1), &mut refused);
        apply_change(&mut m, &change("update", "a", None, 2), &mut refused);
        apply_change(&mut m, &change("move", "b", Some("a"), 3), &mut refused);
        assert!(!m.contains_key("a"));
        assert_eq!(m["b"].rev, 3);
        // A listing taken after these already showed b at 3: replaying 1 and 2 is harmless.
        apply_change(&mut m, &change("create", "b", None, 1), &mut refused);
        assert_eq!(m["b"].rev, 3);
        apply_change(&mut m, &change("delete", "b", None, 4), &mut refused);
        assert!(m.is_empty());
        assert!(refused.is_empty());
    }

    #[test]
    fn server_paths_no_folder_may_hold_never_reach_the_mirror() {
        let long = "n".repeat(300);
        let bad = [
            "../escape.txt",
            "/etc/passwd",
            "a/../../b",
            "a\\..\\b",
            "nul\0byte",
            long.as_str(),
            "cafe\u{301}.txt",
            ".filestore/state.db",
            ".FileStore/tmp/x",
            "CON.txt",
        ];
        let mut m = BTreeMap::new();
        let mut refused = Vec::new();
        for (n, path) in bad.iter().enumerate() {
            let rev = n as i64 + 1;
            apply_change(&mut m, &change("create", path, None, rev), &mut refused);
            apply_change(
                &mut m,
                &change("move", path, Some("../from"), rev),
                &mut refused,
            );
        }
        assert!(m.is_empty(), "{m:?}");
        assert_eq!(refused.len(), bad.len() * 3, "{refused:#?}");
        // A move out to a refused path takes the file off the mirror, and puts nothing in.
        apply_change(&mut m, &change("create", "ok.txt", None, 100), &mut refused);
        apply_change(
            &mut m,
            &change("move", "../ok.txt", Some("ok.txt"), 101),
            &mut refused,
        );
        assert!(m.is_empty());
    }

    #[test]
    fn a_head_still_processing_that_this_client_needs_calls_for_a_listing() {
        let mut m = BTreeMap::new();
        let mut c = change("create", "a", None, 5);
        c.status = FileStatus::Processing;
        apply_change(&mut m, &c, &mut Vec::new());
        let mut base = BTreeMap::new();
        assert!(needs_listing(&m, &base));
        // Its own upload: it has the content already.
        base.insert(
            "a".to_owned(),
            Base {
                sha256: "s".into(),
                rev: 5,
                file_id: "f5".into(),
            },
        );
        assert!(!needs_listing(&m, &base));
    }
}
