//! TTL records on a standalone broker: PRODUCE_WITH_TTL, a topic's message
//! TTL, expired records never returned, and removed from the front of the
//! partition by retention (also after a restart).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::testing::{TestBroker, test_config};
use flymq_proto::grpc::admin::admin_client::AdminClient;
use flymq_proto::grpc::admin::{TopicConfig, UpdateTopicConfigRequest};
use flymq_proto::*;

fn with_ttl(topic: &str, data: &str, ttl_ms: u64) -> Request {
    Request::ProduceWithTtl(ProduceWithTtlRequest {
        topic: topic.into(),
        data: Bytes::from(data.to_owned()),
        ttl_ms,
    })
}

fn produce(topic: &str, value: &str) -> Request {
    Request::Produce(ProduceRequest {
        topic: topic.into(),
        key: Bytes::new(),
        value: Bytes::from(value.to_owned()),
        partition: 0,
    })
}

async fn fetch_values(c: &mut RawClient, topic: &str, offset: u64) -> (Vec<(u64, String)>, u64) {
    let response = c
        .call(Request::Fetch(FetchRequest {
            topic: topic.into(),
            partition: 0,
            offset,
            max_messages: 100,
            filter: String::new(),
        }))
        .await;
    let Response::Fetch(f) = response else {
        panic!("expected a fetch response, got {response:?}")
    };
    let values = f
        .records
        .iter()
        .map(|m| (m.offset, String::from_utf8(m.value.to_vec()).unwrap()))
        .collect();
    (values, f.next_offset)
}

async fn start(dir: &std::path::Path) -> (TestBroker, RawClient) {
    let mut config = test_config(dir);
    config.retention_check_interval_ms = 100;
    let broker = TestBroker::start_with(config).await.unwrap();
    let client = RawClient::connect(broker.client_addr()).await;
    (broker, client)
}

#[tokio::test]
async fn expired_records_are_never_returned_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut c) = start(dir.path()).await;
    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: "ttl".into(),
        partitions: 1,
    }))
    .await;

    // Offsets 0 and 1 expire soon, 2 never, 3 in an hour.
    let Response::ProduceWithTtl(first) = c.call(with_ttl("ttl", "short-1", 400)).await else {
        panic!()
    };
    assert_eq!((first.partition, first.offset, first.key_size), (0, 0, -1));
    assert_eq!(first.value_size, 7);
    c.call(with_ttl("ttl", "short-2", 400)).await;
    c.call(produce("ttl", "forever")).await;
    c.call(with_ttl("ttl", "hour", 3_600_000)).await;

    // Before expiry: every record, with the payload the producer sent.
    let (values, next) = fetch_values(&mut c, "ttl", 0).await;
    let names: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(names, ["short-1", "short-2", "forever", "hour"]);
    assert_eq!(next, 4);
    let Response::Consume(r) = c
        .call(Request::Consume(ConsumeRequest {
            topic: "ttl".into(),
            partition: 0,
            offset: 3,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(&r.value[..], b"hour");

    // After expiry: never returned, by FETCH or CONSUME.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (values, next) = fetch_values(&mut c, "ttl", 0).await;
    assert_eq!(values, [(2, "forever".to_owned()), (3, "hour".to_owned())]);
    assert_eq!(next, 4);
    // Retention removed the expired front of the partition.
    let start_offset = wait_for_start(&mut c, "ttl", 2).await;
    assert_eq!(start_offset, 2);
    let err = error_text(
        c.call(Request::Consume(ConsumeRequest {
            topic: "ttl".into(),
            partition: 0,
            offset: 0,
        }))
        .await,
    );
    assert!(err.contains("offset 0"), "{err}");

    // Bad TTLs get error frames and write nothing.
    for (ttl, reason) in [
        (0, "must be positive"),
        (u64::MAX, "negative"),
        (20 * 365 * 86_400_000, "10 years"),
    ] {
        let err = error_text(c.call(with_ttl("ttl", "bad", ttl)).await);
        assert!(err.contains("invalid TTL") && err.contains(reason), "{ttl}: {err}");
    }
    let (_, next) = fetch_values(&mut c, "ttl", 0).await;
    assert_eq!(next, 4);

    // The start and the live records survive a restart.
    broker.shutdown().await;
    let (broker, mut c) = start(dir.path()).await;
    let (values, _) = fetch_values(&mut c, "ttl", 0).await;
    assert_eq!(values, [(2, "forever".to_owned()), (3, "hour".to_owned())]);
    broker.shutdown().await;
}

/// Waits until the partition's start offset reaches `at_least`; reads it
/// from CONSUME's "retained offsets START..END" error for offset 0.
async fn wait_for_start(c: &mut RawClient, topic: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = c
            .call(Request::Consume(ConsumeRequest {
                topic: topic.into(),
                partition: 0,
                offset: 0,
            }))
            .await;
        let start = match response {
            Response::Error(e) => e
                .message
                .split("retained offsets ")
                .nth(1)
                .and_then(|r| r.split("..").next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        if start >= at_least || std::time::Instant::now() > deadline {
            return start;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_topic_message_ttl_applies_to_plain_produces() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, mut c) = start(dir.path()).await;
    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: "events".into(),
        partitions: 1,
    }))
    .await;
    let mut admin = AdminClient::connect(format!("http://{}", broker.admin_addr()))
        .await
        .unwrap();
    admin
        .update_topic_config(UpdateTopicConfigRequest {
            name: "events".into(),
            config: Some(TopicConfig {
                message_ttl_ms: 300,
                max_deliveries: 0,
                ..Default::default()
            }),
        })
        .await
        .expect("message TTL set");

    c.call(produce("events", "short")).await;
    // A record's own TTL wins over the topic's.
    c.call(with_ttl("events", "own-ttl", 3_600_000)).await;
    let (values, _) = fetch_values(&mut c, "events", 0).await;
    assert_eq!(values.len(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (values, _) = fetch_values(&mut c, "events", 0).await;
    assert_eq!(values, [(1, "own-ttl".to_owned())]);
    broker.shutdown().await;
}
