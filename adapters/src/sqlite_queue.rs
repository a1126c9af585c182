//! The embedded queue: messages are rows in the metadata database, so they survive a crash, and
//! a delivery is a lease: a consumer that dies stops renewing it and the message comes back.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::messages::queues_for;
use sqlx::Row;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::queue::{Delivery, Queue, QueueError, Subscription};
use crate::sql::error::queue as queue_error;
use crate::sqlite::SqliteStore;

const POLL: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct SqliteQueue {
    store: SqliteStore,
    lease: Duration,
    wakers: Wakers,
}

/// One wake-up per queue: a publish wakes only the consumers of the queues it wrote to. With
/// one for all, every publish woke every idle consumer of every stage, and each of them then
/// queued for the single writer to claim nothing.
#[derive(Clone, Default)]
struct Wakers(Arc<Mutex<HashMap<String, Arc<Notify>>>>);

impl Wakers {
    fn of(&self, queue: &str) -> Arc<Notify> {
        // A poisoned map still holds valid entries: a panic cannot leave one half-inserted.
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }
}

impl SqliteQueue {
    pub fn new(store: SqliteStore, lease: Duration) -> Self {
        Self {
            store,
            lease,
            wakers: Wakers::default(),
        }
    }

    /// Hands every in-flight message back at once. Only for a process that knows it is the
    /// queue's sole consumer (`filestore dev`): whatever was leased belonged to a dead process.
    pub async fn release_all_leases(&self) -> Result<u64, QueueError> {
        let _w = self.store.write_turn().await;
        let done = sqlx::query(
            "UPDATE queue_messages SET leased_until = NULL WHERE leased_until IS NOT NULL",
        )
        .execute(self.store.relaxed_pool())
        .await
        .map_err(queue_error)?;
        Ok(done.rows_affected())
    }

