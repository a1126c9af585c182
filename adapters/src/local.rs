//! The embedded object store: a local directory.
//!
//! Writes go to a temporary file, are fsynced, renamed into place and the directory is fsynced,
//! so an object is either absent or complete, and present after a crash once a put returned.
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs;
use tokio::io::AsyncWriteExt;

use crate::objects::{ByteStream, ObjectError, ObjectReader, ObjectStore, PutOutcome, Tally};

#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
    durable_dirs: Arc<DurableDirs>,
}

const TMP_DIR: &str = ".tmp";

impl LocalDirStore {
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, ObjectError> {
        let root = root.into();
        fs::create_dir_all(root.join(TMP_DIR)).await?;
        let store = Self {
            root,
            durable_dirs: Arc::default(),
        };
        store.sweep_temporaries().await?;
        Ok(store)
    }

    /// Temporary files left by a crash are never referenced; remove them at start-up.
    async fn sweep_temporaries(&self) -> Result<(), ObjectError> {
        let mut dir = fs::read_dir(self.root.join(TMP_DIR)).await?;
        while let Some(entry) = dir.next_entry().await? {
            let _ = fs::remove_file(entry.path()).await;
        }
        Ok(())
    }

    /// Maps a key onto a path below the root; anything that could step outside is refused.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, ObjectError> {
        let invalid = || ObjectError::InvalidKey(key.to_owned());
        if key.is_empty() || key.len() > 1024 {
            return Err(invalid());
        }
        let mut path = self.root.clone();
        for comp in key.split('/') {
            let ok = !comp.is_empty()
                && !comp.starts_with('.')
                && comp
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                return Err(invalid());
            }
            path.push(comp);
        }
        Ok(path)
    }

    fn temp_path(&self) -> PathBuf {
        let name: u128 = rand::random();
        self.root.join(TMP_DIR).join(format!("{name:032x}"))
    }

    /// Moves a fully written, fsynced temporary file into place and makes the rename durable,
    /// in one blocking step: each filesystem call made on its own costs a thread hand-off.
    async fn publish(&self, tmp: &Path, dest: &Path) -> Result<(), ObjectError> {
        let (root, tmp, dest) = (self.root.clone(), tmp.to_path_buf(), dest.to_path_buf());
        let dirs = self.durable_dirs.clone();
        tokio::task::spawn_blocking(move || publish_now(&root, &dirs, &tmp, &dest))
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }

    /// Stores `bytes` under `key` in one blocking step (what `measure` makes of them is the
    /// result): write a temporary file, fsync, publish. A put whose caller went away before
    /// the rename publishes nothing, and an error leaves no temporary file.
    async fn put_in_one_step<T: Send + 'static>(
        &self,
        key: &str,
        bytes: Bytes,
        measure: impl FnOnce(&[u8]) -> T + Send + 'static,
    ) -> Result<T, ObjectError> {
        let dest = self.path_of(key)?;
        let (root, tmp) = (self.root.clone(), self.temp_path());
        let dirs = self.durable_dirs.clone();
        let abandoned = AbandonFlag::default();
        let seen = abandoned.raised.clone();
        let result = tokio::task::spawn_blocking(move || -> io::Result<T> {
            let tmp = TempFile(Some(tmp));
            let measured = measure(&bytes);
            write_synced(tmp.path(), &bytes)?;
            if seen.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::other("the put was abandoned"));
            }
            publish_now(&root, &dirs, tmp.path(), &dest)?;
            tmp.keep();
            Ok(measured)
        })
        .await
        .map_err(io::Error::other)??;
        abandoned.disarm();
        Ok(result)
    }

    async fn write_temp(
        &self,
        body: ByteStream,
        limit: u64,
    ) -> Result<(TempFile, PutOutcome), ObjectError> {
        let tmp = TempFile(Some(self.temp_path()));
        // Request bodies arrive in small frames; a large buffer keeps writes few and big.
        let mut file =
            tokio::io::BufWriter::with_capacity(1 << 20, fs::File::create(tmp.path()).await?);
        let mut tally = Tally::new(limit);
        let mut body = body;
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(ObjectError::Source)?;
            tally.add(&piece)?;
            file.write_all(&piece).await?;
        }
        file.flush().await?;
        file.get_mut().sync_all().await?;
        Ok((tmp, tally.outcome()))
    }
}

