//! The synced folder as a capability (DESIGN invariant 7: clients stay in their folder).
//!
//! Every write, move or delete sync makes in the folder goes through a [`Folder`]: a handle on
//! the folder's directory from which a path is walked one component at a time with
//! `O_NOFOLLOW`, so a symbolic link anywhere along it (`DIR/link -> ../outside`) stops the step
//! instead of leading it out of the folder, and a path that is not in the domain's canonical
//! form (`..`, an absolute path, a backslash, NUL, an overlong name) is refused before any
//! system call. Joining strings onto the folder's path and calling `std::fs` would follow
//! links in every component but the last.
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use filestore_domain::paths::{self, PathError};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// Not a path sync may use at all: what the server sent is not canonical.
    #[error("{0:?} is not a path sync may use: {1}")]
    BadPath(String, PathError),
    /// A symbolic link stands where `path` needs a folder or a file: sync never follows one.
    #[error("{0} is a symbolic link; sync does not follow links")]
    Link(String),
    /// A file stands where `path` needs a folder.
    #[error("{0} is a file, not a folder")]
    NotFolder(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl ConfineError {
    /// Whether the step must never be retried as it is: the path is refused, not failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::BadPath(..) | Self::Link(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(_, e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

fn io(rel: &str, e: impl Into<std::io::Error>) -> ConfineError {
    ConfineError::Io(rel.to_owned(), e.into())
}

/// `rel` split into its folders and its last name, if it is a canonical path.
fn split(rel: &str) -> Result<(Vec<&str>, &str), ConfineError> {
    match paths::normalize(rel) {
        Ok(canonical) if canonical == rel => {}
        Ok(_) => {
            return Err(ConfineError::BadPath(
                rel.to_owned(),
                PathError::NotCanonical,
            ));
        }
        Err(e) => return Err(ConfineError::BadPath(rel.to_owned(), e)),
    }
    let mut parts: Vec<&str> = rel.split('/').collect();
    let last = parts.pop().unwrap_or(rel);
    Ok((parts, last))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A handle on the synced folder; see the module documentation.
#[derive(Debug)]
pub struct Folder {
    root: OwnedFd,
    path: PathBuf,
}

impl Folder {
    /// Opens the folder itself (the user chose it, so a link to it is followed, once).
    pub fn open(path: &Path) -> Result<Self, std::io::Error> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            root,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder that holds `rel`, walked without following links; with `create`, folders
    /// that are missing are made. Returns it with `rel`'s last name.
    fn parent<'a>(&self, rel: &'a str, create: bool) -> Result<(OwnedFd, &'a str), ConfineError> {
        let (folders, last) = split(rel)?;
        let mut dir = self.root.try_clone().map_err(|e| io(rel, e))?;
        let mut walked = String::new();
        for name in folders {
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(name);
            dir = match open_folder(&dir, name, &walked) {
                Err(ConfineError::Io(_, e))
                    if create && e.kind() == std::io::ErrorKind::NotFound =>
                {
                    match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io(&walked, e)),
                    }
                    open_folder(&dir, name, &walked)?
                }
                other => other?,
            };
        }
        Ok((dir, last))
    }

    /// What stands at `rel`, the link itself where it is one; `None` when nothing does.
    pub fn stat(&self, rel: &str) -> Result<Option<Metadata>, ConfineError> {
        let (dir, last) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, last, flags, Mode::empty()) {
            Ok(fd) => File::from(fd).metadata().map(Some).map_err(|e| io(rel, e)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(rel, e)),
        }
    }

    /// Whether a file coming from `from` may take the name `to`: nothing stands there, or, where
    /// the two differ only in case or normalization, the very file being renamed (a
    /// case-insensitive file system, as on macOS and Windows, shows one file under both names).
    pub fn is_free_for(&self, to: &str, from: &str) -> bool {
        let same_name = paths::fold_key(to) == paths::fold_key(from);
        match (self.stat(to), self.stat(from)) {
            (Ok(None), _) => true,
            (Ok(Some(t)), Ok(Some(f))) if same_name => t.ino() == f.ino() && t.dev() == f.dev(),
            _ => false,
        }
    }

    /// Opens the file at `rel` for reading; a link there is refused.
    pub fn open_file(&self, rel: &str) -> Result<File, ConfineError> {
        let (dir, last) = self.parent(rel, false)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&dir, last, flags, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::LOOP) => Err(ConfineError::Link(rel.to_owned())),
            Err(e) => Err(io(rel, e)),
        }
    }

    /// Reads the whole file at `rel`.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, ConfineError> {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut self.open_file(rel)?, &mut data).map_err(|e| io(rel, e))?;
        Ok(data)
    }

    /// Removes the file (or the link itself) at `rel`.
    pub fn remove_file(&self, rel: &str) -> Result<(), ConfineError> {
        let (dir, last) = self.parent(rel, false)?;
        rustix::fs::unlinkat(&dir, last, AtFlags::empty()).map_err(|e| io(rel, e))
    }

    /// Removes the empty folder at `rel`.
    pub fn remove_folder(&self, rel: &str) -> Result<(), ConfineError> {
        let (dir, last) = self.parent(rel, false)?;
        rustix::fs::unlinkat(&dir, last, AtFlags::REMOVEDIR).map_err(|e| io(rel, e))
    }

    /// Renames `from` to `to`, making the folders `to` needs; neither side's folders may be
    /// links. Like rename(2), a file at `to` is replaced: callers check first.
    pub fn rename(&self, from: &str, to: &str) -> Result<(), ConfineError> {
        let (from_dir, from_name) = self.parent(from, false)?;
        let (to_dir, to_name) = self.parent(to, true)?;
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name).map_err(|e| io(to, e))
    }

    /// Moves a finished download into place at `rel`, the folders it needs made on the way.
    pub fn place(&self, temp: tempfile::NamedTempFile, rel: &str) -> Result<(), ConfineError> {
        let (dir, last) = self.parent(rel, true)?;
        let (Some(temp_dir), Some(temp_name)) = (temp.path().parent(), temp.path().file_name())
        else {
            return Err(io(
                rel,
                std::io::Error::other("a temporary file without a name"),
            ));
        };
        let temp_dir =
            rustix::fs::open(temp_dir, DIR_FLAGS, Mode::empty()).map_err(|e| io(rel, e))?;
        rustix::fs::renameat(&temp_dir, temp_name, &dir, last).map_err(|e| io(rel, e))?;
        // It has its real name now: dropping the handle must not remove anything.
        let _ = temp.into_temp_path().keep();
        Ok(())
    }

    /// Removes the folder at `rel` if it holds nothing but folders (at any depth), so a file
    /// can take its place; returns whether it did. A link or a file inside keeps it.
    pub fn clear_empty_folder(&self, rel: &str) -> Result<bool, ConfineError> {
        let (dir, last) = match self.parent(rel, false) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        let folder = match open_folder(&dir, last, rel) {
            Ok(folder) => folder,
            Err(ConfineError::Io(..) | ConfineError::Link(_) | ConfineError::NotFolder(_)) => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if !only_folders(&folder, rel)? {
            return Ok(false);
        }
        remove_tree(&folder, rel)?;
        drop(folder);
        rustix::fs::unlinkat(&dir, last, AtFlags::REMOVEDIR).map_err(|e| io(rel, e))?;
        Ok(true)
    }

    /// Removes the folders above `rel` that are left empty, deepest first.
    pub fn prune_empty_parents(&self, rel: &str) {
        for folder in filestore_domain::tree::ancestors(rel)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            if self.remove_folder(folder).is_err() {
                break;
            }
        }
    }
}

