//! `filestore download`: fetch chunks in parallel by signed URL, decrypt, verify each against its
//! hash and the whole file against its SHA-256, and only then put the file under its name.
use std::io::{IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use filestore_api::dto::{ChunkLink, Descriptor};
use filestore_domain::codec::{decode, decode_authenticated};
use filestore_domain::keys::SecretKey;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::client::Client;
use crate::sync::chunks::Pieces;

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    #[error("chunk {index} of {file} failed verification: {reason}")]
    Chunk {
        file: String,
        index: u32,
        reason: String,
    },
    #[error("{0} does not match its SHA-256 after reassembly")]
    File(String),
}

/// Bytes written to a download between two background flushes to disk.
const FLUSH_EVERY: usize = 64 << 20;

/// Where downloaded content goes.
pub enum Target {
    Stdout,
    File(PathBuf),
}

/// How much of a chunk's proof to check on the way in.
#[derive(Clone, Copy)]
enum ChunkCheck {
    /// Authenticated and matching its plaintext digest: for output nobody can take back.
    Full,
    /// Authenticated only: the whole file's digest is checked before the file is put in place,
    /// so a second pass over every byte would buy nothing.
    WholeFileLater,
}

async fn fetch_plain(
    client: &Client,
    file: &str,
    link: ChunkLink,
    check: ChunkCheck,
) -> anyhow::Result<(ChunkLink, Vec<u8>)> {
    let stored = client.fetch_chunk(&link.url).await?;
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || {
        let bad = |reason: String| IntegrityError::Chunk {
            file: file.clone(),
            index: link.index,
            reason,
        };
        let id = link.id;
        let key = SecretKey::from_hex(&link.key).map_err(|e| bad(e.to_string()))?;
        let plain = match check {
            ChunkCheck::Full => {
                let mut sha = [0u8; 32];
                hex::decode_to_slice(&link.sha256, &mut sha).map_err(|e| bad(e.to_string()))?;
                decode(&stored, &id, &key, &sha, link.length as usize)
            }
            ChunkCheck::WholeFileLater => {
                decode_authenticated(&stored, &id, &key, link.length as usize)
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        Ok((link, plain))
    })
    .await?
}

fn bar(total: u64) -> ProgressBar {
    // Bars draw on stderr, but only for a person watching: stdout is what scripts read.
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn check_tiling(d: &Descriptor) -> anyhow::Result<()> {
    let mut next = 0u64;
    for c in &d.chunks {
        if c.offset != next {
            bail!(
                "descriptor of {} has a gap or overlap at chunk {}",
                d.path,
                c.index
            );
        }
        next += u64::from(c.length);
    }
    if next != d.size {
        bail!("descriptor of {} covers {next} of {} bytes", d.path, d.size);
    }
    Ok(())
}

pub async fn download(
    client: &Client,
    d: Descriptor,
    target: Target,
    parallelism: usize,
) -> anyhow::Result<()> {
    check_tiling(&d)?;
    let progress = bar(d.size);
    match target {
        Target::Stdout => {
            let name = d.path.clone();
            let chunks = futures::stream::iter(d.chunks.clone())
                .map(|link| fetch_plain(client, &name, link, ChunkCheck::Full));
            let mut out = std::io::stdout().lock();
            let mut hasher = Sha256::new();
            let mut ordered = chunks.buffered(parallelism.max(1));
            while let Some(next) = ordered.next().await {
                let (_, plain) = next?;
                hasher.update(&plain);
                out.write_all(&plain)?;
                progress.inc(plain.len() as u64);
            }
            out.flush()?;
            if hex::encode(hasher.finalize()) != d.sha256 {
                bail!(IntegrityError::File(d.path.clone()));
            }
        }
        Target::File(dest) => {
            let parent = match dest.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let (tmp, _) = fetch_to_temp(client, &d, &parent, parallelism, &progress, None).await?;
            tmp.persist(&dest)
                .with_context(|| format!("moving the download to {}", dest.display()))?;
        }
    }
    progress.finish_and_clear();
    Ok(())
}

/// Fetches the file into a fresh temporary file in `dir`, verified whole against its SHA-256
/// and synced to disk, for the caller to rename into place. The temporary file is a new,
/// exclusively created one (never a planted link, never another download's file), on the
/// destination's filesystem so the rename is atomic; it is removed on every path that does not
/// complete.
///
/// Pieces that `reuse` (an older local copy cut the server's way) already holds are read from
/// it instead of fetched; the second value is how many bytes were fetched.
pub async fn fetch_to_temp(
    client: &Client,
    d: &Descriptor,
    dir: &std::path::Path,
    parallelism: usize,
    progress: &ProgressBar,
    reuse: Option<&Pieces>,
) -> anyhow::Result<(tempfile::NamedTempFile, u64)> {
    check_tiling(d)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", local_name(&d.path)))
        .suffix(".filestore-partial")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let file = tmp.as_file().try_clone()?;
    let size = d.size;
    // Chunks are fetched and decrypted in parallel but handed over in order, so the
    // whole-file digest is computed while writing instead of by reading the file back.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(ChunkLink, Vec<u8>)>(parallelism.max(1));
    let writer_progress = progress.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let flushed = file.try_clone()?;
        std::thread::scope(|scope| {
            // Written data goes to disk while later chunks arrive, so the sync that makes the
            // file durable at the end has little left to wait for.
            let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
            let flusher = scope.spawn(move || {
                while kicked.recv().is_ok() {
                    flushed.sync_data()?;
                }
                std::io::Result::Ok(())
            });
            let mut hasher = Sha256::new();
            let mut unflushed = 0usize;
            while let Some((link, plain)) = rx.blocking_recv() {
                hasher.update(&plain);
                file.write_all_at(&plain, link.offset)?;
                writer_progress.inc(plain.len() as u64);
                unflushed += plain.len();
                if unflushed >= FLUSH_EVERY {
                    // A flush already pending covers these bytes too.
                    let _ = kick.try_send(());
                    unflushed = 0;
                }
            }
            drop(kick);
            flusher
                .join()
                .map_err(|_| anyhow::anyhow!("the download's flusher panicked"))??;
            file.set_len(size)?;
            file.sync_all()?;
            anyhow::Ok(hex::encode(hasher.finalize()))
        })
    });
    let name = d.path.clone();
    let local = reuse.map(Pieces::by_sha).unwrap_or_default();
    let fetched_bytes: u64 = d
        .chunks
        .iter()
        .filter(|c| !local.contains_key(&c.sha256))
        .map(|c| u64::from(c.length))
        .sum();
    let chunks = futures::stream::iter(d.chunks.clone()).map(|link| {
        let here = local.get(&link.sha256).copied().zip(reuse.cloned());
        let name = name.clone();
        async move {
            match here {
                Some((piece, from)) if piece.length == link.length => {
                    let plain = tokio::task::spawn_blocking(move || from.read(&piece)).await??;
                    Ok((link, plain))
                }
                _ => fetch_plain(client, &name, link, ChunkCheck::WholeFileLater).await,
            }
        }
    });
    let mut ordered = chunks.buffered(parallelism.max(1));
    let mut fetched = Ok(());
    while let Some(next) = ordered.next().await {
        match next {
            Ok(item) => {
                if tx.send(item).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                fetched = Err(e);
                break;
            }
        }
    }
    drop(tx);
    let digest = writer.await?;
    fetched?;
    if digest? != d.sha256 {
        bail!(IntegrityError::File(d.path.clone()));
    }
    Ok((tmp, fetched_bytes))
}

/// The last component of a server path, safe as a local file name.
pub fn local_name(remote: &str) -> String {
    remote
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .unwrap_or("download")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_are_the_last_component() {
        assert_eq!(local_name("a/b/c.txt"), "c.txt");
        assert_eq!(local_name("c.txt"), "c.txt");
        assert_eq!(local_name(".."), "download");
    }
}
