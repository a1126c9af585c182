//! The operator reads queue depth from a real RabbitMQ, and the autoscaler acts on it.
use std::time::Duration;

use filestore_adapters::Queue;
use filestore_domain::messages::{Stage, routing};
use filestore_operator::autoscale::{Autoscaler, ScalePolicy};
use filestore_operator::queue_depth::{QueueProbe, RabbitProbe};
use filestore_tests::services::{Namespace, Services};

#[tokio::test]
async fn the_operator_reads_the_depth_of_every_stage_queue_and_scales_on_it() {
    let ns = Namespace::create(Services::shared(), "operatordepth").await;
    let queue = ns.rabbit().await;
    for i in 0..45u32 {
        queue
            .publish(routing::FILE_UPLOADED, &i.to_be_bytes())
            .await
            .unwrap();
    }
    let queues: Vec<&str> = Stage::ALL.iter().map(|s| s.queue()).collect();
    let mut with_missing = queues.clone();
    with_missing.push("filestore.not-declared-yet");
    let depths = RabbitProbe
        .depths(&ns.amqp_url, &with_missing)
        .await
        .unwrap();
    assert_eq!(depths["filestore.scan"].messages, 45);
    assert_eq!(depths["filestore.scan"].consumers, 0);
    assert_eq!(depths["filestore.chunk"].messages, 0);
    assert_eq!(
        depths["filestore.not-declared-yet"].messages, 0,
        "a missing queue is empty"
    );

    let mut scaler = Autoscaler::new(ScalePolicy {
        min_workers: 1,
        max_workers: 4,
        target_depth_per_worker: 10,
        scale_in_window: Duration::from_secs(300),
    });
    let scale = scaler
        .observe(Duration::ZERO, depths["filestore.scan"].messages, 1)
        .expect("a backlog scales out");
    assert_eq!(
        scale.to, 4,
        "45 messages at 10 per worker want 5, capped at 4"
    );
}

#[tokio::test]
async fn an_unreachable_broker_is_an_error_not_an_empty_queue() {
    let err = RabbitProbe
        .depths("amqp://guest:guest@127.0.0.1:1/%2f", &["filestore.scan"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot read queue depth"), "{err}");
}
