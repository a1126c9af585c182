//! Carrying a plan out. Every step checks, just before it touches a local file, that the file
//! is still what the plan saw (a user may edit it meanwhile), and records its outcome in the
//! state database as soon as it completes. A step that fails is reported and left for the next
//! pass, which plans it afresh.
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use filestore_domain::tree::conflicted_copy;
use futures::StreamExt;
use serde_json::json;

use super::chunks::Pieces;
use super::confined::ConfineError;
use super::local::mtime_ns;
use super::plan::{Action, Base, Local, Remote};
use super::state::Synced;
use super::{Report, SyncError, Syncer};
use crate::client::ClientError;

/// Files per registration or descriptor request.
const BATCH: usize = 100;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn today() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// Conflicted copies named after this device and today: `a (conflicted copy HOST DATE).txt`,
/// with a counter when that name is taken.
pub fn copy_namer(host: &str) -> impl Fn(&str, &dyn Fn(&str) -> bool) -> String + '_ {
    move |path, taken| {
        let date = today();
        let mut name = conflicted_copy(path, host, &date);
        let mut n = 2;
        while taken(&name) {
            name = conflicted_copy(path, host, &format!("{date} {n}"));
            n += 1;
        }
        name
    }
}

/// One file to send.
#[derive(Debug, Clone)]
struct Upload {
    path: String,
    parent_rev: i64,
    local: Local,
}

impl Syncer {
    /// What stands at `rel` now, without following links; `None` when nothing does (or a
    /// folder on the way is missing).
    fn meta(&self, rel: &str) -> Result<Option<std::fs::Metadata>, ConfineError> {
        self.folder.stat(rel)
    }

    /// Whether the file at `rel` is exactly as scanned (`None`: absent as scanned).
    fn still(&self, rel: &str, seen: Option<&Local>) -> bool {
        match (self.meta(rel), seen) {
            (Ok(None), None) => true,
            (Ok(Some(meta)), Some(l)) => {
                meta.is_file() && meta.len() == l.size && mtime_ns(&meta) == l.mtime_ns
            }
            _ => false,
        }
    }

    /// Records that the local file at `rel` and the server's `rev` hold `sha256`.
    async fn agree(
        &self,
        rel: &str,
        sha256: &str,
        rev: i64,
        file_id: &str,
    ) -> Result<(), SyncError> {
        let meta = self
            .meta(rel)
            .map_err(|e| SyncError::Io(rel.to_owned(), std::io::Error::other(e)))?
            .ok_or_else(|| SyncError::Io(rel.to_owned(), std::io::ErrorKind::NotFound.into()))?;
        let synced = Synced {
            base: Base {
                sha256: sha256.to_owned(),
                rev,
                file_id: file_id.to_owned(),
            },
            size: meta.len(),
            mtime_ns: mtime_ns(&meta),
            synced_at_ns: now_ns(),
        };
        self.state.record(rel, &synced).await?;
        Ok(())
    }

    /// Moves the local file at `path` aside to a conflicted copy; returns the copy's name.
    fn set_aside(&self, path: &str, seen: &Local) -> Option<String> {
        if !self.still(path, Some(seen)) {
            return None;
        }
        let taken = |name: &str| !self.still(name, None);
        let copy = copy_namer(&self.opts.host)(path, &taken);
        self.folder.rename(path, &copy).ok()?;
        Some(copy)
    }
}

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
    upload_all(s, uploads, report).await?;
    download_all(s, downloads, report).await?;
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
                s.agree(&to, &b.sha256, moved.rev, &moved.file_id).await?;
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

/// Why the server refused one file.
enum Refusal {
    /// The path moved on since this client last agreed with it: a true conflict.
    Conflict,
    /// The path is a folder there: a copy beside it goes through.
    Nesting,
    /// No server takes this name: sending it again would only be refused again.
    Name(String),
    Other(String),
}

fn refusal(code: &str, detail: String) -> Refusal {
    match code {
        "rev_conflict" => Refusal::Conflict,
        "path_is_folder" => Refusal::Nesting,
        "invalid_path" | "invalid_name" | "path_too_long" => Refusal::Name(detail),
        // A file on the server has the name of one of its folders (it came after this pass
        // read the feed). The folder keeps the name: the local file stays where it is (a copy
        // beside it would be refused again), and the next pass moves the server's file aside.
        "parent_is_file" => Refusal::Other(format!(
            "a file on the server has the name of one of its folders ({detail})"
        )),
        _ => Refusal::Other(detail),
    }
}

/// Sends files, registering them in batches; conflicted copies made on the way go in a
/// second round.
async fn upload_all(
    s: &Syncer,
    mut queue: Vec<Upload>,
    report: &mut Report,
) -> Result<(), SyncError> {
    for _round in 0..2 {
        if queue.is_empty() {
            break;
        }
        let mut aside = Vec::new();
        for batch in queue.chunks(BATCH) {
            aside.extend(upload_batch(s, batch, report).await?);
        }
        queue = aside;
    }
    Ok(())
}

