//! The sync decision, pure: three trees in (what the folder holds now, what the server holds
//! now, and what both held when they last agreed), the steps that bring them together out.
//!
//! A side "changed" when it differs from the last agreement. Only one side changed: its change
//! goes to the other. Both changed to the same content: they agree already. Both changed to
//! different content: a true conflict, and the local side is kept as a conflicted copy next to
//! the server's, so nothing is lost. A delete never beats an edit: the edit comes back. A file
//! and a folder of the same name (`d1` on one side, `d1/a.txt` on the other) keep both: the
//! folder keeps the name and the file becomes a conflicted copy beside it, on whichever side
//! holds it, so every device decides alike.
use std::collections::{BTreeMap, BTreeSet};

use filestore_domain::FileStatus;
use filestore_domain::tree::{ancestors, is_inside};

/// A file in the local folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    pub sha256: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// The head of a path on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub file_id: String,
    pub rev: i64,
    pub sha256: String,
    pub size: u64,
    /// Its content can be downloaded only once `ready`.
    pub status: FileStatus,
}

impl Remote {
    pub fn ready(&self) -> bool {
        self.status == FileStatus::Ready
    }

    /// Never downloadable: quarantined as malware, or failed for good.
    pub fn unavailable(&self) -> bool {
        matches!(
            self.status,
            FileStatus::Quarantined | FileStatus::Failed | FileStatus::Deleted
        )
    }
}

/// What the folder and the server both held at a path when they last agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub sha256: String,
    pub rev: i64,
    pub file_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the local file; the server refuses it if the path is no longer at `parent_rev`.
    Upload { path: String, parent_rev: i64 },
    /// Trash the server's file, if it is still at `parent_rev`.
    DeleteRemote { path: String, parent_rev: i64 },
    /// The local file was renamed: rename the server's, without sending bytes.
    MoveRemote {
        from: String,
        to: String,
        parent_rev: i64,
    },
    /// Fetch the server's head into the folder (the local file, if any, is unchanged).
    Download { path: String, remote: Remote },
    /// The server's file was renamed: rename the local one.
    MoveLocal {
        from: String,
        to: String,
        remote: Remote,
    },
    /// The server trashed the file and the local one is unchanged: remove it.
    DeleteLocal { path: String },
    /// Both sides changed it differently: the local file moves to `copy` and is uploaded as a
    /// new file there; the server's version then comes down to `path`.
    Conflict {
        path: String,
        copy: String,
        remote: Remote,
    },
    /// The local file has the name of a folder on the server: it moves to `copy` and is
    /// uploaded as a new file there; the folder's files then come down.
    SetAsideLocal { path: String, copy: String },
    /// The server's file has the name of a local folder: move it to `copy` there, if it is
    /// still at `parent_rev` (the next pass fetches it); the folder's files then go up.
    SetAsideRemote {
        path: String,
        copy: String,
        parent_rev: i64,
    },
    /// Both sides hold the same content: remember that they agree.
    Agree { path: String, remote: Remote },
    /// Neither side has it any more.
    Forget { path: String },
    /// The server's head is still processing; look again later.
    Wait { path: String },
    /// The server's head can never be fetched (quarantined as malware, failed for good): the
    /// local side stays as it is, and the pass says so instead of retrying it forever.
    Unavailable { path: String, status: FileStatus },
}

impl Action {
    /// Actions run in this order: removals and renames first, so a path a file vacates is
    /// free before another file (or a folder) takes it; then what creates content.
    fn phase(&self) -> u8 {
        match self {
            Self::Agree { .. }
            | Self::Forget { .. }
            | Self::Wait { .. }
            | Self::Unavailable { .. } => 0,
            // A file moved aside frees its name for the folder's files.
            Self::DeleteLocal { .. }
            | Self::DeleteRemote { .. }
            | Self::SetAsideLocal { .. }
            | Self::SetAsideRemote { .. } => 1,
            Self::MoveLocal { .. } | Self::MoveRemote { .. } => 2,
            Self::Conflict { .. } => 3,
            Self::Upload { .. } => 4,
            Self::Download { .. } => 5,
        }
    }

