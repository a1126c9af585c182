//! Fetching server heads into the folder: descriptors in batches, the pieces of the local copy
//! a download replaces reused, and each file placed only if the local side is still as scanned.
use std::collections::BTreeMap;

use futures::StreamExt;

use super::{BATCH, delta_worthy, refused_or_failed};
use crate::sync::chunks::Pieces;
use crate::sync::plan::{Local, Remote};
use crate::sync::{Report, SyncError, Syncer};

/// Cuts the local copy a download replaces, so its unchanged pieces need not be fetched.
async fn old_copy(s: &Syncer, path: &str, remote: &Remote) -> Option<Pieces> {
    let params = delta_worthy(s, remote.size).await?;
    // Only a regular file is read: a link there is no old copy.
    s.meta(path)
        .ok()
        .flatten()
        .filter(std::fs::Metadata::is_file)?;
    let abs = s.folder.path().join(path);
    tokio::task::spawn_blocking(move || Pieces::of(&abs, params).ok())
        .await
        .ok()
        .flatten()
}

/// Fetches server heads into the folder, their descriptors in batches.
pub(super) async fn download_all(
    s: &Syncer,
    downloads: Vec<(String, Remote, Option<Local>)>,
    report: &mut Report,
) -> Result<(), SyncError> {
    for batch in downloads.chunks(BATCH) {
        let ids: Vec<String> = batch.iter().map(|(_, r, _)| r.file_id.clone()).collect();
        let descriptors: BTreeMap<String, _> =
            s.client.descriptors(&ids).await?.into_iter().collect();
        let fetched: Vec<_> = futures::stream::iter(batch)
            .map(|(path, remote, seen)| {
                let descriptor = descriptors.get(&remote.file_id).cloned();
                async move {
                    let reuse = match seen {
                        Some(_) => old_copy(s, path, remote).await,
                        None => None,
                    };
                    let got = match descriptor {
                        Some(Ok(d)) => {
                            let bar = indicatif::ProgressBar::hidden();
                            let dir = s.temp_dir();
                            crate::download::fetch_to_temp(
                                &s.client,
                                &d,
                                &dir,
                                4,
                                &bar,
                                reuse.as_ref(),
                            )
                            .await
                            .map_err(|e| e.to_string())
                        }
                        Some(Err(problem)) => Err(problem.to_string()),
                        None => Err("the server sent no descriptor".to_owned()),
                    };
                    (path, remote, seen, got)
                }
            })
            .buffer_unordered(s.opts.concurrency.max(1))
            .collect()
            .await;
        for (path, remote, seen, got) in fetched {
            let (tmp, fetched_bytes) = match got {
                Ok(got) => got,
                Err(why) => {
                    report.failed.push(format!("downloading {path}: {why}"));
                    continue;
                }
            };
            // The local file must still be what the plan saw, or the user's edit would be
            // overwritten: then the next pass sees a conflict instead. A folder emptied of its
            // files is no edit: it makes way.
            if seen.is_none()
                && let Err(e) = s.folder.clear_empty_folder(path)
            {
                refused_or_failed(report, format!("placing {path}"), Some(e));
                continue;
            }
            if !s.still(path, seen.as_ref()) {
                report
                    .failed
                    .push(format!("{path} changed while downloading"));
                continue;
            }
            if let Err(e) = s.folder.place(tmp, path) {
                refused_or_failed(report, format!("placing {path}"), Some(e));
                continue;
            }
            s.agree(path, &remote.sha256, remote.rev, &remote.file_id)
                .await?;
            report.downloaded += 1;
            report.bytes_received += fetched_bytes;
        }
    }
    Ok(())
}