async fn upload_batch(
    s: &Syncer,
    batch: &[Upload],
    report: &mut Report,
) -> Result<Vec<Upload>, SyncError> {
    let requests: Vec<_> = batch
        .iter()
        .map(|u| json!({ "path": u.path, "size": u.local.size, "parentRev": u.parent_rev }))
        .collect();
    let registered = s.client.register_batch(&requests).await?;
    let mut refused: Vec<(usize, Refusal)> = Vec::new();
    let mut sends = Vec::new();
    for r in registered {
        let Some(u) = batch.get(r.index) else {
            continue;
        };
        match (r.file_id, r.location) {
            (Some(id), Some(location)) => sends.push((r.index, u, id, location)),
            _ => {
                let code = r
                    .error
                    .as_ref()
                    .and_then(|e| e["code"].as_str())
                    .unwrap_or("");
                let detail = r.error.as_ref().map(|e| e.to_string()).unwrap_or_default();
                refused.push((r.index, refusal(code, detail)));
            }
        }
    }
    let (small, large): (Vec<_>, Vec<_>) = sends
        .into_iter()
        .partition(|(_, u, _, _)| u.local.size <= BUNDLE_FILE_MAX);
    let mut results = send_bundled(s, small, report).await;
    let singles: Vec<_> = futures::stream::iter(large)
        .map(|(i, u, id, location)| async move {
            let sent = async {
                let (sha, bytes) = send(s, u, &id, &location).await?;
                let (_, rev) = s.client.finalize_rev(&id, &sha, u.local.size).await?;
                Ok::<_, SyncError>((sha, rev, bytes))
            };
            let sent = sent.await;
            (i, id, sent)
        })
        .buffer_unordered(s.opts.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    results.extend(singles);
    for (i, id, sent) in results {
        let u = &batch[i];
        match sent {
            Ok((sha, Some(rev), bytes)) => {
                let synced = Synced {
                    base: Base {
                        sha256: sha,
                        rev,
                        file_id: id,
                    },
                    size: u.local.size,
                    mtime_ns: u.local.mtime_ns,
                    synced_at_ns: now_ns(),
                };
                s.state.record(&u.path, &synced).await?;
                report.uploaded += 1;
                report.bytes_sent += bytes;
            }
            // Finalized, but superseded at once by another client: the next pass compares.
            Ok((_, None, bytes)) => {
                report.uploaded += 1;
                report.bytes_sent += bytes;
            }
            Err(SyncError::Client(ClientError::Api { code, detail, .. })) => {
                refused.push((i, refusal(&code, detail)));
            }
            Err(e) => report.failed.push(format!("uploading {}: {e}", u.path)),
        }
    }
    let mut aside = Vec::new();
    for (i, why) in refused {
        let u = &batch[i];
        match why {
            Refusal::Conflict | Refusal::Nesting => match s.set_aside(&u.path, &u.local) {
                Some(copy) => {
                    report.conflicts += 1;
                    aside.push(Upload {
                        path: copy,
                        parent_rev: 0,
                        local: u.local.clone(),
                    });
                }
                None => report.failed.push(format!("keeping {} aside", u.path)),
            },
            Refusal::Name(detail) => {
                report.refused.push(format!("{}: {detail}", u.path));
            }
            Refusal::Other(detail) => {
                report
                    .failed
                    .push(format!("uploading {}: {detail}", u.path));
            }
        }
    }
    Ok(aside)
}

/// What sending one registered file came to: its SHA-256, the revision it became (none when
/// another client superseded it at once) and the bytes it cost on the wire.
type Sent = Result<(String, Option<i64>, u64), SyncError>;

/// Files up to this size travel in bundles, many to a request.
const BUNDLE_FILE_MAX: u64 = 1024 * 1024;
/// Content per bundle, well under the server's limit.
const BUNDLE_BYTES: u64 = 8 * 1024 * 1024;

/// One small file on its way into a bundle.
struct Bundled {
    /// Its place in the registration batch.
    index: usize,
    file_id: String,
    item: filestore_domain::bundle::BundleItem,
    data: Vec<u8>,
}

/// Sends small registered files in bundles: one request stores and finalizes a whole group.
/// The bytes on the wire go to `report` per bundle, not per file.
async fn send_bundled(
    s: &Syncer,
    files: Vec<(usize, &Upload, String, String)>,
    report: &mut Report,
) -> Vec<(usize, String, Sent)> {
    let mut results = Vec::new();
    let mut groups: Vec<Vec<Bundled>> = vec![Vec::new()];
    let mut group_bytes = 0;
    for (i, u, id, _) in files {
        let read = s.folder.read(&u.path).map_err(std::io::Error::other);
        let data = match read {
            Ok(data) if data.len() as u64 == u.local.size => data,
            Ok(_) => {
                let changed = std::io::Error::other("the file changed while it was being sent");
                results.push((i, id, Err(SyncError::Io(u.path.clone(), changed))));
                continue;
            }
            Err(e) => {
                results.push((i, id, Err(SyncError::Io(u.path.clone(), e))));
                continue;
            }
        };
        if group_bytes + u.local.size > BUNDLE_BYTES {
            groups.push(Vec::new());
            group_bytes = 0;
        }
        group_bytes += u.local.size;
        let item = filestore_domain::bundle::BundleItem {
            file_id: id.clone(),
            size: u.local.size,
            sha256: hex::encode(filestore_domain::keys::sha256(&data)),
        };
        if let Some(group) = groups.last_mut() {
            group.push(Bundled {
                index: i,
                file_id: id,
                item,
                data,
            });
        }
    }
    for group in groups.into_iter().filter(|g| !g.is_empty()) {
        let index: Vec<(usize, String, String)> = group
            .iter()
            .map(|b| (b.index, b.file_id.clone(), b.item.sha256.clone()))
            .collect();
        let body = group.into_iter().map(|b| (b.item, b.data)).collect();
        match s.client.upload_bundle(body).await {
            Ok((done, sent)) => {
                report.bytes_sent += sent;
                let mut done: BTreeMap<usize, _> = done.into_iter().map(|r| (r.index, r)).collect();
                for (n, (i, id, sha)) in index.into_iter().enumerate() {
                    let outcome = match done.remove(&n) {
                        Some(r) => match r.error {
                            None => Ok((sha, r.rev, 0)),
                            Some(p) => Err(SyncError::Client(ClientError::Api {
                                status: p.status,
                                code: p.code,
                                detail: p.detail,
                            })),
                        },
                        None => Err(SyncError::Client(ClientError::Api {
                            status: 0,
                            code: "bundle_incomplete".into(),
                            detail: "the server answered for fewer files than were sent".into(),
                        })),
                    };
                    results.push((i, id, outcome));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (i, id, _) in index {
                    let failed = ClientError::Api {
                        status: 0,
                        code: "bundle_failed".into(),
                        detail: why.clone(),
                    };
                    results.push((i, id, Err(SyncError::Client(failed))));
                }
            }
        }
    }
    results
}

/// Whether a file is worth a delta transfer: big enough to span several chunks.
async fn delta_worthy(s: &Syncer, size: u64) -> Option<filestore_domain::chunking::ChunkParams> {
    let params = s.chunk_params().await.ok()?;
    (size >= 4 * u64::from(params.min)).then_some(params)
}

/// Sends one registered file's bytes: a large one as the chunks the server lacks, then
/// assembled there; a small one whole. Returns its SHA-256 and the bytes sent.
async fn send(
    s: &Syncer,
    u: &Upload,
    id: &str,
    location: &str,
) -> Result<(String, u64), SyncError> {
    let path = s.folder.path().join(&u.path);
    let io = |e: std::io::Error| SyncError::Io(u.path.clone(), e);
    let Some(params) = delta_worthy(s, u.local.size).await else {
        let data = s
            .folder
            .read(&u.path)
            .map_err(|e| io(std::io::Error::other(e)))?;
        if data.len() as u64 != u.local.size {
            return Err(io(std::io::Error::other(
                "the file changed while it was being sent",
            )));
        }
        return Ok(s.client.put_content_bytes(location, data).await?);
    };
    let cut = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Pieces::of(&path, params))
            .await?
            .map_err(io)?
    };
    let mut hashes: Vec<String> = cut.pieces.iter().map(|p| hex::encode(p.sha256)).collect();
    let listed = hashes.clone();
    hashes.sort();
    hashes.dedup();
    let missing: std::collections::HashSet<String> = s
        .client
        .missing_chunks(&hashes)
        .await?
        .into_iter()
        .collect();
    let by_sha = cut.by_sha();
    let sent: Vec<Result<u64, SyncError>> = futures::stream::iter(missing.iter())
        .filter_map(|sha| {
            let piece = by_sha.get(sha).copied();
            async move { piece.map(|p| (sha.clone(), p)) }
        })
        .map(|(sha, piece)| {
            let cut = cut.clone();
            async move {
                let bytes = tokio::task::spawn_blocking(move || cut.read(&piece))
                    .await?
                    .map_err(|e| SyncError::Io(sha.clone(), e))?;
                Ok(s.client.put_chunk(&sha, bytes).await?)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut bytes = 0;
    for r in sent {
        bytes += r?;
    }
    let chunks: Vec<(String, u32)> = listed
        .into_iter()
        .zip(cut.pieces.iter().map(|p| p.length))
        .collect();
    let stored = s.client.assemble(id, &chunks).await?;
    if stored != cut.sha256 {
        return Err(SyncError::Client(ClientError::Api {
            status: 0,
            code: "transfer_corrupted".into(),
            detail: format!("the server assembled other bytes than {} holds", u.path),
        }));
    }
    Ok((stored, bytes))
}

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
async fn download_all(
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
