//! Drains the transactional outbox into the queue. A crash between publish and removal
//! publishes the message again; consumers are idempotent, so that changes nothing.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::meta::MetadataStore;
use crate::queue::Queue;

const BATCH: u32 = 100;
const IDLE_POLL: Duration = Duration::from_millis(500);
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

pub struct OutboxRelay {
    store: Arc<dyn MetadataStore>,
    queue: Arc<dyn Queue>,
    wake: Arc<Notify>,
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn MetadataStore>, queue: Arc<dyn Queue>) -> Self {
        Self {
            store,
            queue,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notify this after committing an outbox message to publish it without waiting for a poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Publishes what is pending now; returns how many messages went out.
    pub async fn drain_once(&self) -> Result<usize, String> {
        let mut sent = 0;
        loop {
            let pending = self
                .store
                .outbox_pending(BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if pending.is_empty() {
                return Ok(sent);
            }
            let mut done = Vec::with_capacity(pending.len());
            for p in &pending {
                if let Err(e) = self
                    .queue
                    .publish(&p.message.routing_key, &p.message.payload)
                    .await
                {
                    // Keep what did go out; the rest stays in the outbox for the next round,
                    // given back now so any relay may take it as soon as the queue is back.
                    self.store
                        .outbox_remove(&done)
                        .await
                        .map_err(|e| e.to_string())?;
                    let unsent: Vec<i64> = pending
                        .iter()
                        .map(|p| p.id)
                        .filter(|id| !done.contains(id))
                        .collect();
                    if let Err(release) = self.store.outbox_release(&unsent).await {
                        tracing::warn!(error = %release, "could not release outbox claims; they expire on their own");
                    }
                    return Err(e.to_string());
                }
                done.push(p.id);
            }
            self.store
                .outbox_remove(&done)
                .await
                .map_err(|e| e.to_string())?;
            sent += done.len();
            metrics::counter!("filestore_outbox_published_total").increment(done.len() as u64);
        }
    }

    pub async fn run(self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.drain_once().await {
                Ok(_) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay could not publish; retrying");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            }
        }
    }
}
