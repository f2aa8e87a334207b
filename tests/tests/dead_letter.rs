//! Dead-letter queues on a 3-broker cluster (issue 12, item 4): a record a
//! group member keeps re-reading moves to `<topic>.dlq`, the group's offset
//! moves past it, and every broker then shows the same queue and offset.

use std::time::{Duration, Instant};

use flymq_client::admin::TopicConfig;
use flymq_client::{Client, Request, Response};
use flymq_proto::{FetchDlqRequest, FetchRequest, SubscribeRequest};
use flymq_tests::cluster::{Cluster, client_for};

const TOPIC: &str = "jobs";

/// FETCH on the client's own connection (where it subscribed).
async fn fetch_at(client: &Client, offset: u64) -> Vec<(u64, String)> {
    let request = Request::Fetch(FetchRequest {
        topic: TOPIC.into(),
        partition: 0,
        offset,
        max_messages: 1,
        filter: String::new(),
    });
    match client.request(&request).await.expect("fetch") {
        Response::Fetch(f) => f
            .records
            .iter()
            .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned()))
            .collect(),
        other => panic!("FETCH answered {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_record_moves_to_the_dead_letter_queue_on_every_broker() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(231, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let producer = client_for(&all).await;
    producer.create_topic(TOPIC, 1).await.expect("create topic");
    let admin = flymq_client::AdminClient::connect(&cluster.admin_addr(0), Duration::from_secs(5))
        .await
        .expect("admin API");
    let info = admin
        .update_topic_config(
            TOPIC,
            TopicConfig {
                max_deliveries: 2,
                ..TopicConfig::default()
            },
        )
        .await
        .expect("set max_deliveries");
    assert_eq!(info.config.map(|c| c.max_deliveries), Some(2));
    for value in ["poison", "fine"] {
        producer
            .produce_to_partition(TOPIC, 0, "", value)
            .await
            .expect("produce");
    }

    // A member of group "workers" on broker 1 that never gets past offset 0.
    let consumer = client_for(&[&cluster.nodes[1]]).await;
    let subscribe = Request::Subscribe(SubscribeRequest {
        topic: TOPIC.into(),
        group_id: "workers".into(),
        partition: 0,
        mode: "earliest".into(),
    });
    assert!(matches!(
        consumer.request(&subscribe).await.expect("subscribe"),
        Response::Subscribe(_)
    ));
    let mut first = Vec::new();
    for _ in 0..100 {
        first = fetch_at(&consumer, 0).await;
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first, [(0, "poison".to_owned())]);
    assert_eq!(fetch_at(&consumer, 0).await, [(0, "poison".to_owned())]);
    assert_eq!(
        fetch_at(&consumer, 0).await,
        [(1, "fine".to_owned())],
        "third delivery: dead-lettered"
    );

    // Every broker sees the dead letter and the group past it.
    for node in &cluster.nodes {
        let reader = client_for(&[node]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let entries = match reader
                .request(&Request::FetchDlq(FetchDlqRequest {
                    topic: TOPIC.into(),
                    max_messages: 10,
                }))
                .await
            {
                Ok(Response::FetchDlq(r)) => r.entries,
                _ => Vec::new(),
            };
            let offset = reader.get_offset(TOPIC, "workers", 0).await.unwrap_or(0);
            if entries.len() == 1 && offset == 1 {
                assert_eq!((entries[0].id.as_str(), &entries[0].data[..]), ("0:0", &b"poison"[..]));
                assert_eq!(entries[0].retries, 2);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: DLQ {entries:?}, group offset {offset}",
                node.client_addr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
