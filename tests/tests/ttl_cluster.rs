//! TTL records on a 3-broker cluster (issue 12, item 3): records produced
//! with a TTL through one broker are readable everywhere until they
//! expire, never returned by any broker after, and removed from the front
//! of the partition by replicated retention on every replica; the plain
//! record after them stays.

use std::time::{Duration, Instant};

use flymq_client::Client;
use flymq_tests::cluster::{Cluster, client_for};

const TOPIC: &str = "sessions";

async fn values(client: &Client) -> Vec<(u64, String)> {
    match client.fetch(TOPIC, 0, 0, 100, "").await {
        Ok(f) => f
            .records
            .iter()
            .map(|r| (r.offset, String::from_utf8_lossy(&r.value).into_owned()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The partition's first retained offset on this broker, from CONSUME's
/// "retained offsets START..END" error for offset 0 (0 while it is readable).
async fn start_offset(client: &Client) -> u64 {
    match client.consume(TOPIC, 0, 0).await {
        Err(e) => e
            .to_string()
            .split("retained offsets ")
            .nth(1)
            .and_then(|r| r.split("..").next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Ok(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_records_vanish_from_every_replica() {
    let cluster =
        tokio::task::block_in_place(|| Cluster::start_with(250, 3, &[("FLYMQ_RETENTION_CHECK_INTERVAL_MS", "200")]));
    let producer = client_for(&[&cluster.nodes[0]]).await;
    producer.create_topic(TOPIC, 1).await.expect("create topic");
    for i in 0..3 {
        let meta = producer
            .produce_with_ttl(TOPIC, format!("short-{i}"), Duration::from_millis(1_500))
            .await
            .expect("produce with TTL");
        assert_eq!(meta.offset, i);
    }
    producer
        .produce_to_partition(TOPIC, 0, "", "keep")
        .await
        .expect("produce");
    let readers = [
        client_for(&[&cluster.nodes[0]]).await,
        client_for(&[&cluster.nodes[1]]).await,
        client_for(&[&cluster.nodes[2]]).await,
    ];
    // Before expiry: every broker returns all four.
    for (i, reader) in readers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while values(reader).await.len() < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = values(reader).await;
        assert!(seen.len() == 4 || seen.len() == 1, "broker {i} before expiry: {seen:?}");
    }
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    // After expiry: no broker returns them, and retention removes them
    // everywhere, keeping the plain record.
    for (i, reader) in readers.iter().enumerate() {
        assert_eq!(
            values(reader).await,
            [(3, "keep".to_owned())],
            "broker {i} after expiry"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut start = start_offset(reader).await;
        while start < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            start = start_offset(reader).await;
        }
        assert_eq!(
            start, 3,
            "broker {i}: the expired records were removed up to the plain one"
        );
        assert_eq!(
            values(reader).await,
            [(3, "keep".to_owned())],
            "broker {i} after removal"
        );
    }
}
