//! Sending files: registered in batches, small ones in bundles, large ones as the chunks the
//! server lacks; a refusal becomes a conflicted copy, a report line or a retry next pass.
use std::collections::BTreeMap;

use filestore_api::error::ProblemCode;
use filestore_domain::FileId;
use futures::StreamExt;
use serde_json::json;

use super::folder::now_ns;
use super::{BATCH, delta_worthy};
use crate::client::ClientError;
use crate::sync::chunks::Pieces;
use crate::sync::plan::{Base, Local};
use crate::sync::state::Synced;
use crate::sync::{Report, SyncError, Syncer};

/// One file to send.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    pub(super) path: String,
    pub(super) parent_rev: i64,
    pub(super) local: Local,
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
    use ProblemCode as P;
    match ProblemCode::from_code(code) {
        Some(P::RevConflict) => Refusal::Conflict,
        Some(P::PathIsFolder) => Refusal::Nesting,
        Some(P::InvalidPath | P::InvalidName | P::PathTooLong) => Refusal::Name(detail),
        // A file on the server has the name of one of its folders (it came after this pass
        // read the feed). The folder keeps the name: the local file stays where it is (a copy
        // beside it would be refused again), and the next pass moves the server's file aside.
        Some(P::ParentIsFile) => Refusal::Other(format!(
            "a file on the server has the name of one of its folders ({detail})"
        )),
        _ => Refusal::Other(detail),
    }
}

/// Sends files, registering them in batches; conflicted copies made on the way go in a
/// second round.
pub(super) async fn upload_all(
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
                        file_id: id.to_string(),
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
    file_id: FileId,
    item: filestore_domain::bundle::BundleItem,
    data: Vec<u8>,
}

/// Sends small registered files in bundles: one request stores and finalizes a whole group.
/// The bytes on the wire go to `report` per bundle, not per file.
async fn send_bundled(
    s: &Syncer,
    files: Vec<(usize, &Upload, FileId, String)>,
    report: &mut Report,
) -> Vec<(usize, FileId, Sent)> {
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
            file_id: id.to_string(),
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
        let index: Vec<(usize, FileId, String)> = group
            .iter()
            .map(|b| (b.index, b.file_id, b.item.sha256.clone()))
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

/// Sends one registered file's bytes: a large one as the chunks the server lacks, then
/// assembled there; a small one whole. Returns its SHA-256 and the bytes sent.
async fn send(
    s: &Syncer,
    u: &Upload,
    id: &FileId,
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