/// A temporary file that is removed unless it was moved into place: on errors, and also when
/// the writing future is dropped half-way (a client gone, a shutdown).
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or_else(|| Path::new(""))
    }

    /// The file now lives under its final name; nothing to clean up.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The directories below the root whose entries this process has made durable. A directory
/// that merely exists may have been created by a concurrent put that has not fsynced its parent
/// yet; an object renamed into it and acknowledged would then vanish with the directory in a
/// crash. Each directory is therefore fsynced into its parent once, by whoever meets it first.
#[derive(Debug, Default)]
struct DurableDirs(Mutex<HashSet<PathBuf>>);

impl DurableDirs {
    fn contains(&self, dir: &Path) -> bool {
        self.0.lock().map(|set| set.contains(dir)).unwrap_or(false)
    }

    fn insert(&self, dir: PathBuf) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(dir);
        }
    }

    /// Someone removed folders behind the store's back: trust none of them any more.
    fn forget_all(&self) {
        if let Ok(mut set) = self.0.lock() {
            set.clear();
        }
    }
}

/// Makes every directory from `root` down to `dir` exist durably: created if missing, and its
/// entry fsynced into its parent unless this process already did so.
fn ensure_dir_now(root: &Path, durable: &DurableDirs, dir: &Path) -> io::Result<()> {
    let mut pending = Vec::new();
    let mut cur = dir;
    while cur != root && !durable.contains(cur) {
        pending.push(cur.to_path_buf());
        cur = cur.parent().unwrap_or(root);
    }
    for d in pending.into_iter().rev() {
        match std::fs::create_dir(&d) {
            Ok(()) => {}
            // A file in the way is no folder: the put fails until it is gone.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
        if let Some(p) = d.parent() {
            sync_dir(p)?;
        }
        durable.insert(d);
    }
    Ok(())
}

/// Renames the fsynced `tmp` to `dest` below `root` and makes the rename durable.
fn publish_now(root: &Path, durable: &DurableDirs, tmp: &Path, dest: &Path) -> io::Result<()> {
    let parent = dest
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", dest.display())))?;
    let place = || {
        ensure_dir_now(root, durable, parent)?;
        std::fs::rename(tmp, dest)
    };
    match place() {
        // A folder it trusted was removed behind its back: trust none, make them again.
        Err(e) if e.kind() == io::ErrorKind::NotFound && tmp.exists() => {
            durable.forget_all();
            place()?;
        }
        other => other?,
    }
    sync_dir(parent)
}

/// Writes `bytes` to a new file at `path`, fsynced.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Raised when the future that started a blocking put is dropped before it finished, so the
/// blocking step does not publish an object nobody will record.
#[derive(Default)]
struct AbandonFlag {
    raised: std::sync::Arc<std::sync::atomic::AtomicBool>,
    finished: bool,
}

impl AbandonFlag {
    fn disarm(mut self) {
        self.finished = true;
    }
}

impl Drop for AbandonFlag {
    fn drop(&mut self) {
        if !self.finished {
            self.raised.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn not_found(key: &str, e: io::Error) -> ObjectError {
    if e.kind() == io::ErrorKind::NotFound {
        ObjectError::NotFound(key.to_owned())
    } else {
        ObjectError::Io(e)
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put_stream(
        &self,
        key: &str,
        body: ByteStream,
        limit: u64,
    ) -> Result<PutOutcome, ObjectError> {
        let dest = self.path_of(key)?;
        let (tmp, outcome) = self.write_temp(body, limit).await?;
        self.publish(tmp.path(), &dest).await?;
        tmp.keep();
        Ok(outcome)
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.put_in_one_step(key, bytes, |_| ()).await
    }

    async fn put_exact_bytes(&self, key: &str, bytes: Bytes) -> Result<PutOutcome, ObjectError> {
        self.put_in_one_step(key, bytes, Tally::whole).await
    }

    async fn head(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        match fs::metadata(self.path_of(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, ObjectError> {
        fs::read(self.path_of(key)?)
            .await
            .map(Bytes::from)
            .map_err(|e| not_found(key, e))
    }

    async fn open(&self, key: &str) -> Result<ObjectReader, ObjectError> {
        let file = fs::File::open(self.path_of(key)?)
            .await
            .map_err(|e| not_found(key, e))?;
        Ok(Box::pin(file))
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match fs::remove_file(self.path_of(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, ObjectError> {
        let mut found = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            let mut entries = fs::read_dir(&dir).await?;
            while let Some(entry) = entries.next_entry().await? {
                let path = entry.path();
                let meta = entry.metadata().await?;
                if meta.is_dir() {
                    if entry.file_name() != TMP_DIR {
                        dirs.push(path);
                    }
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                if key.starts_with(prefix) {
                    found.push((key, meta.len()));
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;
    use sha2::{Digest, Sha256};

    fn body(parts: Vec<&'static [u8]>) -> ByteStream {
        Box::pin(stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from_static(p))),
        ))
    }

    #[tokio::test]
    async fn a_streamed_put_is_stored_whole_with_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        let out = store
            .put_stream("raw/a", body(vec![b"hello ", b"world"]), 100)
            .await
            .unwrap();
        assert_eq!(out.size, 11);
        assert_eq!(out.sha256_hex, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(
            store.get_bytes("raw/a").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(store.head("raw/a").await.unwrap(), Some(11));
    }

    #[tokio::test]
    async fn a_folder_someone_else_created_is_fsynced_before_an_object_is_published_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        // As a concurrent put would leave it: created, its parent not yet fsynced.
        std::fs::create_dir_all(dir.path().join("chunks/ab")).unwrap();
        assert!(!store.durable_dirs.contains(&dir.path().join("chunks/ab")));

        store
            .put_bytes("chunks/ab/cd", Bytes::from_static(b"x"))
            .await
            .unwrap();

        for made_durable in ["chunks", "chunks/ab"] {
            assert!(store.durable_dirs.contains(&dir.path().join(made_durable)));
        }
        assert_eq!(store.head("chunks/ab/cd").await.unwrap(), Some(1));

        // Removed behind the store's back: the next put makes the folders again.
        std::fs::remove_dir_all(dir.path().join("chunks")).unwrap();
        store
            .put_bytes("chunks/ab/ef", Bytes::from_static(b"y"))
            .await
            .unwrap();
        assert_eq!(store.head("chunks/ab/ef").await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn an_oversized_put_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        let err = store
            .put_stream("raw/b", body(vec![b"12345", b"678"]), 6)
            .await
            .unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { limit: 6 }));
        assert_eq!(store.head("raw/b").await.unwrap(), None);
        let leftovers = std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn a_put_abandoned_half_way_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        let (tx, rx) = futures::channel::mpsc::unbounded::<io::Result<Bytes>>();
        tx.unbounded_send(Ok(Bytes::from_static(b"first part")))
            .unwrap();
        let put = store.put_stream("raw/c", Box::pin(rx), 100);
        // The body never ends; the caller gives up (a client gone, a shutdown).
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(100), put).await;
        assert!(gave_up.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(),
            0
        );
        assert_eq!(store.head("raw/c").await.unwrap(), None);
        drop(tx);
    }

    #[tokio::test]
    async fn an_in_memory_put_is_stored_whole_with_its_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        let out = store
            .put_exact_bytes("raw/new/d", Bytes::from_static(b"123456789"))
            .await
            .unwrap();
        assert_eq!((out.size, out.crc64nvme), (9, 0xae8b_1486_0a79_9888));
        assert_eq!(
            store.get_bytes("raw/new/d").await.unwrap(),
            Bytes::from_static(b"123456789")
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn a_put_whose_caller_left_is_flagged_and_a_finished_one_is_not() {
        let left = AbandonFlag::default();
        let seen = left.raised.clone();
        drop(left);
        assert!(seen.load(std::sync::atomic::Ordering::SeqCst));
        let finished = AbandonFlag::default();
        let seen = finished.raised.clone();
        finished.disarm();
        assert!(!seen.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn keys_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        for key in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            ".tmp/x",
            "a\\b",
            "",
        ] {
            assert!(
                matches!(store.path_of(key), Err(ObjectError::InvalidKey(_))),
                "{key}"
            );
        }
    }

    #[tokio::test]
    async fn deleting_twice_is_fine_and_missing_objects_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).await.unwrap();
        store
            .put_bytes("chunks/ab/abcd", Bytes::from_static(b"x"))
            .await
            .unwrap();
        store.delete("chunks/ab/abcd").await.unwrap();
        store.delete("chunks/ab/abcd").await.unwrap();
        assert!(matches!(
            store.get_bytes("chunks/ab/abcd").await,
            Err(ObjectError::NotFound(_))
        ));
    }
}
