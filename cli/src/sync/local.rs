//! The local side: which files the folder holds, each with its SHA-256. A file whose size and
//! modification time are what they were when it was last synced is not read again, unless it
//! was modified so close to that moment that the timestamp cannot tell (the racy-git rule).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest, Sha256};

use super::plan::Local;
use super::state::Synced;

/// The client's own folder at the top of the synced folder: state and partial downloads.
pub const CLIENT_DIR: &str = ".filestore";
/// Patterns (gitignore syntax) of paths never synced, at the top of the synced folder.
pub const IGNORE_FILE: &str = ".filestoreignore";
/// A modification this close to the moment a file was recorded may share its timestamp.
const RACY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("reading {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{IGNORE_FILE}: {0}")]
    Ignore(#[from] ignore::Error),
}

/// What the folder holds now.
pub struct Scan {
    pub files: BTreeMap<String, Local>,
    /// Folders sync cannot clear for a file of their name: ignored folders, and every folder
    /// above something sync leaves alone (an ignored entry, a link, a name no server can hold).
    pub held: BTreeSet<String>,
    /// Paths skipped because no server could hold them (not UTF-8, a backslash...).
    pub skipped: Vec<PathBuf>,
    /// Files read and hashed this time.
    pub hashed: usize,
    /// Symbolic links in the folder: sync never writes, moves or deletes through one.
    pub links: BTreeSet<String>,
    rules: Gitignore,
}

impl Scan {
    /// Whether the file at `rel` is synced at all: `.filestoreignore` applies to the server's
    /// files and to what both sides last agreed on too, so a path it names is neither fetched
    /// nor, once ignored, deleted anywhere; it simply stops being synced.
    pub fn syncs(&self, rel: &str) -> bool {
        is_synced(&self.rules, rel, false)
    }

    /// The symbolic link in the folder that `rel` is, or lies under, if any.
    pub fn link_over<'a>(&'a self, rel: &str) -> Option<&'a str> {
        link_over(&self.links, rel)
    }

    /// The folders above `rel`, an entry sync leaves alone, and `rel` itself if it is one.
    fn hold(&mut self, rel: &str, is_dir: bool) {
        self.held
            .extend(filestore_domain::tree::ancestors(rel).map(str::to_owned));
        if is_dir && !rel.is_empty() {
            self.held.insert(rel.to_owned());
        }
    }
}

/// The link of `links` that `rel` is, or lies under, if any. Compared by folded key: on a
/// case-insensitive file system `LINK/x` goes through `link`.
pub fn link_over<'a>(links: &'a BTreeSet<String>, rel: &str) -> Option<&'a str> {
    let key = filestore_domain::paths::fold_key(rel);
    links.iter().map(String::as_str).find(|link| {
        let link_key = filestore_domain::paths::fold_key(link);
        key == link_key || filestore_domain::tree::is_inside(&key, &link_key)
    })
}

pub fn ignore_rules(root: &Path) -> Result<Gitignore, ScanError> {
    let mut builder = GitignoreBuilder::new(root);
    let file = root.join(IGNORE_FILE);
    if file.exists()
        && let Some(e) = builder.add(&file)
    {
        return Err(e.into());
    }
    Ok(builder.build()?)
}

/// Whether `rel` is the client's own folder or inside it, in any spelling a case-insensitive
/// file system would take for it (`.FILESTORE/state.db` is the state database there).
pub fn is_client_dir(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    filestore_domain::paths::fold_key(top) == CLIENT_DIR
}

