//! The production queue: RabbitMQ through lapin.
//!
//! Topology, declared idempotently by whoever connects first:
//! - topic exchange `filestore`; one durable quorum queue per stage bound to its routing key;
//! - delayed retries: for each delay tier a fanout exchange and a quorum queue
//!   `filestore.delay.<ms>` whose messages expire after the tier's delay and are dead-lettered
//!   (at-least-once) back to `filestore` with their original routing key;
//! - parking: fanout exchange `filestore.parking` and quorum queue `filestore.parked`, which
//!   also receives (as the stage queues' dead-letter exchange) messages that crashed consumers
//!   more often than the delivery limit allows.
//!
//! Every publish waits for the broker's confirm; consumers ack by hand with a bounded prefetch.
//! A lost connection surfaces as `QueueError::Unavailable`; the next call reconnects.
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use filestore_domain::messages::{EXCHANGE, Stage};
use futures::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::sync::Mutex;

use crate::queue::{Delivery, Queue, QueueError, Subscription};

pub const PARKING_EXCHANGE: &str = "filestore.parking";
pub const PARKED_QUEUE: &str = "filestore.parked";
/// Retry delays on offer; a requested delay is rounded up to the next tier.
const DELAY_TIERS_MS: [u32; 8] = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000];
/// Redeliveries of one message after consumers died holding it, before the broker parks it.
/// Fixed, because a queue's arguments cannot change once it is declared.
const CRASH_DELIVERY_LIMIT: i64 = 10;
const ATTEMPT_HEADER: &str = "x-filestore-attempt";
const PARK_REASON_HEADER: &str = "x-filestore-park-reason";
const PERSISTENT: u8 = 2;

#[derive(Debug, Clone)]
pub struct RabbitOptions {
    pub url: String,
    /// Unacked messages a consumer holds at once.
    pub prefetch: u16,
}

#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    opts: RabbitOptions,
    link: Mutex<Option<Link>>,
}

/// A connection with its publishing channel (in confirm mode).
#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    publisher: Channel,
}

fn unavailable(e: lapin::Error) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn arg_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn delay_queue(tier_ms: u32) -> String {
    format!("filestore.delay.{tier_ms}")
}