    /// Whether, once this step is done, both sides hold a file at its path.
    fn keeps_file(&self) -> bool {
        matches!(
            self,
            Self::Upload { .. }
                | Self::Download { .. }
                | Self::Wait { .. }
                | Self::Unavailable { .. }
                | Self::Agree { .. }
                | Self::Conflict { .. }
        )
    }
}

/// Names a conflicted copy of `path`; `taken` says which names are in use.
pub type CopyNamer<'a> = dyn Fn(&str, &dyn Fn(&str) -> bool) -> String + 'a;

pub struct Trees<'a> {
    pub local: &'a BTreeMap<String, Local>,
    pub remote: &'a BTreeMap<String, Remote>,
    pub base: &'a BTreeMap<String, Base>,
    /// Local folders sync cannot clear (ignored, or holding something sync leaves alone): no
    /// file of the server's can come down to any of them.
    pub held: &'a BTreeSet<String>,
}

/// The steps that bring the three trees together, in the order to run them.
pub fn plan(trees: &Trees<'_>, copy_name: &CopyNamer<'_>) -> Vec<Action> {
    let Trees {
        local,
        remote,
        base,
        ..
    } = *trees;
    let paths: BTreeSet<&String> = local
        .keys()
        .chain(remote.keys())
        .chain(base.keys())
        .collect();
    let mut actions = Vec::new();
    let mut copies: BTreeSet<String> = BTreeSet::new();
    // The paths that hold a file on both sides once the plan is carried out.
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for key in paths {
        let (l, r, b) = (local.get(key), remote.get(key), base.get(key));
        let local_changed = l.map(|l| &l.sha256) != b.map(|b| &b.sha256);
        let remote_changed = r.map(|r| r.rev) != b.map(|b| b.rev);
        let path = key.clone();
        let action = match (local_changed, remote_changed) {
            (false, false) => None,
            (true, false) => Some(match l {
                Some(_) => Action::Upload {
                    path,
                    parent_rev: b.map_or(0, |b| b.rev),
                },
                None => Action::DeleteRemote {
                    parent_rev: b.map_or(0, |b| b.rev),
                    path,
                },
            }),
            (false, true) => match r {
                Some(r) if l.is_some_and(|l| l.sha256 == r.sha256) => Some(Action::Agree {
                    path,
                    remote: r.clone(),
                }),
                Some(r) => Some(fetch(path, r)),
                None if l.is_some() => Some(Action::DeleteLocal { path }),
                None => Some(Action::Forget { path }),
            },
            (true, true) => match (l, r) {
                (None, None) => Some(Action::Forget { path }),
                (Some(l), Some(r)) if l.sha256 == r.sha256 => Some(Action::Agree {
                    path,
                    remote: r.clone(),
                }),
                // The folder's edit against the server's delete: the edit comes back.
                (Some(_), None) => Some(Action::Upload {
                    path,
                    parent_rev: 0,
                }),
                // The folder's delete against a head that can never come down: it goes to
                // trash there too.
                (None, Some(r)) if r.unavailable() => Some(Action::DeleteRemote {
                    path,
                    parent_rev: r.rev,
                }),
                // The folder's delete against the server's edit: the edit comes down.
                (None, Some(r)) => Some(fetch(path, r)),
                // The server's head can never come down (it stays in the file's history):
                // the folder's edit takes its place.
                (Some(_), Some(r)) if r.unavailable() => Some(Action::Upload {
                    path,
                    parent_rev: r.rev,
                }),
                (Some(_), Some(r)) => Some(Action::Conflict {
                    copy: name_copy(&path, trees, &mut copies, copy_name),
                    path,
                    remote: r.clone(),
                }),
            },
        };
        if action.as_ref().map_or(l.is_some(), Action::keeps_file) {
            kept.insert(key.as_str());
        }
        actions.extend(action);
    }
    let actions = set_aside_files_named_like_folders(actions, &kept, trees, &mut copies, copy_name);
    let mut actions = pair_renames(actions, trees);
    actions.sort_by_key(Action::phase);
    actions
}

