//! Consumer loops: take a delivery, run its stage while keeping the claim alive, then settle it
//! (ack, retry later, park) according to the outcome.
use std::sync::Arc;
use std::time::Instant;

use filestore_domain::messages::Stage;
use filestore_domain::{FileEvent, FileId};
use filestore_ports::queue::{Delivery, Subscription};
use tokio::task::JoinHandle;

use crate::pipeline::Pipeline;
use crate::retry::{AfterFailure, after_failure};
use crate::stages::{self, StageError};
use crate::task::AbortOnDrop;

/// Starts `stage_concurrency` consumers for each configured stage.
pub fn spawn_stages(pipeline: Arc<Pipeline>) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for &stage in &pipeline.config.stages {
        for _ in 0..pipeline.config.stage_concurrency.max(1) {
            handles.push(tokio::spawn(consume(pipeline.clone(), stage)));
        }
    }
    handles
}

async fn consume(p: Arc<Pipeline>, stage: Stage) {
    let backoff = std::time::Duration::from_secs(1);
    loop {
        let mut sub = match p.queue.subscribe(stage.queue()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(stage = stage.name(), error = %e, "cannot subscribe; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        loop {
            let delivery = match sub.next().await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(stage = stage.name(), error = %e, "lost the queue; resubscribing");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            };
            let started = Instant::now();
            let outcome = run_keeping_alive(&p, stage, sub.as_mut(), &delivery).await;
            metrics::histogram!("filestore_stage_seconds", "stage" => stage.name())
                .record(started.elapsed().as_secs_f64());
            settle(&p, stage, sub.as_mut(), &delivery, outcome).await;
        }
    }
}

/// Runs the stage on its own task, so that renewing the claim never waits on work that is
/// itself waiting (a lock held inside the stage, say), and a panic becomes a retry.
async fn run_keeping_alive(
    p: &Arc<Pipeline>,
    stage: Stage,
    sub: &mut dyn Subscription,
    delivery: &Delivery,
) -> Result<(), StageError> {
    let mut work = AbortOnDrop::spawn({
        let p = p.clone();
        let d = delivery.clone();
        async move { stages::handle(&p, stage, &d).await }
    });
    let mut tick = tokio::time::interval(p.config.keep_alive_every());
    tick.tick().await;
    loop {
        tokio::select! {
            result = &mut work => {
                return result.unwrap_or_else(|e| Err(StageError::Transient(None, format!("the stage task died: {e}"))));
            }
            _ = tick.tick() => {
                if let Err(e) = sub.keep_alive(delivery).await {
                    tracing::warn!(error = %e, "could not renew the claim on a message");
                }
            }
        }
    }
}

async fn settle(
    p: &Pipeline,
    stage: Stage,
    sub: &mut dyn Subscription,
    d: &Delivery,
    outcome: Result<(), StageError>,
) {
    let name = stage.name();
    let result = match outcome {
        Ok(()) => {
            metrics::counter!("filestore_stage_messages_total", "stage" => name, "outcome" => "ok")
                .increment(1);
            sub.ack(d).await
        }
        Err(StageError::Poison(reason)) => {
            metrics::counter!("filestore_stage_messages_total", "stage" => name, "outcome" => "parked").increment(1);
            tracing::error!(stage = name, tag = d.tag, %reason, "unreadable message parked");
            sub.park(d, &reason).await
        }
        Err(StageError::Permanent(file, reason)) => {
            metrics::counter!("filestore_stage_messages_total", "stage" => name, "outcome" => "failed").increment(1);
            tracing::error!(stage = name, %file, %reason, "file cannot be processed");
            match mark_failed(p, &file, &reason).await {
                Ok(()) => sub.ack(d).await,
                Err(e) => {
                    tracing::warn!(error = %e, "could not record the failure; retrying the message");
                    sub.retry_later(d, std::time::Duration::from_secs(1)).await
                }
            }
        }
        Err(StageError::Transient(file, reason)) => {
            match after_failure(d.deliveries, p.config.max_deliveries) {
                AfterFailure::Retry(delay) => {
                    metrics::counter!("filestore_stage_messages_total", "stage" => name, "outcome" => "retried")
                    .increment(1);
                    tracing::warn!(stage = name, ?file, %reason, attempt = d.deliveries, ?delay, "stage failed; will retry");
                    sub.retry_later(d, delay).await
                }
                AfterFailure::GiveUp => {
                    metrics::counter!("filestore_stage_messages_total", "stage" => name, "outcome" => "failed")
                    .increment(1);
                    let reason = format!(
                        "{name} stage gave up after {} attempts: {reason}",
                        d.deliveries
                    );
                    tracing::error!(stage = name, ?file, %reason, "retries exhausted");
                    let file = file.or_else(|| file_named_in(d));
                    match file {
                        Some(file) => match mark_failed(p, &file, &reason).await {
                            Ok(()) => sub.park(d, &reason).await,
                            // Parking now would leave the file in `processing` for good.
                            Err(e) => {
                                tracing::warn!(error = %e, "could not record the failure; retrying the message");
                                sub.retry_later(d, std::time::Duration::from_secs(5)).await
                            }
                        },
                        None => sub.park(d, &reason).await,
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        // The message is still claimed; its lease runs out and it is delivered again.
        tracing::warn!(stage = name, error = %e, "could not settle a message");
    }
}

/// The file a message is about, when only the raw message is at hand.
fn file_named_in(d: &Delivery) -> Option<FileId> {
    #[derive(serde::Deserialize)]
    struct AnyFileMessage {
        file_id: FileId,
    }
    serde_json::from_slice::<AnyFileMessage>(&d.body)
        .ok()
        .map(|m| m.file_id)
}

async fn mark_failed(
    p: &Pipeline,
    file: &FileId,
    reason: &str,
) -> Result<(), filestore_ports::StoreError> {
    match p
        .store
        .apply_event(file, FileEvent::ProcessingFailed, Some(reason))
        .await
    {
        Ok(_)
        | Err(filestore_ports::StoreError::Illegal(_) | filestore_ports::StoreError::NotFound(_)) => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