/// The tier a retry after `delay` waits in.
fn delay_tier(delay: Duration) -> u32 {
    let ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
    DELAY_TIERS_MS
        .into_iter()
        .find(|&t| t >= ms)
        .unwrap_or(DELAY_TIERS_MS[DELAY_TIERS_MS.len() - 1])
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

async fn declare_topology(ch: &Channel) -> Result<(), lapin::Error> {
    let quorum = ("x-queue-type", arg_str("quorum"));
    ch.exchange_declare(
        EXCHANGE,
        ExchangeKind::Topic,
        durable_exchange(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        PARKING_EXCHANGE,
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_declare(
        PARKED_QUEUE,
        durable_queue(),
        table(std::slice::from_ref(&quorum)),
    )
    .await?;
    ch.queue_bind(
        PARKED_QUEUE,
        PARKING_EXCHANGE,
        "",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    for stage in Stage::ALL {
        ch.queue_declare(
            stage.queue(),
            durable_queue(),
            table(&[
                quorum.clone(),
                ("x-dead-letter-exchange", arg_str(PARKING_EXCHANGE)),
                (
                    "x-delivery-limit",
                    AMQPValue::LongLongInt(CRASH_DELIVERY_LIMIT),
                ),
            ]),
        )
        .await?;
        ch.queue_bind(
            stage.queue(),
            EXCHANGE,
            stage.consumes(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    for tier in DELAY_TIERS_MS {
        let name = delay_queue(tier);
        ch.exchange_declare(
            &name,
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_declare(
            &name,
            durable_queue(),
            table(&[
                quorum.clone(),
                ("x-message-ttl", AMQPValue::LongLongInt(i64::from(tier))),
                ("x-dead-letter-exchange", arg_str(EXCHANGE)),
                // A retry must not vanish on its way back to the stage queue.
                ("x-dead-letter-strategy", arg_str("at-least-once")),
                ("x-overflow", arg_str("reject-publish")),
            ]),
        )
        .await?;
        ch.queue_bind(
            &name,
            &name,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Publishes and waits for the broker to take responsibility for the message.
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    headers: FieldTable,
) -> Result<(), QueueError> {
    let props = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(ShortString::from("application/json"))
        .with_headers(headers);
    let confirm = ch
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            props,
        )
        .await
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_returned)) => Err(QueueError::Unroutable(routing_key.to_owned())),
        Confirmation::Nack(_) => Err(QueueError::Unavailable(format!(
            "the broker refused a message for {routing_key:?}"
        ))),
        Confirmation::NotRequested => Err(QueueError::Backend(
            "publisher confirms are not enabled on the channel".into(),
        )),
    }
}

impl RabbitQueue {
    /// Connects and declares the topology; fails when the broker cannot be reached.
    pub async fn connect(opts: RabbitOptions) -> Result<Self, QueueError> {
        let queue = Self {
            inner: Arc::new(Inner {
                opts,
                link: Mutex::new(None),
            }),
        };
        queue.link().await?;
        Ok(queue)
    }

    async fn link(&self) -> Result<Link, QueueError> {
        let mut guard = self.inner.link.lock().await;
        if let Some(link) = guard.as_ref()
            && link.conn.status().connected()
            && link.publisher.status().connected()
        {
            return Ok(link.clone());
        }
        let conn = Connection::connect(
            &self.inner.opts.url,
            ConnectionProperties::default().with_connection_name(LongString::from("filestore")),
        )
        .await
        .map_err(unavailable)?;
        let publisher = conn.create_channel().await.map_err(unavailable)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        declare_topology(&publisher).await.map_err(|e| match e {
            lapin::Error::ProtocolError(p) => QueueError::Backend(format!(
                "declaring the queue topology failed (a queue declared earlier with other arguments?): {p}"
            )),
            other => unavailable(other),
        })?;
        let link = Link {
            conn: Arc::new(conn),
            publisher,
        };
        *guard = Some(link.clone());
        Ok(link)
    }

    async fn forget_link(&self) {
        *self.inner.link.lock().await = None;
    }

    /// Closes the connection; consumers on it stop and their unacked messages go back.
    pub async fn close(&self) {
        if let Some(link) = self.inner.link.lock().await.take() {
            let _ = link.conn.close(200, "closing").await;
        }
    }

    /// Messages parked by consumers or by the broker's delivery limit, still in the queue.
    pub async fn parked_depth(&self) -> Result<u64, QueueError> {
        self.depth_of(PARKED_QUEUE).await
    }

    async fn depth_of(&self, queue: &str) -> Result<u64, QueueError> {
        let link = self.link().await?;
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        let declared = ch
            .queue_declare(
                queue,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| QueueError::Backend(format!("queue {queue}: {e}")))?;
        let _ = ch.close(200, "done").await;
        Ok(u64::from(declared.message_count()))
    }
}

#[async_trait]
impl Queue for RabbitQueue {
    async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), QueueError> {
        let link = self.link().await?;
        let result = publish_confirmed(
            &link.publisher,
            EXCHANGE,
            routing_key,
            body,
            FieldTable::default(),
        )
        .await;
        if matches!(result, Err(QueueError::Unavailable(_))) {
            self.forget_link().await;
        }
        result
    }

    async fn subscribe(&self, queue: &'static str) -> Result<Box<dyn Subscription>, QueueError> {
        let link = self.link().await?;
        let ch = link.conn.create_channel().await.map_err(unavailable)?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        ch.basic_qos(self.inner.opts.prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let consumer = ch
            .basic_consume(
                queue,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(Box::new(RabbitSubscription {
            channel: ch,
            consumer,
        }))
    }

    async fn depth(&self, queue: &'static str) -> Result<u64, QueueError> {
        self.depth_of(queue).await
    }
}

struct RabbitSubscription {
    channel: Channel,
    consumer: Consumer,
}

fn header_int(headers: Option<&FieldTable>, name: &str) -> u32 {
    let value = headers.and_then(|h| h.inner().get(name));
    let n: i64 = match value {
        Some(AMQPValue::LongLongInt(v)) => *v,
        Some(AMQPValue::LongInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortInt(v)) => i64::from(*v),
        Some(AMQPValue::LongUInt(v)) => i64::from(*v),
        Some(AMQPValue::ShortShortInt(v)) => i64::from(*v),
        Some(AMQPValue::Timestamp(v)) => i64::try_from(*v).unwrap_or(i64::MAX),
        _ => 0,
    };
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Deliveries so far, this one included: earlier attempts that asked for a retry (our header)
/// plus returns after consumers died holding it (the quorum queue's `x-delivery-count`).
fn deliveries_of(d: &AmqpDelivery) -> u32 {
    let headers = d.properties.headers().as_ref();
    header_int(headers, ATTEMPT_HEADER)
        .saturating_add(header_int(headers, "x-delivery-count"))
        .saturating_add(1)
}

impl RabbitSubscription {
    /// The original headers minus the broker's own bookkeeping, for a republished copy.
    fn carried_headers(&self, delivery: &Delivery, extra: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            ShortString::from(ATTEMPT_HEADER),
            AMQPValue::LongLongInt(i64::from(delivery.deliveries)),
        );
        for (k, v) in extra {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    async fn ack_tag(&self, tag: i64) -> Result<(), QueueError> {
        let tag = u64::try_from(tag).map_err(|_| QueueError::Backend("negative tag".into()))?;
        self.channel
            .basic_ack(tag, BasicAckOptions::default())
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Subscription for RabbitSubscription {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        match self.consumer.next().await {
            Some(Ok(d)) => Ok(Delivery {
                tag: i64::try_from(d.delivery_tag).unwrap_or(i64::MAX),
                routing_key: d.routing_key.to_string(),
                deliveries: deliveries_of(&d),
                body: d.data,
            }),
            Some(Err(e)) => Err(unavailable(e)),
            None => Err(QueueError::Unavailable(
                "the broker closed the consumer".into(),
            )),
        }
    }

    async fn ack(&mut self, delivery: &Delivery) -> Result<(), QueueError> {
        self.ack_tag(delivery.tag).await
    }

    async fn retry_later(
        &mut self,
        delivery: &Delivery,
        delay: Duration,
    ) -> Result<(), QueueError> {
        // The copy is confirmed before the original is acked: a crash in between delivers the
        // message twice, never zero times.
        let tier = delay_queue(delay_tier(delay));
        let headers = self.carried_headers(delivery, &[]);
        publish_confirmed(
            &self.channel,
            &tier,
            &delivery.routing_key,
            &delivery.body,
            headers,
        )
        .await?;
        self.ack_tag(delivery.tag).await
    }

    async fn park(&mut self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let headers = self.carried_headers(delivery, &[(PARK_REASON_HEADER, arg_str(reason))]);
        publish_confirmed(
            &self.channel,
            PARKING_EXCHANGE,
            &delivery.routing_key,
            &delivery.body,
            headers,
        )
        .await?;
        self.ack_tag(delivery.tag).await
    }

    async fn keep_alive(&mut self, _delivery: &Delivery) -> Result<(), QueueError> {
        // An unacked delivery stays with this consumer for as long as its channel lives; the
        // broker takes it back only when the connection dies.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_waits_in_the_next_tier_up() {
        assert_eq!(delay_tier(Duration::from_millis(1)), 500);
        assert_eq!(delay_tier(Duration::from_millis(500)), 500);
        assert_eq!(delay_tier(Duration::from_millis(501)), 1_000);
        assert_eq!(delay_tier(Duration::from_secs(5)), 8_000);
        assert_eq!(delay_tier(Duration::from_secs(3_600)), 60_000);
    }

    #[test]
    fn deliveries_count_retries_and_crash_returns() {
        let headers = table(&[
            (ATTEMPT_HEADER, AMQPValue::LongLongInt(2)),
            ("x-delivery-count", AMQPValue::LongInt(1)),
        ]);
        assert_eq!(header_int(Some(&headers), ATTEMPT_HEADER), 2);
        assert_eq!(header_int(Some(&headers), "x-delivery-count"), 1);
        assert_eq!(header_int(None, ATTEMPT_HEADER), 0);
    }
}
