//! How many messages wait in the stage queues, read from RabbitMQ with a passive declare (it
//! changes nothing and needs no management plugin).
use std::collections::BTreeMap;

use async_trait::async_trait;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// One queue as RabbitMQ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub messages: u64,
    pub consumers: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read queue depth: {0}")]
pub struct DepthError(pub String);

#[async_trait]
pub trait QueueProbe: Send + Sync {
    /// Stats of each of `queues`; a queue that does not exist yet counts as empty.
    async fn depths(
        &self,
        url: &str,
        queues: &[&str],
    ) -> Result<BTreeMap<String, QueueStats>, DepthError>;
}

/// Reads depths over AMQP.
pub struct RabbitProbe;

#[async_trait]
impl QueueProbe for RabbitProbe {
    async fn depths(
        &self,
        url: &str,
        queues: &[&str],
    ) -> Result<BTreeMap<String, QueueStats>, DepthError> {
        let failed = |e: lapin::Error| DepthError(e.to_string());
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        .map_err(|_| DepthError("timed out connecting to RabbitMQ".into()))?
        .map_err(failed)?;
        let mut out = BTreeMap::new();
        for queue in queues {
            // A passive declare of a missing queue closes the channel: one channel per queue.
            let channel = conn.create_channel().await.map_err(failed)?;
            let declared = channel
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            let stats = match declared {
                Ok(q) => QueueStats {
                    messages: u64::from(q.message_count()),
                    consumers: q.consumer_count(),
                },
                Err(lapin::Error::ProtocolError(e)) if e.get_id() == 404 => QueueStats::default(),
                Err(e) => return Err(failed(e)),
            };
            if channel.status().connected() {
                let _ = channel.close(200, "depth read").await;
            }
            out.insert((*queue).to_owned(), stats);
        }
        let _ = conn.close(200, "depth read").await;
        Ok(out)
    }
}
