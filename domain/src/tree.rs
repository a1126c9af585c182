//! A user's tree of paths: what a client's parent revision demands of the path it writes, how
//! paths nest (a file cannot sit under a file, nor replace a folder), and how a folder move
//! maps the paths inside it.
//!
//! Revisions are the owner's change sequence numbers: every change to a path (a new version, a
//! move, a delete, a restore) gives it the number of that change, so a revision names one state
//! of one path and only ever grows.
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a write requires of the path's current head, from the client's `parentRev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No `parentRev`: the write becomes the head whatever is there; the previous head stays as
    /// a version, so nothing is lost.
    Any,
    /// `parentRev: 0`: the path must not hold a live file (a create).
    Absent,
    /// `parentRev: n`: the live head must be revision `n` (an edit of what the client saw).
    Rev(i64),
}

impl Expect {
    pub fn from_parent_rev(parent_rev: Option<i64>) -> Self {
        match parent_rev {
            None => Self::Any,
            Some(0) => Self::Absent,
            Some(n) => Self::Rev(n),
        }
    }

    /// The `parentRev` this came from, as stored with a registered upload.
    pub fn parent_rev(self) -> Option<i64> {
        match self {
            Self::Any => None,
            Self::Absent => Some(0),
            Self::Rev(n) => Some(n),
        }
    }

    /// Whether a path whose live head is `current` (`None`: no live file) meets this.
    pub fn check(self, current: Option<i64>) -> Result<(), RevMismatch> {
        let ok = match self {
            Self::Any => true,
            Self::Absent => current.is_none(),
            Self::Rev(n) => current == Some(n),
        };
        if ok {
            Ok(())
        } else {
            Err(RevMismatch {
                expected: self.parent_rev(),
                current,
            })
        }
    }
}

/// A write named a head that is no longer (or not yet) the path's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_mismatch(*.expected, *.current))]
pub struct RevMismatch {
    pub expected: Option<i64>,
    /// The path's live head now, if any.
    pub current: Option<i64>,
}

fn describe_mismatch(expected: Option<i64>, current: Option<i64>) -> String {
    match (expected, current) {
        (Some(0), Some(cur)) => format!("the path already holds a file (revision {cur})"),
        (Some(exp), Some(cur)) => {
            format!("the file changed: its revision is {cur}, not {exp}")
        }
        (Some(exp), None) => format!("revision {exp} is no longer the path's: it was deleted"),
        (None, _) => "the path changed".to_owned(),
    }
}

/// The folders that contain `path`, outermost first: `a/b/c` gives `a`, `a/b`.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Whether `path` lies inside the folder `folder` (at any depth).
pub fn is_inside(path: &str, folder: &str) -> bool {
    path.len() > folder.len() + 1
        && path.starts_with(folder)
        && path.as_bytes().get(folder.len()) == Some(&b'/')
}

/// Where `path`, inside the folder `from` or equal to it, lands when `from` moves to `to`.
pub fn moved_path(path: &str, from: &str, to: &str) -> Option<String> {
    if path == from {
        return Some(to.to_owned());
    }
    is_inside(path, from).then(|| format!("{to}{}", &path[from.len()..]))
}

/// Why a move cannot happen, before looking at what the tree holds.
pub fn check_move(from: &str, to: &str) -> Result<(), &'static str> {
    if from == to {
        return Err("the source and the destination are the same path");
    }
    if is_inside(to, from) {
        return Err("a folder cannot move inside itself");
    }
    Ok(())
}

/// What one change in the feed did to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A file appeared: uploaded to a free path, or restored from trash.
    Create,
    /// A new version became the head of a live path.
    Update,
    /// A file moved from `fromPath` to `path`, its versions with it.
    Move,
    /// A file went to trash.
    Delete,
}

impl ChangeKind {
    pub const ALL: [ChangeKind; 4] = [Self::Create, Self::Update, Self::Move, Self::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Move => "move",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown change kind {s:?}"))
    }
}

/// The name under which a client keeps its side of a true conflict, next to the original:
/// `notes (conflicted copy laptop 2026-12-01).txt`. The extension stays last so the copy opens
/// with the same program; a dot that starts the name is not an extension.
pub fn conflicted_copy(path: &str, host: &str, date: &str) -> String {
    let (folder, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    format!("{folder}{stem} (conflicted copy {host} {date}){ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parent_rev_overwrites_zero_creates_and_n_edits_exactly_n() {
        assert_eq!(Expect::from_parent_rev(None).check(Some(7)), Ok(()));
        assert_eq!(Expect::from_parent_rev(None).check(None), Ok(()));
        assert_eq!(Expect::from_parent_rev(Some(0)).check(None), Ok(()));
        assert_eq!(
            Expect::from_parent_rev(Some(0)).check(Some(3)),
            Err(RevMismatch {
                expected: Some(0),
                current: Some(3)
            })
        );
        assert_eq!(Expect::Rev(3).check(Some(3)), Ok(()));
        assert!(Expect::Rev(3).check(Some(4)).is_err());
        assert!(Expect::Rev(3).check(None).is_err());
    }

    #[test]
    fn a_parent_rev_survives_being_stored_and_read_back() {
        for e in [Expect::Any, Expect::Absent, Expect::Rev(42)] {
            assert_eq!(Expect::from_parent_rev(e.parent_rev()), e);
        }
    }

    #[test]
    fn mismatches_say_what_the_path_holds_now() {
        let err = Expect::Rev(3).check(Some(9)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the file changed: its revision is 9, not 3"
        );
        let err = Expect::Absent.check(Some(2)).unwrap_err();
        assert!(err.to_string().contains("already holds a file"));
    }

    #[test]
    fn ancestors_are_the_enclosing_folders_outermost_first() {
        assert_eq!(ancestors("a/b/c.txt").collect::<Vec<_>>(), vec!["a", "a/b"]);
        assert_eq!(ancestors("top.txt").count(), 0);
    }

    #[test]
    fn inside_means_below_the_folder_not_a_sibling_sharing_its_prefix() {
        assert!(is_inside("docs/a.txt", "docs"));
        assert!(is_inside("docs/x/y", "docs"));
        assert!(!is_inside("docs", "docs"));
        assert!(!is_inside("docs2/a.txt", "docs"));
        assert!(!is_inside("docs/", "docs"));
    }

    #[test]
    fn a_folder_move_carries_everything_inside_it() {
        assert_eq!(moved_path("a/b/c", "a", "z").as_deref(), Some("z/b/c"));
        assert_eq!(moved_path("a", "a", "z").as_deref(), Some("z"));
        assert_eq!(moved_path("ab/c", "a", "z"), None);
    }

    #[test]
    fn a_move_onto_itself_or_into_itself_is_refused() {
        assert!(check_move("a", "a").is_err());
        assert!(check_move("a", "a/b").is_err());
        assert!(check_move("a", "ab").is_ok());
        assert!(check_move("a/b", "a").is_ok());
    }

    #[test]
    fn change_kinds_round_trip_through_their_names() {
        for k in ChangeKind::ALL {
            assert_eq!(k.as_str().parse::<ChangeKind>(), Ok(k));
        }
        assert!("rename".parse::<ChangeKind>().is_err());
    }

    #[test]
    fn a_conflicted_copy_keeps_its_folder_and_extension() {
        assert_eq!(
            conflicted_copy("docs/notes.txt", "laptop", "2026-12-01"),
            "docs/notes (conflicted copy laptop 2026-12-01).txt"
        );
        assert_eq!(
            conflicted_copy("Makefile", "pc", "2026-12-01"),
            "Makefile (conflicted copy pc 2026-12-01)"
        );
        assert_eq!(
            conflicted_copy("a/.bashrc", "pc", "d"),
            "a/.bashrc (conflicted copy pc d)"
        );
        assert_eq!(
            conflicted_copy("x.tar.gz", "pc", "d"),
            "x.tar (conflicted copy pc d).gz"
        );
    }
}