/// Whether `rel` (a `/`-separated path below the root) is synced at all.
pub fn is_synced(rules: &Gitignore, rel: &str, is_dir: bool) -> bool {
    !is_client_dir(rel)
        && !rules
            .matched_path_or_any_parents(Path::new(rel), is_dir)
            .is_ignore()
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

pub fn hash_file(path: &Path) -> Result<String, ScanError> {
    let mut file = std::fs::File::open(path).map_err(|e| ScanError::Io(path.into(), e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| ScanError::Io(path.into(), e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `meta` shows the file exactly as it was when `s` was recorded.
pub fn unchanged_since(s: &Synced, size: u64, mtime: i64) -> bool {
    let racy = i64::try_from(RACY.as_nanos()).unwrap_or(i64::MAX);
    s.size == size && s.mtime_ns == mtime && mtime < s.synced_at_ns.saturating_sub(racy)
}

/// Walks `root` (blocking: run it off the async threads).
pub fn scan(root: &Path, base: &BTreeMap<String, Synced>) -> Result<Scan, ScanError> {
    let mut scan = Scan {
        files: BTreeMap::new(),
        held: BTreeSet::new(),
        skipped: Vec::new(),
        hashed: 0,
        links: BTreeSet::new(),
        rules: ignore_rules(root)?,
    };
    let rules = scan.rules.clone();
    walk(root, "", &rules, base, &mut scan)?;
    Ok(scan)
}

fn walk(
    dir: &Path,
    prefix: &str,
    rules: &Gitignore,
    base: &BTreeMap<String, Synced>,
    scan: &mut Scan,
) -> Result<(), ScanError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ScanError::Io(dir.into(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ScanError::Io(dir.into(), e))?;
        let path = entry.path();
        let folder = prefix.trim_end_matches('/');
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            scan.hold(folder, true);
            scan.skipped.push(path);
            continue;
        };
        let rel = format!("{prefix}{name}");
        if filestore_domain::paths::normalize(&rel).as_deref() != Ok(rel.as_str()) {
            scan.hold(folder, true);
            scan.skipped.push(path);
            continue;
        }
        // A file that vanished between the listing and now is simply not there.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !is_synced(rules, &rel, kind.is_dir()) {
            scan.hold(&rel, kind.is_dir());
            continue;
        }
        if kind.is_dir() {
            walk(&path, &format!("{rel}/"), rules, base, scan)?;
        } else if kind.is_file() {
            let Ok(meta) = entry.metadata() else { continue };
            let (size, mtime) = (meta.len(), mtime_ns(&meta));
            let known = base
                .get(&rel)
                .filter(|s| unchanged_since(s, size, mtime))
                .map(|s| s.base.sha256.clone());
            let sha256 = match known {
                Some(sha) => sha,
                None => match hash_file(&path) {
                    Ok(sha) => {
                        scan.hashed += 1;
                        sha
                    }
                    Err(ScanError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            scan.files.insert(
                rel,
                Local {
                    sha256,
                    size,
                    mtime_ns: mtime,
                },
            );
        } else {
            // A link, a socket, a device: not synced, and its folders cannot be cleared.
            if kind.is_symlink() {
                scan.links.insert(rel.clone());
            }
            scan.hold(&rel, false);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::plan::Base;

    #[test]
    fn the_scan_hashes_new_files_skips_ignored_ones_and_trusts_old_unchanged_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("docs/build")).unwrap();
        std::fs::create_dir_all(root.join(CLIENT_DIR)).unwrap();
        std::fs::write(root.join("docs/a.txt"), b"a").unwrap();
        std::fs::write(root.join("docs/build/out.o"), b"o").unwrap();
        std::fs::write(root.join("notes.tmp"), b"t").unwrap();
        std::fs::write(root.join(CLIENT_DIR).join("state.db"), b"db").unwrap();
        std::fs::write(root.join(IGNORE_FILE), b"*.tmp\nbuild/\n").unwrap();

        let first = scan(root, &BTreeMap::new()).unwrap();
        let paths: Vec<&str> = first.files.keys().map(String::as_str).collect();
        assert_eq!(paths, [IGNORE_FILE, "docs/a.txt"]);
        assert_eq!(
            first.files["docs/a.txt"].sha256,
            hex::encode(Sha256::digest(b"a"))
        );

        // Recorded long after its last modification: trusted without reading.
        let a = &first.files["docs/a.txt"];
        let mut base = BTreeMap::new();
        base.insert(
            "docs/a.txt".to_owned(),
            Synced {
                base: Base {
                    sha256: "recorded".into(),
                    rev: 1,
                    file_id: "f".into(),
                },
                size: a.size,
                mtime_ns: a.mtime_ns,
                synced_at_ns: a.mtime_ns + 10_000_000_000,
            },
        );
        let second = scan(root, &base).unwrap();
        assert_eq!(second.files["docs/a.txt"].sha256, "recorded");
        assert_eq!(
            second.hashed, 1,
            "only the ignore file, not in the base, was read"
        );

        // Recorded within the same instant as a modification: read again.
        base.get_mut("docs/a.txt").unwrap().synced_at_ns = a.mtime_ns;
        let third = scan(root, &base).unwrap();
        assert_eq!(
            third.files["docs/a.txt"].sha256,
            first.files["docs/a.txt"].sha256
        );
    }

    #[test]
    fn what_sync_leaves_alone_holds_its_name_and_the_folders_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for folder in ["docs/build", "notes", "empty", "plain", "linked"] {
            std::fs::create_dir_all(root.join(folder)).unwrap();
        }
        std::fs::write(root.join(IGNORE_FILE), b"*.tmp\nbuild/\n").unwrap();
        std::fs::write(root.join("docs/a.txt"), b"a").unwrap();
        std::fs::write(root.join("docs/build/out.o"), b"o").unwrap();
        std::fs::write(root.join("notes/x.tmp"), b"t").unwrap();
        std::fs::write(root.join("plain/b.txt"), b"b").unwrap();
        std::os::unix::fs::symlink("../docs/a.txt", root.join("linked/to-a")).unwrap();

        let scan = scan(root, &BTreeMap::new()).unwrap();
        let held: Vec<&str> = scan.held.iter().map(String::as_str).collect();
        assert_eq!(held, ["docs", "docs/build", "linked", "notes"]);

        // The rules speak of every side's files: a server file they name is not synced either.
        assert!(!scan.syncs("elsewhere/y.tmp"));
        assert!(!scan.syncs("src/build/z.o"));
        assert!(!scan.syncs(".filestore/state.db"));
        assert!(scan.syncs("build"), "`build/` names folders, not a file");
        assert!(scan.syncs("docs/a.txt"));
    }
}
