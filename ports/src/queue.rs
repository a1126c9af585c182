//! The queue port: what the pipeline needs from RabbitMQ, and what the embedded queue provides.
use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is unavailable: {0}")]
    Unavailable(String),
    #[error("no queue is bound to routing key {0:?}")]
    Unroutable(String),
    #[error("queue backend error: {0}")]
    Backend(String),
}

/// One message handed to a consumer; it stays owned by that consumer until acked, retried or
/// parked, and comes back to some consumer if that one dies first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub tag: i64,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// How many times this message has been handed out, this time included.
    pub deliveries: u32,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Returns once the message is durably accepted (a publisher confirm).
    async fn publish(&self, routing_key: &str, body: &[u8]) -> Result<(), QueueError>;

    async fn subscribe(&self, queue: &'static str) -> Result<Box<dyn Subscription>, QueueError>;

    /// Messages waiting in `queue` (ready or delayed, not parked).
    async fn depth(&self, queue: &'static str) -> Result<u64, QueueError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// Waits for the next message.
    async fn next(&mut self) -> Result<Delivery, QueueError>;
    async fn ack(&mut self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Gives the message back, to be delivered again after `delay`.
    async fn retry_later(&mut self, delivery: &Delivery, delay: Duration)
    -> Result<(), QueueError>;
    /// Sets the message aside for an operator; it is not delivered again.
    async fn park(&mut self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
    /// Tells the queue the consumer is still working on a long job.
    async fn keep_alive(&mut self, delivery: &Delivery) -> Result<(), QueueError>;
}
