//! `filestore sync --watch`: a pass whenever either side changes. Local changes arrive as
//! filesystem notifications, remote ones through a long-poll of the change feed; a pass also
//! runs every `idle` in case a notification was missed (a full inotify queue, a network
//! filesystem), so nothing waits forever.
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::local::CLIENT_DIR;
use super::{Report, SyncError, Syncer};

/// Notifications arrive in bursts (an editor's save is several); a pass waits this long for
/// the burst to end.
const SETTLE: Duration = Duration::from_millis(300);
const LONG_POLL: Duration = Duration::from_secs(60);

/// Passes until `stop` resolves; each pass's report goes to `on_pass`.
pub async fn watch(
    syncer: &Syncer,
    idle: Duration,
    mut on_pass: impl FnMut(&Report),
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), SyncError> {
    let (wake_tx, mut wake) = mpsc::channel::<()>(16);
    let local_tx = wake_tx.clone();
    let client_dir = syncer.root().join(CLIENT_DIR);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let ours = event
            .as_ref()
            .is_ok_and(|e| e.paths.iter().all(|p| p.starts_with(&client_dir)));
        if !ours {
            let _ = local_tx.try_send(());
        }
    })
    .map_err(|e| SyncError::Io("watching the folder".into(), std::io::Error::other(e)))?;
    watcher
        .watch(syncer.root(), RecursiveMode::Recursive)
        .map_err(|e| SyncError::Io("watching the folder".into(), std::io::Error::other(e)))?;

    let client = syncer.client.clone();
    let (cursor_tx, cursor_rx) = tokio::sync::watch::channel(syncer.cursor().await?.unwrap_or(0));
    let remote = tokio::spawn(async move {
        loop {
            let cursor = *cursor_rx.borrow();
            match client.changes(cursor, 1, LONG_POLL.as_secs()).await {
                Ok(page) if !page.changes.is_empty() => {
                    let _ = wake_tx.send(()).await;
                    // Wait for the pass to move the cursor on before asking again.
                    let mut moved = cursor_rx.clone();
                    let _ = tokio::time::timeout(LONG_POLL, moved.changed()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the change feed is unreachable; retrying");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    });
    tokio::pin!(stop);
    let outcome = loop {
        match syncer.pass().await {
            Ok(report) => {
                on_pass(&report);
                if let Ok(Some(c)) = syncer.cursor().await {
                    let _ = cursor_tx.send(c);
                }
                if !report.settled() {
                    // More to do, or something processing: look again soon.
                    tokio::select! {
                        () = &mut stop => break Ok(()),
                        () = tokio::time::sleep(SETTLE) => continue,
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sync pass failed; retrying"),
        }
        tokio::select! {
            () = &mut stop => break Ok(()),
            _ = wake.recv() => {
                tokio::time::sleep(SETTLE).await;
                while wake.try_recv().is_ok() {}
            }
            () = tokio::time::sleep(idle) => {}
        }
    };
    remote.abort();
    outcome
}