/// A name for a conflicted copy of `path` that no side uses and no other step takes.
fn name_copy(
    path: &str,
    trees: &Trees<'_>,
    copies: &mut BTreeSet<String>,
    copy_name: &CopyNamer<'_>,
) -> String {
    let copy = {
        let taken = |name: &str| {
            trees.local.contains_key(name)
                || trees.held.contains(name)
                || trees.remote.contains_key(name)
                || trees.base.contains_key(name)
                || copies.contains(name)
        };
        copy_name(path, &taken)
    };
    copies.insert(copy.clone());
    copy
}

/// A file that would end up where a folder ends up too (`d1`, and `d1/a.txt` beside it) cannot
/// be: the folder keeps the name and the file moves aside to a conflicted copy, on the side
/// that holds it. Each side's tree nests properly, so the file is on one side (a new or edited
/// local file to upload, or the server's head to fetch) and the folder on the other. A local
/// folder that holds only what sync leaves alone (ignored files) keeps its name the same way.
fn set_aside_files_named_like_folders(
    actions: Vec<Action>,
    kept: &BTreeSet<&str>,
    trees: &Trees<'_>,
    copies: &mut BTreeSet<String>,
    copy_name: &CopyNamer<'_>,
) -> Vec<Action> {
    let files_on_folders: BTreeSet<&str> = kept
        .iter()
        .copied()
        .flat_map(ancestors)
        .filter(|folder| kept.contains(folder))
        .chain(kept.iter().copied().filter(|p| trees.held.contains(*p)))
        .collect();
    if files_on_folders.is_empty() {
        return actions;
    }
    let mut out = Vec::with_capacity(actions.len());
    for a in actions {
        let aside = match &a {
            Action::Upload { path, .. }
            | Action::Download { path, .. }
            | Action::Wait { path }
            | Action::Unavailable { path, .. }
                if files_on_folders.contains(path.as_str()) =>
            {
                Some(path.clone())
            }
            _ => None,
        };
        let Some(aside) = aside else {
            out.push(a);
            continue;
        };
        let copy = name_copy(&aside, trees, copies, copy_name);
        out.push(match trees.remote.get(&aside) {
            // The server's file (to fetch, or still processing): it moves aside there.
            Some(r) if !matches!(a, Action::Upload { .. }) => Action::SetAsideRemote {
                path: aside,
                copy,
                parent_rev: r.rev,
            },
            // The folder's own new or edited file: it moves aside here.
            _ => Action::SetAsideLocal { path: aside, copy },
        });
    }
    out
}

/// Whether one path is inside the other: no rename between them can be made in one step (the
/// server refuses to move a file into a folder of its own name; locally the folder still holds
/// the file that leaves it).
fn nested(a: &str, b: &str) -> bool {
    is_inside(a, b) || is_inside(b, a)
}

fn fetch(path: String, r: &Remote) -> Action {
    if r.ready() {
        Action::Download {
            path,
            remote: r.clone(),
        }
    } else if r.unavailable() {
        Action::Unavailable {
            path,
            status: r.status,
        }
    } else {
        Action::Wait { path }
    }
}

