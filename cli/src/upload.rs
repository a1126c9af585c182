//! `filestore upload`: files and folders, registered in batches, streamed, finalized.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use filestore_domain::{FileId, FileStatus};

use crate::client::Client;

/// Files per registration request.
const REGISTER_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct LocalFile {
    pub local: PathBuf,
    pub remote: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadResult {
    pub path: String,
    pub file_id: FileId,
    pub size: u64,
    pub sha256: String,
    pub status: FileStatus,
}

/// Expands the arguments: a file uploads under its name, a folder under its name with its
/// whole tree. Symbolic links and special files are skipped.
pub fn collect(inputs: &[PathBuf]) -> anyhow::Result<Vec<LocalFile>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
        let name = input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .with_context(|| format!("{} has no file name", input.display()))?;
        if meta.is_file() {
            out.push(LocalFile {
                local: input.clone(),
                remote: name,
                size: meta.len(),
            });
        } else if meta.is_dir() {
            walk(input, &name, &mut out)?;
        }
    }
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<LocalFile>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let kind = entry.file_type()?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            eprintln!("skipping {}: its name is not UTF-8", entry.path().display());
            continue;
        };
        let remote = format!("{prefix}/{name}");
        if kind.is_dir() {
            walk(&entry.path(), &remote, out)?;
        } else if kind.is_file() {
            out.push(LocalFile {
                local: entry.path(),
                remote,
                size: entry.metadata()?.len(),
            });
        }
    }
    Ok(())
}

fn progress(total: u64) -> ProgressBar {
    // Bars draw on stderr, but only for a person watching: stdout is what scripts read.
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

pub async fn upload(
    client: &Client,
    files: Vec<LocalFile>,
    concurrency: usize,
) -> anyhow::Result<Vec<UploadResult>> {
    let bar = progress(files.iter().map(|f| f.size).sum());
    let concurrency = concurrency.max(1);
    let mut results = Vec::with_capacity(files.len());
    for batch in files.chunks(REGISTER_BATCH) {
        let requests: Vec<_> = batch
            .iter()
            .map(|f| json!({ "path": f.remote, "size": f.size }))
            .collect();
        let registered = client.register_batch(&requests).await?;
        let mut jobs = Vec::with_capacity(batch.len());
        for r in registered {
            let Some(file) = batch.get(r.index) else {
                bail!("the server answered for an item it was not sent");
            };
            match (r.file_id, r.location) {
                (Some(id), Some(location)) => jobs.push((file.clone(), id, location)),
                _ => bail!(
                    "{} was refused: {}",
                    file.local.display(),
                    r.error.map(|e| e.to_string()).unwrap_or_default()
                ),
            }
        }
        let done: Vec<UploadResult> = futures::stream::iter(jobs)
            .map(|(file, id, location)| {
                let bar = bar.clone();
                async move {
                    let tick = bar.clone();
                    // One read: the transfer is proven by its CRC, and finalize names the
                    // SHA-256 the server computed of those bytes.
                    let sha = client
                        .put_file(&location, &file.local, file.size, move |n| tick.inc(n))
                        .await
                        .with_context(|| format!("uploading {}", file.local.display()))?;
                    let status = client.finalize(&id, &sha, file.size).await?;
                    anyhow::Ok(UploadResult {
                        path: file.remote,
                        file_id: id,
                        size: file.size,
                        sha256: sha,
                        status,
                    })
                }
            })
            .buffered(concurrency)
            .try_collect()
            .await?;
        results.extend(done);
    }
    bar.finish_and_clear();
    Ok(results)
}

/// Polls until every file is settled, updating each result's status.
///
/// Files are processed roughly in upload order, so this watches the first unsettled file and,
/// once it settles, sweeps forward through the ones after it: about one request per file
/// however many there are, rather than a poll of every file every round.
pub async fn wait_settled(client: &Client, results: &mut [UploadResult]) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(20);
    let mut next = 0;
    while next < results.len() {
        if results[next].status.is_settled() {
            next += 1;
            continue;
        }
        let id = results[next].file_id.to_string();
        let status = client.metadata(&id).await?.status;
        results[next].status = status;
        if status.is_settled() {
            delay = Duration::from_millis(20);
        } else {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }
    Ok(())
}