    /// Parked messages of a queue with why they were parked, oldest first.
    pub async fn parked(&self, queue: &str) -> Result<Vec<(Delivery, String)>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, routing_key, payload, deliveries, park_reason FROM queue_messages
             WHERE queue = ? AND parked = 1 ORDER BY id",
        )
        .bind(queue)
        .fetch_all(self.store.relaxed_pool())
        .await
        .map_err(queue_error)?;
        rows.iter()
            .map(|r| {
                let deliveries: i64 = r.try_get("deliveries").map_err(queue_error)?;
                Ok((
                    Delivery {
                        tag: r.try_get("id").map_err(queue_error)?,
                        routing_key: r.try_get("routing_key").map_err(queue_error)?,
                        body: r.try_get("payload").map_err(queue_error)?,
                        deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
                    },
                    r.try_get::<Option<String>, _>("park_reason")
                        .map_err(queue_error)?
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether `queue` has a message to claim now. A read needs no writer's turn, so a
    /// consumer that finds nothing never makes the writers wait.
    async fn has_claimable(&self, queue: &str, now: i64) -> Result<bool, QueueError> {
        let row = sqlx::query(
            "SELECT 1 AS found FROM queue_messages
             WHERE queue = ? AND parked = 0 AND visible_at <= ?
               AND (leased_until IS NULL OR leased_until < ?)
             LIMIT 1",
        )
        .bind(queue)
        .bind(now)
        .bind(now)
        .fetch_optional(self.store.relaxed_pool())
        .await
        .map_err(queue_error)?;
        Ok(row.is_some())
    }

    async fn claim(&self, queue: &str) -> Result<Option<Delivery>, QueueError> {
        let now = now_ms();
        if !self.has_claimable(queue, now).await? {
            return Ok(None);
        }
        let _w = self.store.write_turn().await;
        let row = sqlx::query(
            "UPDATE queue_messages SET leased_until = ?, deliveries = deliveries + 1
             WHERE id = (SELECT id FROM queue_messages
                         WHERE queue = ? AND parked = 0 AND visible_at <= ?
                           AND (leased_until IS NULL OR leased_until < ?)
                         ORDER BY id LIMIT 1)
             RETURNING id, routing_key, payload, deliveries",
        )
        .bind(now.saturating_add(self.lease_ms()))
        .bind(queue)
        .bind(now)
        .bind(now)
        .fetch_optional(self.store.relaxed_pool())
        .await
        .map_err(queue_error)?;
        row.map(|r| {
            let deliveries: i64 = r.try_get("deliveries").map_err(queue_error)?;
            Ok(Delivery {
                tag: r.try_get("id").map_err(queue_error)?,
                routing_key: r.try_get("routing_key").map_err(queue_error)?,
                body: r.try_get("payload").map_err(queue_error)?,
                deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
            })
        })
        .transpose()
    }

    async fn update(
        &self,
        sql: &str,
        delivery: &Delivery,
        value: Option<&str>,
        at: i64,
    ) -> Result<(), QueueError> {
        let _w = self.store.write_turn().await;
        let mut q = sqlx::query(sql).bind(at);
        if let Some(v) = value {
            q = q.bind(v);
        }
        q.bind(delivery.tag)
            .execute(self.store.relaxed_pool())
            .await
            .map_err(queue_error)?;
        Ok(())
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), QueueError> {
        let queues = queues_for(routing_key);
        if queues.is_empty() {
            return Err(QueueError::Unroutable(routing_key.to_owned()));
        }
        {
            let _w = self.store.write_turn().await;
            let mut tx = self
                .store
                .relaxed_pool()
                .begin()
                .await
                .map_err(queue_error)?;
            let now = now_ms();
            for queue in &queues {
                sqlx::query("INSERT INTO queue_messages (queue, routing_key, payload, visible_at) VALUES (?, ?, ?, ?)")
                    .bind(queue)
                    .bind(routing_key)
                    .bind(body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await.map_err(queue_error)?;
            }
            tx.commit().await.map_err(queue_error)?;
        }
        for queue in queues {
            self.wakers.of(queue).notify_waiters();
        }
        Ok(())
    }

    async fn subscribe(&self, queue: &'static str) -> Result<Box<dyn Subscription>, QueueError> {
        Ok(Box::new(SqliteSubscription {
            queue: self.clone(),
            name: queue,
            wake: self.wakers.of(queue),
        }))
    }

    async fn depth(&self, queue: &'static str) -> Result<u64, QueueError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM queue_messages WHERE queue = ? AND parked = 0")
                .bind(queue)
                .fetch_one(self.store.relaxed_pool())
                .await
                .map_err(queue_error)?;
        let n: i64 = row.try_get("n").map_err(queue_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

struct SqliteSubscription {
    queue: SqliteQueue,
    name: &'static str,
    wake: Arc<Notify>,
}

#[async_trait]
impl Subscription for SqliteSubscription {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        loop {
            // Register for a wake-up before looking, so a publish in between is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(d) = self.queue.claim(self.name).await? {
                return Ok(d);
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), QueueError> {
        let _w = self.queue.store.write_turn().await;
        sqlx::query("DELETE FROM queue_messages WHERE id = ?")
            .bind(delivery.tag)
            .execute(self.queue.store.relaxed_pool())
            .await
            .map_err(queue_error)?;
        Ok(())
    }

    async fn retry_later(
        &mut self,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let at = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        self.queue
            .update(
                "UPDATE queue_messages SET visible_at = ?, leased_until = NULL WHERE id = ?",
                delivery,
                None,
                at,
            )
            .await
    }

    async fn park(&mut self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.queue
            .update(
                "UPDATE queue_messages SET parked = 1, visible_at = ?, park_reason = ?, leased_until = NULL WHERE id = ?",
                delivery,
                Some(reason),
                now_ms(),
            )
            .await
    }

    async fn keep_alive(&mut self, delivery: &Delivery) -> Result<(), QueueError> {
        let until = now_ms().saturating_add(self.queue.lease_ms());
        self.queue
            .update(
                "UPDATE queue_messages SET leased_until = ? WHERE id = ?",
                delivery,
                None,
                until,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filestore_domain::messages::routing;

    async fn queue(lease: Duration) -> (tempfile::TempDir, SqliteQueue) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db"))
            .await
            .unwrap();
        (dir, SqliteQueue::new(store, lease))
    }

    #[tokio::test]
    async fn a_message_is_delivered_until_acked() {
        let (_d, q) = queue(Duration::from_secs(60)).await;
        q.publish(routing::FILE_UPLOADED, b"one").await.unwrap();
        let mut sub = q.subscribe("filestore.scan").await.unwrap();
        let d = sub.next().await.unwrap();
        assert_eq!((d.body.as_slice(), d.deliveries), (b"one".as_slice(), 1));
        assert_eq!(q.depth("filestore.scan").await.unwrap(), 1);
        sub.ack(&d).await.unwrap();
        assert_eq!(q.depth("filestore.scan").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn an_expired_lease_redelivers_and_counts() {
        let (_d, q) = queue(Duration::from_millis(50)).await;
        q.publish(routing::FILE_UPLOADED, b"x").await.unwrap();
        let mut a = q.subscribe("filestore.scan").await.unwrap();
        let first = a.next().await.unwrap();
        drop(a); // the consumer dies without acking
        tokio::time::sleep(Duration::from_millis(80)).await;
        let mut b = q.subscribe("filestore.scan").await.unwrap();
        let again = b.next().await.unwrap();
        assert_eq!((again.tag, again.deliveries), (first.tag, 2));
    }

    #[tokio::test]
    async fn released_leases_come_back_at_once() {
        let (_d, q) = queue(Duration::from_secs(600)).await;
        q.publish(routing::FILE_SCANNED, b"y").await.unwrap();
        let mut a = q.subscribe("filestore.chunk").await.unwrap();
        a.next().await.unwrap();
        assert_eq!(q.release_all_leases().await.unwrap(), 1);
        assert_eq!(a.next().await.unwrap().deliveries, 2);
    }

    #[tokio::test]
    async fn parked_messages_stay_parked_with_their_reason() {
        let (_d, q) = queue(Duration::from_secs(60)).await;
        q.publish(routing::CHUNK_CREATED, b"poison").await.unwrap();
        let mut s = q.subscribe("filestore.index").await.unwrap();
        let d = s.next().await.unwrap();
        s.park(&d, "malformed").await.unwrap();
        assert_eq!(q.depth("filestore.index").await.unwrap(), 0);
        let parked = q.parked("filestore.index").await.unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].1, "malformed");
    }

    #[tokio::test]
    async fn unroutable_keys_are_refused() {
        let (_d, q) = queue(Duration::from_secs(60)).await;
        assert!(matches!(
            q.publish("no.such.key", b"").await,
            Err(QueueError::Unroutable(_))
        ));
    }
}
