//! Carrying a plan out. Every step checks, just before it touches a local file, that the file
//! is still what the plan saw (a user may edit it meanwhile), and records its outcome in the
//! state database as soon as it completes. A step that fails is reported and left for the next
//! pass, which plans it afresh.
//!
//! The local file-system steps are in `folder`, sending in `upload`, fetching in `download`.
use std::collections::BTreeMap;

use super::confined::ConfineError;
use super::plan::{Action, Base, Local, Remote};
use super::{Report, SyncError, Syncer};
use crate::client::ClientError;

mod download;
mod folder;
mod upload;

pub use folder::copy_namer;
use upload::Upload;

/// Files per registration or descriptor request.
const BATCH: usize = 100;

/// Files a step against the local folder under `refused` (a link in the way, a path no folder
/// may hold: never retried as a failure) or under `failed` (planned again next pass).
fn refused_or_failed(report: &mut Report, step: String, why: Option<ConfineError>) {
    match why {
        Some(e) if e.is_refusal() => report.refused.push(format!("{step}: {e}")),
        Some(e) => report.failed.push(format!("{step}: {e}")),
        None => report.failed.push(step),
    }
}

/// Runs `actions`, as [`super::plan::plan`] ordered them.
pub async fn run(
    s: &Syncer,
    actions: Vec<Action>,
    local: &BTreeMap<String, Local>,
    base: &BTreeMap<String, Base>,
    report: &mut Report,
) -> Result<(), SyncError> {
    let mut uploads = Vec::new();
    let mut downloads: Vec<(String, Remote, Option<Local>)> = Vec::new();
    for action in actions {
        match action {
            Action::Upload { path, parent_rev } => {
                if let Some(l) = local.get(&path) {
                    uploads.push(Upload {
                        path,
                        parent_rev,
                        local: l.clone(),
                    });
                }
            }
            Action::Download { path, remote } => {
                let seen = local.get(&path).cloned();
                downloads.push((path, remote, seen));
            }
            Action::Conflict { path, copy, remote } => {
                if let Some(up) = set_aside_here(s, local, &path, copy, report) {
                    uploads.push(up);
                    downloads.push((path, remote, None));
                }
            }
            Action::SetAsideLocal { path, copy } => {
                uploads.extend(set_aside_here(s, local, &path, copy, report));
            }
            other => single(s, other, local, base, report).await?,
        }
    }
    upload::upload_all(s, uploads, report).await?;
    download::download_all(s, downloads, report).await?;
    Ok(())
}

/// Moves the local file at `path` to `copy`, where it goes up as a new file; `None` (a failure
/// reported) when the file changed since the scan or cannot move.
fn set_aside_here(
    s: &Syncer,
    local: &BTreeMap<String, Local>,
    path: &str,
    copy: String,
    report: &mut Report,
) -> Option<Upload> {
    let mine = local.get(path)?;
    // The copy's name was free at the scan; a rename would replace whatever took it since.
    let moved = if s.still(path, Some(mine)) && s.still(&copy, None) {
        s.folder.rename(path, &copy).err()
    } else {
        Some(ConfineError::Io(
            path.to_owned(),
            std::io::Error::other("changed since the scan"),
        ))
    };
    if let Some(why) = moved {
        refused_or_failed(report, format!("keeping {path} as {copy}"), Some(why));
        return None;
    }
    report.conflicts += 1;
    Some(Upload {
        path: copy,
        parent_rev: 0,
        local: mine.clone(),
    })
}

/// The steps that are one request or one rename each.
async fn single(
    s: &Syncer,
    action: Action,
    local: &BTreeMap<String, Local>,
    base: &BTreeMap<String, Base>,
    report: &mut Report,
) -> Result<(), SyncError> {
    match action {
        Action::Agree { path, remote } => {
            s.agree(&path, &remote.sha256, remote.rev, &remote.file_id)
                .await?;
            report.agreed += 1;
        }
        Action::Forget { path } => s.state.forget(&path).await?,
        Action::Wait { .. } => report.waiting += 1,
        Action::Unavailable { path, status } => {
            tracing::debug!(%path, %status, "the server's version can never be downloaded; the local side is left as it is");
            report.unavailable.push(format!("{path}: {status}"));
        }
        Action::DeleteLocal { path } => {
            if !s.still(&path, local.get(&path)) {
                report
                    .failed
                    .push(format!("removing {path}: changed since the scan"));
            } else if let Err(e) = s.folder.remove_file(&path) {
                refused_or_failed(report, format!("removing {path}"), Some(e));
            } else {
                s.state.forget(&path).await?;
                s.folder.prune_empty_parents(&path);
                report.deleted_local += 1;
            }
        }
        Action::DeleteRemote { path, parent_rev } => {
            match s.client.delete_path(&path, Some(parent_rev)).await {
                Ok(_) => {
                    s.state.forget(&path).await?;
                    report.deleted_remote += 1;
                }
                // Gone already: nothing left to agree on.
                Err(ClientError::Api { status: 404, .. }) => s.state.forget(&path).await?,
                // Changed on the server meanwhile: the next pass brings that change down.
                Err(e) => report.failed.push(format!("trashing {path}: {e}")),
            }
        }
        Action::MoveRemote {
            from,
            to,
            parent_rev,
        } => match s.client.move_path(&from, &to, Some(parent_rev)).await {
            Ok(made) => {
                let (Some(moved), Some(b)) = (made.changes.first(), base.get(&from)) else {
                    return Ok(());
                };
                let file_id = moved.file_id.to_string();
                s.agree(&to, &b.sha256, moved.rev, &file_id).await?;
                s.state.forget(&from).await?;
                report.moved_remote += 1;
            }
            Err(e) => report.failed.push(format!("moving {from} to {to}: {e}")),
        },
        Action::SetAsideRemote {
            path,
            copy,
            parent_rev,
        } => match s.client.move_path(&path, &copy, Some(parent_rev)).await {
            // The next pass fetches it under its new name.
            Ok(_) => {
                s.state.forget(&path).await?;
                report.conflicts += 1;
            }
            // Changed on the server meanwhile: the next pass decides again.
            Err(e) => report
                .failed
                .push(format!("moving {path} aside to {copy}: {e}")),
        },
        Action::MoveLocal { from, to, remote } => {
            let step = format!("moving {from} to {to}");
            if let Err(e) = s.folder.clear_empty_folder(&to) {
                refused_or_failed(report, step, Some(e));
                return Ok(());
            }
            if !s.still(&from, local.get(&from)) || !s.folder.is_free_for(&to, &from) {
                report
                    .failed
                    .push(format!("{step}: changed since the scan"));
            } else if let Err(e) = s.folder.rename(&from, &to) {
                refused_or_failed(report, step, Some(e));
            } else {
                s.agree(&to, &remote.sha256, remote.rev, &remote.file_id)
                    .await?;
                s.state.forget(&from).await?;
                s.folder.prune_empty_parents(&from);
                report.moved_local += 1;
            }
        }
        Action::Upload { .. }
        | Action::Download { .. }
        | Action::Conflict { .. }
        | Action::SetAsideLocal { .. } => {}
    }
    Ok(())
}

/// Whether a file is worth a delta transfer: big enough to span several chunks.
async fn delta_worthy(s: &Syncer, size: u64) -> Option<filestore_domain::chunking::ChunkParams> {
    let params = s.chunk_params().await.ok()?;
    (size >= 4 * u64::from(params.min)).then_some(params)
}
