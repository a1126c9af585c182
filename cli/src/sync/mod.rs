//! `filestore sync DIR`: two-way sync of a local folder with the user's tree on the server.
//!
//! One pass reads the server's changes since the last pass (the change feed), scans the folder,
//! plans against the tree both sides last agreed on ([`plan`]), and carries the plan out,
//! recording each completed step in the folder's state database at once. A pass interrupted
//! anywhere leaves nothing half-done under a real name (downloads land in a temporary file and
//! are renamed into place) and the next pass picks up from what was recorded.
pub mod apply;
pub mod chunks;
pub mod confined;
pub mod local;
pub mod plan;
pub mod remote;
pub mod state;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use filestore_domain::chunking::ChunkParams;
use serde::Serialize;

use crate::client::{Client, ClientError};
use local::{CLIENT_DIR, ScanError};
use plan::{Base, Trees};
use state::{State, StateError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is synced with {1}, not {2}; sync another folder")]
    OtherServer(PathBuf, String, String),
    #[error("the scan stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub root: PathBuf,
    /// Names this device in conflicted copies.
    pub host: String,
    /// Files transferred at once.
    pub concurrency: usize,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub uploaded: usize,
    pub downloaded: usize,
    pub moved_remote: usize,
    pub moved_local: usize,
    pub deleted_remote: usize,
    pub deleted_local: usize,
    pub conflicts: usize,
    pub agreed: usize,
    /// Server heads still processing, to fetch on a later pass.
    pub waiting: usize,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Local files read to hash them.
    pub hashed: usize,
    /// Steps that failed this time (they are planned again next pass).
    pub failed: Vec<String>,
    /// Server versions that can never be downloaded (quarantined as malware, failed for
    /// good), with why: the local side of each is left as it is.
    pub unavailable: Vec<String>,
    /// Paths sync will not use, with why: a server path no folder may hold (`..`, absolute,
    /// a backslash, NUL, overlong, a name Windows cannot hold), a path under a symbolic link
    /// in the folder, a local name no server can hold. Each is left alone on both sides:
    /// never written, never retried as a failure, never turned into a delete.
    pub refused: Vec<String>,
}

impl Report {
    /// Whether the pass changed anything on either side.
    pub fn did_work(&self) -> bool {
        self.uploaded
            + self.downloaded
            + self.moved_remote
            + self.moved_local
            + self.deleted_remote
            + self.deleted_local
            + self.conflicts
            + self.agreed
            > 0
    }

    /// Both sides agree and nothing is left to wait for.
    pub fn settled(&self) -> bool {
        !self.did_work() && self.waiting == 0 && self.failed.is_empty()
    }

    pub fn add(&mut self, other: &Report) {
        self.uploaded += other.uploaded;
        self.downloaded += other.downloaded;
        self.moved_remote += other.moved_remote;
        self.moved_local += other.moved_local;
        self.deleted_remote += other.deleted_remote;
        self.deleted_local += other.deleted_local;
        self.conflicts += other.conflicts;
        self.agreed += other.agreed;
        self.waiting = other.waiting;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.hashed += other.hashed;
        self.failed = other.failed.clone();
        self.unavailable = other.unavailable.clone();
        // A server path is refused once, when the feed brings it; a link, on every pass.
        self.refused.extend(other.refused.iter().cloned());
        self.refused.sort();
        self.refused.dedup();
    }
}

pub struct Syncer {
    pub(crate) client: Client,
    pub(crate) opts: SyncOptions,
    pub(crate) state: State,
    /// The folder: every local write, move and delete goes through it.
    pub(crate) folder: confined::Folder,
    /// The server's chunking, asked once.
    chunking: tokio::sync::OnceCell<ChunkParams>,
}

/// Whether `rel` lies clear of every link in `links` (see [`local::Scan::link_over`]).
fn scan_links_allow(links: &std::collections::BTreeSet<String>, rel: &str) -> bool {
    local::link_over(links, rel).is_none()
}

impl Syncer {
    /// Opens (or starts) the sync of `opts.root` with the server `client` talks to.
    pub async fn open(client: Client, server: &str, opts: SyncOptions) -> Result<Self, SyncError> {
        let io = |what: &Path, e| SyncError::Io(what.display().to_string(), e);
        let dir = opts.root.join(CLIENT_DIR);
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        // What an interrupted pass left half-downloaded.
        for leftover in std::fs::read_dir(&tmp).map_err(|e| io(&tmp, e))?.flatten() {
            let _ = std::fs::remove_file(leftover.path());
        }
        let folder = confined::Folder::open(&opts.root).map_err(|e| io(&opts.root, e))?;
        let state = State::open(&dir.join("state.db")).await?;
        match state.meta("server").await? {
            Some(known) if known != server => {
                return Err(SyncError::OtherServer(
                    opts.root.clone(),
                    known,
                    server.into(),
                ));
            }
            Some(_) => {}
            None => state.set_meta("server", server).await?,
        }
        Ok(Self {
            client,
            opts,
            state,
            folder,
            chunking: tokio::sync::OnceCell::new(),
        })
    }