fn open_folder(dir: &impl AsFd, name: &str, rel: &str) -> Result<OwnedFd, ConfineError> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        // O_NOFOLLOW on a link says ELOOP; O_DIRECTORY on a file, ENOTDIR.
        Err(Errno::LOOP) => Err(ConfineError::Link(rel.to_owned())),
        Err(Errno::NOTDIR) => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode).is_symlink() => {
                Err(ConfineError::Link(rel.to_owned()))
            }
            _ => Err(ConfineError::NotFolder(rel.to_owned())),
        },
        Err(e) => Err(io(rel, e)),
    }
}

/// The names in the folder `dir`, each with what it is (a link is a link, not its target).
fn entries(dir: &OwnedFd, rel: &str) -> Result<Vec<(String, FileType)>, ConfineError> {
    let mut found = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(|e| io(rel, e))? {
        let entry = entry.map_err(|e| io(rel, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::Unknown => {
                let st = rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io(rel, e))?;
                FileType::from_raw_mode(st.st_mode)
            }
            known => known,
        };
        found.push((name, kind));
    }
    Ok(found)
}

fn only_folders(dir: &OwnedFd, rel: &str) -> Result<bool, ConfineError> {
    for (name, kind) in entries(dir, rel)? {
        let inner = format!("{rel}/{name}");
        if !kind.is_dir() || !only_folders(&open_folder(dir, &name, &inner)?, &inner)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes the (empty) folders inside `dir`, bottom-up; a removal fails if something appeared
/// in a folder meanwhile.
fn remove_tree(dir: &OwnedFd, rel: &str) -> Result<(), ConfineError> {
    for (name, _) in entries(dir, rel)? {
        let inner = format!("{rel}/{name}");
        remove_tree(&open_folder(dir, &name, &inner)?, &inner)?;
        rustix::fs::unlinkat(dir, name.as_str(), AtFlags::REMOVEDIR).map_err(|e| io(&inner, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    /// `base/root` (the synced folder) beside `base/outside`, which holds `keep/empty/` and
    /// `secret.txt`; `root/link` points at `outside`, `root/file-link` at the secret.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(outside.join("keep/empty")).unwrap();
        std::fs::write(outside.join("secret.txt"), b"secret").unwrap();
        std::fs::write(root.join("docs/a.txt"), b"a").unwrap();
        symlink("../outside", root.join("link")).unwrap();
        symlink("../outside/secret.txt", root.join("file-link")).unwrap();
        Fixture {
            _dir: dir,
            root,
            outside,
        }
    }

    fn outside_listing(f: &Fixture) -> Vec<String> {
        let mut found: Vec<String> = walk(&f.outside);
        found.sort();
        found
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
        out
    }

    #[test]
    fn no_operation_goes_through_a_link_in_the_folder() {
        let f = fixture();
        let folder = Folder::open(&f.root).unwrap();
        let before = outside_listing(&f);
        let temp = || tempfile::NamedTempFile::new_in(&f.root).unwrap();

        assert!(
            matches!(folder.place(temp(), "link/pwned.txt"), Err(ConfineError::Link(p)) if p == "link")
        );
        assert!(matches!(
            folder.rename("docs/a.txt", "link/a.txt"),
            Err(ConfineError::Link(_))
        ));
        assert!(matches!(
            folder.remove_file("link/secret.txt"),
            Err(ConfineError::Link(_))
        ));
        assert!(matches!(
            folder.open_file("file-link"),
            Err(ConfineError::Link(_))
        ));
        assert!(matches!(
            folder.read("link/secret.txt"),
            Err(ConfineError::Link(_))
        ));
        assert!(matches!(
            folder.clear_empty_folder("link/keep"),
            Err(ConfineError::Link(_))
        ));
        assert!(
            !folder.clear_empty_folder("link").unwrap(),
            "a link is no folder"
        );
        folder.prune_empty_parents("link/keep/empty/x");

        assert_eq!(
            outside_listing(&f),
            before,
            "nothing outside the folder changed"
        );
        assert_eq!(std::fs::read(f.root.join("docs/a.txt")).unwrap(), b"a");
        // The link itself is what stands at its name, and a file-link is removed as a link.
        assert!(
            folder
                .stat("link")
                .unwrap()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        folder.remove_file("file-link").unwrap();
        assert_eq!(
            std::fs::read(f.outside.join("secret.txt")).unwrap(),
            b"secret"
        );
    }

    #[test]
    fn paths_that_are_not_canonical_are_refused_before_any_system_call() {
        let f = fixture();
        let folder = Folder::open(&f.root).unwrap();
        let temp = || tempfile::NamedTempFile::new_in(&f.root).unwrap();
        let outside = f.outside.join("x").display().to_string();
        let long = "n".repeat(300);
        for bad in [
            "../x",
            "../outside/x",
            outside.as_str(),
            "a\\..\\x",
            "a\0b",
            "",
            "a//b",
            "./a",
            long.as_str(),
        ] {
            let refused = folder.place(temp(), bad);
            assert!(
                matches!(refused, Err(ConfineError::BadPath(..))),
                "{bad:?}: {refused:?}"
            );
            assert!(refused.is_err_and(|e| e.is_refusal()));
        }
        assert_eq!(outside_listing(&f).len(), 3);
    }

    /// On a case-insensitive file system `A.txt` finds `a.txt`; a hard link stands in for that
    /// lookup here (no such file system can be mounted in the test sandbox).
    #[test]
    fn a_rename_of_the_case_alone_finds_its_own_file_in_the_way_and_goes_ahead() {
        let f = fixture();
        let folder = Folder::open(&f.root).unwrap();
        std::fs::write(f.root.join("other.txt"), b"other").unwrap();
        std::fs::hard_link(f.root.join("docs/a.txt"), f.root.join("docs/A.txt")).unwrap();
        assert!(
            folder.is_free_for("docs/A.txt", "docs/a.txt"),
            "the same file, another case"
        );
        assert!(
            !folder.is_free_for("docs/A.txt", "other.txt"),
            "another file's name is taken"
        );
        assert!(!folder.is_free_for("other.txt", "docs/a.txt"));
        assert!(folder.is_free_for("docs/new.txt", "docs/a.txt"));
        std::fs::remove_file(f.root.join("docs/A.txt")).unwrap();
        std::fs::write(f.root.join("docs/A.txt"), b"a different file").unwrap();
        assert!(
            !folder.is_free_for("docs/A.txt", "docs/a.txt"),
            "a different file under the other case is never replaced"
        );
    }

    #[test]
    fn ordinary_steps_work_inside_the_folder() {
        let f = fixture();
        let folder = Folder::open(&f.root).unwrap();
        let temp = tempfile::NamedTempFile::new_in(&f.root).unwrap();
        std::fs::write(temp.path(), b"new").unwrap();
        folder.place(temp, "deep/er/b.txt").unwrap();
        assert_eq!(folder.read("deep/er/b.txt").unwrap(), b"new");
        folder.rename("deep/er/b.txt", "moved/b.txt").unwrap();
        assert!(folder.stat("deep/er/b.txt").unwrap().is_none());
        assert!(folder.stat("deep/er").unwrap().unwrap().is_dir());
        assert!(folder.clear_empty_folder("deep").unwrap());
        assert!(folder.stat("deep").unwrap().is_none());
        folder.remove_file("moved/b.txt").unwrap();
        folder.prune_empty_parents("moved/b.txt");
        assert!(folder.stat("moved").unwrap().is_none());
        // A folder holding a file is no empty folder.
        assert!(!folder.clear_empty_folder("docs").unwrap());
        assert!(matches!(
            folder.rename("docs/a.txt", "docs/a.txt/b"),
            Err(ConfineError::NotFolder(_))
        ));
    }
}