/// A delete and a new file of the same content on one side are a rename: it is cheaper to
/// send (no bytes) and keeps the file's history on the server.
fn pair_renames(actions: Vec<Action>, trees: &Trees<'_>) -> Vec<Action> {
    let mut out = Vec::with_capacity(actions.len());
    let mut remote_deletes: Vec<(String, i64)> = Vec::new();
    let mut local_deletes: Vec<String> = Vec::new();
    let mut uploads: Vec<(String, i64)> = Vec::new();
    let mut downloads: Vec<(String, Remote)> = Vec::new();
    for a in actions {
        match a {
            Action::DeleteRemote { path, parent_rev } => remote_deletes.push((path, parent_rev)),
            Action::DeleteLocal { path } => local_deletes.push(path),
            Action::Upload {
                path,
                parent_rev: 0,
            } if !trees.base.contains_key(&path) => {
                uploads.push((path, 0));
            }
            Action::Download { path, remote } if !trees.base.contains_key(&path) => {
                downloads.push((path, remote));
            }
            other => out.push(other),
        }
    }
    // Local renames: the content that vanished from one path appeared at another.
    for (from, parent_rev) in remote_deletes {
        let sha = trees.base.get(&from).map(|b| &b.sha256);
        let fresh = trees.remote.get(&from).is_some();
        let to = uploads.iter().position(|(to, _)| {
            fresh
                && !nested(&from, to)
                && !trees.remote.contains_key(to)
                && trees.local.get(to).map(|l| &l.sha256) == sha
        });
        match to {
            Some(i) => {
                let (to, _) = uploads.swap_remove(i);
                out.push(Action::MoveRemote {
                    from,
                    to,
                    parent_rev,
                });
            }
            None => out.push(Action::DeleteRemote {
                path: from,
                parent_rev,
            }),
        }
    }
    // Server renames: the file (same id) the server moved away is unchanged here.
    for from in local_deletes {
        let id = trees.base.get(&from).map(|b| &b.file_id);
        let to = downloads.iter().position(|(to, r)| {
            Some(&r.file_id) == id
                && r.ready()
                && !nested(&from, to)
                && !trees.local.contains_key(to)
        });
        match to {
            Some(i) => {
                let (to, remote) = downloads.swap_remove(i);
                out.push(Action::MoveLocal { from, to, remote });
            }
            None => out.push(Action::DeleteLocal { path: from }),
        }
    }
    out.extend(
        uploads
            .into_iter()
            .map(|(path, parent_rev)| Action::Upload { path, parent_rev }),
    );
    out.extend(
        downloads
            .into_iter()
            .map(|(path, remote)| Action::Download { path, remote }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn local(sha: &str) -> Local {
        Local {
            sha256: sha.into(),
            size: 1,
            mtime_ns: 0,
        }
    }

    fn remote(sha: &str, rev: i64) -> Remote {
        Remote {
            file_id: format!("id-{sha}"),
            rev,
            sha256: sha.into(),
            size: 1,
            status: FileStatus::Ready,
        }
    }

    fn base(sha: &str, rev: i64) -> Base {
        Base {
            sha256: sha.into(),
            rev,
            file_id: format!("id-{sha}"),
        }
    }

    fn namer(path: &str, taken: &dyn Fn(&str) -> bool) -> String {
        let mut n = 1;
        loop {
            let name = format!("{path} (conflicted copy {n})");
            if !taken(&name) {
                return name;
            }
            n += 1;
        }
    }

    #[derive(Clone)]
    struct Case {
        local: BTreeMap<String, Local>,
        remote: BTreeMap<String, Remote>,
        base: BTreeMap<String, Base>,
        held: BTreeSet<String>,
    }

    impl Case {
        fn new() -> Self {
            Self {
                local: BTreeMap::new(),
                remote: BTreeMap::new(),
                base: BTreeMap::new(),
                held: BTreeSet::new(),
            }
        }
        /// A local folder sync cannot clear (ignored, or holding something ignored).
        fn held(mut self, p: &str) -> Self {
            self.held.insert(p.into());
            self
        }
        fn l(mut self, p: &str, sha: &str) -> Self {
            self.local.insert(p.into(), local(sha));
            self
        }
        fn r(mut self, p: &str, sha: &str, rev: i64) -> Self {
            self.remote.insert(p.into(), remote(sha, rev));
            self
        }
        fn b(mut self, p: &str, sha: &str, rev: i64) -> Self {
            self.base.insert(p.into(), base(sha, rev));
            self
        }
        fn plan(&self) -> Vec<Action> {
            plan(
                &Trees {
                    local: &self.local,
                    remote: &self.remote,
                    base: &self.base,
                    held: &self.held,
                },
                &namer,
            )
        }
    }

    #[test]
    fn agreement_needs_nothing() {
        let c = Case::new().l("a", "x").r("a", "x", 3).b("a", "x", 3);
        assert!(c.plan().is_empty());
    }

    #[test]
    fn a_local_edit_uploads_against_the_revision_it_edited() {
        let c = Case::new().l("a", "y").r("a", "x", 3).b("a", "x", 3);
        assert_eq!(
            c.plan(),
            vec![Action::Upload {
                path: "a".into(),
                parent_rev: 3
            }]
        );
        let new = Case::new().l("n", "y");
        assert_eq!(
            new.plan(),
            vec![Action::Upload {
                path: "n".into(),
                parent_rev: 0
            }]
        );
    }

    #[test]
    fn a_server_edit_downloads_and_a_server_delete_removes_the_unchanged_copy() {
        let c = Case::new().l("a", "x").r("a", "y", 5).b("a", "x", 3);
        assert!(matches!(&c.plan()[..], [Action::Download { path, .. }] if path == "a"));
        let d = Case::new().l("a", "x").b("a", "x", 3);
        assert_eq!(d.plan(), vec![Action::DeleteLocal { path: "a".into() }]);
    }

    #[test]
    fn different_edits_on_both_sides_keep_both() {
        let c = Case::new()
            .l("a", "mine")
            .r("a", "theirs", 5)
            .b("a", "x", 3);
        let plan = c.plan();
        assert!(
            matches!(&plan[..], [Action::Conflict { path, copy, remote }]
                if path == "a" && copy == "a (conflicted copy 1)" && remote.rev == 5),
            "{plan:?}"
        );
    }

    #[test]
    fn the_same_edit_on_both_sides_is_agreement() {
        let c = Case::new().l("a", "y").r("a", "y", 5).b("a", "x", 3);
        assert!(matches!(&c.plan()[..], [Action::Agree { .. }]));
    }

    #[test]
    fn an_edit_beats_a_delete_on_either_side() {
        let local_edit = Case::new().l("a", "y").b("a", "x", 3);
        assert_eq!(
            local_edit.plan(),
            vec![Action::Upload {
                path: "a".into(),
                parent_rev: 0
            }]
        );
        let remote_edit = Case::new().r("a", "y", 5).b("a", "x", 3);
        assert!(matches!(&remote_edit.plan()[..], [Action::Download { .. }]));
    }

    #[test]
    fn renames_are_moves_not_delete_and_upload() {
        let local_rename = Case::new().l("new", "x").r("old", "x", 3).b("old", "x", 3);
        assert_eq!(
            local_rename.plan(),
            vec![Action::MoveRemote {
                from: "old".into(),
                to: "new".into(),
                parent_rev: 3
            }]
        );
        let remote_rename = Case::new().l("old", "x").r("new", "x", 7).b("old", "x", 3);
        assert!(matches!(&remote_rename.plan()[..],
            [Action::MoveLocal { from, to, .. }] if from == "old" && to == "new"));
    }

    #[test]
    fn a_head_still_processing_is_waited_for() {
        let mut c = Case::new().r("a", "y", 5);
        c.remote.get_mut("a").unwrap().status = FileStatus::Processing;
        assert_eq!(c.plan(), vec![Action::Wait { path: "a".into() }]);
    }

    #[test]
    fn a_head_that_can_never_be_fetched_is_reported_and_a_local_edit_replaces_it() {
        let mut quarantined = remote("virus", 4);
        quarantined.status = FileStatus::Quarantined;
        let mut c = Case::new().l("a", "x").b("a", "x", 3);
        c.remote.insert("a".into(), quarantined);
        assert_eq!(
            c.plan(),
            vec![Action::Unavailable {
                path: "a".into(),
                status: FileStatus::Quarantined
            }]
        );
        let mut deleted = c.clone();
        deleted.local.clear();
        assert_eq!(
            deleted.plan(),
            vec![Action::DeleteRemote {
                path: "a".into(),
                parent_rev: 4
            }]
        );
        let edited = c.l("a", "y");
        assert_eq!(
            edited.plan(),
            vec![Action::Upload {
                path: "a".into(),
                parent_rev: 4
            }]
        );
    }

    #[test]
    fn removals_and_renames_run_before_what_creates_content() {
        let c = Case::new()
            .l("z-new", "n")
            .l("gone", "g")
            .b("gone", "g", 1)
            .r("gone", "g", 1)
            .r("down", "d", 2);
        let phases: Vec<u8> = c.plan().iter().map(Action::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]), "{phases:?}");
    }

    #[test]
    fn a_file_and_a_folder_of_one_name_keep_both_and_the_folder_keeps_the_name() {
        // The file is here, the folder on the server: the local file goes aside.
        let here = Case::new().l("d1", "f").r("d1/a", "x", 4);
        assert_eq!(
            here.plan(),
            vec![
                Action::SetAsideLocal {
                    path: "d1".into(),
                    copy: "d1 (conflicted copy 1)".into()
                },
                Action::Download {
                    path: "d1/a".into(),
                    remote: remote("x", 4)
                },
            ]
        );
        // The folder is here, the file on the server: the server's file goes aside, before
        // the folder's files go up.
        let there = Case::new().l("d1/a", "x").r("d1", "f", 4);
        assert_eq!(
            there.plan(),
            vec![
                Action::SetAsideRemote {
                    path: "d1".into(),
                    copy: "d1 (conflicted copy 1)".into(),
                    parent_rev: 4
                },
                Action::Upload {
                    path: "d1/a".into(),
                    parent_rev: 0
                },
            ]
        );
        // This side emptied the folder before making the file: no conflict, both changes go up.
        let emptied = Case::new().l("d1", "f").r("d1/a", "x", 4).b("d1/a", "x", 4);
        assert!(matches!(&emptied.plan()[..],
            [Action::DeleteRemote { path, .. }, Action::Upload { path: up, .. }]
                if path == "d1/a" && up == "d1"));
    }

    #[test]
    fn a_server_file_named_like_a_local_folder_of_ignored_files_goes_aside_there() {
        // `build/` here holds only ignored files; the server has a file `build`.
        let c = Case::new().held("build").r("build", "f", 4);
        assert_eq!(
            c.plan(),
            vec![Action::SetAsideRemote {
                path: "build".into(),
                copy: "build (conflicted copy 1)".into(),
                parent_rev: 4
            }]
        );
        // A copy name is never one the folder already holds, even if nothing syncs it.
        let taken = c.held("build (conflicted copy 1)");
        assert!(matches!(&taken.plan()[..],
            [Action::SetAsideRemote { copy, .. }] if copy == "build (conflicted copy 2)"));
    }

    #[test]
    fn a_file_moved_into_or_out_of_a_folder_of_its_own_name_is_no_rename() {
        let local = Case::new().l("d1", "x").r("d1/a", "x", 3).b("d1/a", "x", 3);
        assert_eq!(
            local.plan(),
            vec![
                Action::DeleteRemote {
                    path: "d1/a".into(),
                    parent_rev: 3
                },
                Action::Upload {
                    path: "d1".into(),
                    parent_rev: 0
                },
            ]
        );
        let remote = Case::new().l("d1/a", "x").r("d1", "x", 7).b("d1/a", "x", 3);
        assert!(matches!(&remote.plan()[..],
            [Action::DeleteLocal { path }, Action::Download { path: to, .. }]
                if path == "d1/a" && to == "d1"));
    }

    fn side() -> impl Strategy<Value = Option<u8>> {
        prop::option::of(0u8..3)
    }

    type Shas = BTreeMap<String, String>;

    /// The two sides once `plan` is carried out, every step succeeding (and the next pass
    /// fetching what a step moved aside on the server), and the contents removed locally.
    fn carry_out(c: &Case, plan: &[Action]) -> (Shas, Shas, BTreeSet<String>) {
        let mut local: Shas = c
            .local
            .iter()
            .map(|(p, l)| (p.clone(), l.sha256.clone()))
            .collect();
        let mut remote: Shas = c
            .remote
            .iter()
            .map(|(p, r)| (p.clone(), r.sha256.clone()))
            .collect();
        let mut removed = BTreeSet::new();
        for a in plan {
            match a {
                Action::Upload { path, .. } => {
                    remote.insert(path.clone(), local[path].clone());
                }
                Action::DeleteRemote { path, .. } => {
                    remote.remove(path);
                }
                Action::MoveRemote { from, to, .. } => {
                    let sha = remote.remove(from).unwrap();
                    remote.insert(to.clone(), sha);
                }
                Action::Download { path, remote: r } => {
                    local.insert(path.clone(), r.sha256.clone());
                }
                Action::MoveLocal { from, to, .. } => {
                    let sha = local.remove(from).unwrap();
                    local.insert(to.clone(), sha);
                }
                Action::DeleteLocal { path } => {
                    removed.extend(local.remove(path));
                }
                Action::Conflict {
                    path,
                    copy,
                    remote: r,
                } => {
                    let mine = local.remove(path).unwrap();
                    remote.insert(copy.clone(), mine.clone());
                    local.insert(copy.clone(), mine);
                    local.insert(path.clone(), r.sha256.clone());
                }
                Action::SetAsideLocal { path, copy } => {
                    let mine = local.remove(path).unwrap();
                    remote.insert(copy.clone(), mine.clone());
                    local.insert(copy.clone(), mine);
                }
                Action::SetAsideRemote { path, copy, .. } => {
                    let theirs = remote.remove(path).unwrap();
                    local.insert(copy.clone(), theirs.clone());
                    remote.insert(copy.clone(), theirs);
                }
                Action::Agree { .. }
                | Action::Forget { .. }
                | Action::Wait { .. }
                | Action::Unavailable { .. } => {}
            }
        }
        (local, remote, removed)
    }

    proptest! {
        /// Applying the plan as if every step succeeds leaves every path agreed on both sides,
        /// and no content the folder holds is dropped without reaching the server.
        #[test]
        fn a_plan_converges_and_loses_nothing(
            cases in prop::collection::vec((side(), side(), side()), 1..6)
        ) {
            let mut c = Case::new();
            for (i, (l, r, b)) in cases.iter().enumerate() {
                let p = format!("p{i}");
                if let Some(l) = l { c = c.l(&p, &format!("c{l}")); }
                if let Some(r) = r { c = c.r(&p, &format!("c{r}"), 10 + i64::from(*r)); }
                if let Some(b) = b { c = c.b(&p, &format!("c{b}"), 10 + i64::from(*b)); }
            }
            let plan = c.plan();
            let (local, remote, removed) = carry_out(&c, &plan);
            prop_assert_eq!(&local, &remote, "plan {:?}", plan);
            for l in c.local.values() {
                let on_server = remote.values().any(|s| *s == l.sha256)
                    || c.base.values().any(|b| b.sha256 == l.sha256)
                    || removed.contains(&l.sha256);
                prop_assert!(on_server, "{} lost by {:?}", l.sha256, plan);
            }
        }

        /// A file `d` and files in a folder `d`, each side holding one or the other (the base
        /// anything; the local folder perhaps holding ignored files too): the plan leaves both
        /// sides equal, no file where a folder is, and every local content on the server.
        #[test]
        fn a_file_and_a_folder_of_one_name_converge_and_lose_nothing(
            cases in prop::collection::vec((side(), side(), side()), 3),
            local_folder in any::<bool>(),
            remote_folder in any::<bool>(),
            ignored_inside in any::<bool>(),
        ) {
            let mut c = Case::new();
            if local_folder && ignored_inside {
                c = c.held("d");
            }
            for ((l, r, b), p) in cases.iter().zip(["d", "d/x", "d/y"]) {
                let in_folder = p != "d";
                if let Some(l) = l.filter(|_| local_folder == in_folder) {
                    c = c.l(p, &format!("c{l}"));
                }
                if let Some(r) = r.filter(|_| remote_folder == in_folder) {
                    c = c.r(p, &format!("c{r}"), 10 + i64::from(r));
                }
                if let Some(b) = b {
                    c = c.b(p, &format!("c{b}"), 10 + i64::from(*b));
                }
            }
            let plan = c.plan();
            let (local, remote, removed) = carry_out(&c, &plan);
            prop_assert_eq!(&local, &remote, "plan {:?}", plan);
            let under_a_file = remote.keys().find(|p| ancestors(p).any(|a| remote.contains_key(a)));
            prop_assert!(under_a_file.is_none(), "{:?} under a file, by {:?}", under_a_file, plan);
            prop_assert!(!(c.held.contains("d") && local.contains_key("d")),
                "a file put where the folder of ignored files is, by {:?}", plan);
            for l in c.local.values() {
                let on_server = remote.values().any(|s| *s == l.sha256)
                    || c.base.values().any(|b| b.sha256 == l.sha256)
                    || removed.contains(&l.sha256);
                prop_assert!(on_server, "{} lost by {:?}", l.sha256, plan);
            }
        }
    }
}