    /// The server's chunking parameters, which delta transfers cut files with.
    pub async fn chunk_params(&self) -> Result<ChunkParams, SyncError> {
        let params = self
            .chunking
            .get_or_try_init(|| async {
                let (min, avg, max) = self.client.chunking().await?;
                ChunkParams::new(min, avg, max).map_err(|e| {
                    SyncError::Io("the server's chunking".into(), std::io::Error::other(e))
                })
            })
            .await?;
        Ok(*params)
    }

    pub fn root(&self) -> &Path {
        &self.opts.root
    }

    pub(crate) fn temp_dir(&self) -> PathBuf {
        self.opts.root.join(CLIENT_DIR).join("tmp")
    }

    /// The feed position the last pass read up to.
    pub async fn cursor(&self) -> Result<Option<i64>, SyncError> {
        Ok(self.state.cursor().await?)
    }

    /// One pass: read the server's changes, scan the folder, plan, carry it out.
    pub async fn pass(&self) -> Result<Report, SyncError> {
        let synced = self.state.base().await?;
        let base: BTreeMap<String, Base> = synced
            .iter()
            .map(|(p, s)| (p.clone(), s.base.clone()))
            .collect();
        let mut mirror = self.state.mirror().await?;
        let mut cursor = self.state.cursor().await?;
        let mut refused = remote::refresh(&self.client, &mut mirror, &mut cursor, &base).await?;
        self.state.save_mirror(&mirror, cursor.unwrap_or(0)).await?;
        let root = self.opts.root.clone();
        let mut scan = tokio::task::spawn_blocking(move || local::scan(&root, &synced)).await??;
        for skipped in &scan.skipped {
            tracing::warn!(path = %skipped.display(), "not synced: no server can hold this name");
            refused.push(format!(
                "{}: no server can hold this name",
                skipped.display()
            ));
        }
        // A path the rules now name, one a link now stands over, or one the path rules no longer
        // take (a name agreed on before they refused it) stops being synced, and forgetting
        // that it ever agreed makes syncing it again later a first meeting of both sides (a
        // download, or both kept), never a delete.
        let (base, ignored): (BTreeMap<_, _>, BTreeMap<_, _>) =
            base.into_iter().partition(|(p, _)| {
                scan.syncs(p) && scan.link_over(p).is_none() && remote::refusal(p).is_none()
            });
        for path in ignored.keys() {
            self.state.forget(path).await?;
        }
        // What lies under a link is not ours to send either (a real folder whose name only a
        // case-insensitive file system would take for the link's).
        scan.files.retain(|p, _| scan_links_allow(&scan.links, p));
        mirror.retain(|p, _| {
            if let Some(why) = remote::refusal(p) {
                refused.push(why);
                return false;
            }
            if let Some(link) = scan.link_over(p) {
                refused.push(format!(
                    "{p}: {link} is a symbolic link in the folder; sync does not follow links"
                ));
                return false;
            }
            scan.syncs(p)
        });
        let namer = apply::copy_namer(&self.opts.host);
        let actions = plan::plan(
            &Trees {
                local: &scan.files,
                remote: &mirror,
                base: &base,
                held: &scan.held,
            },
            &namer,
        );
        for why in &refused {
            tracing::warn!(%why, "refused");
        }
        let mut report = Report {
            hashed: scan.hashed,
            refused,
            ..Report::default()
        };
        apply::run(self, actions, &scan.files, &base, &mut report).await?;
        Ok(report)
    }

    /// Passes until both sides agree and nothing is processing, at most `max_passes`.
    pub async fn until_settled(&self, max_passes: usize) -> Result<Report, SyncError> {
        let mut total = Report::default();
        let mut pause = std::time::Duration::from_millis(50);
        for _ in 0..max_passes.max(1) {
            let report = self.pass().await?;
            total.add(&report);
            if report.settled() {
                break;
            }
            if !report.did_work() {
                // Only waiting (or failing): give the server's pipeline a moment.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
        }
        Ok(total)
    }
}
