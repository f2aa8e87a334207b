//! The Rust SDK's `GroupConsumer` against a real broker: two members split
//! a topic's partitions (the first one sees the rebalance through its
//! callback), every record is read, a member that dies without leaving is
//! taken over after its session timeout, and `close` hands partitions over
//! at once.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flymq_broker::testing::TestBroker;
use flymq_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig, Rebalance, StartFrom};

const TOPIC: &str = "tasks";

async fn connect(broker: &TestBroker) -> Client {
    Client::connect(ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::new([broker.client_addr().to_string()])
    })
    .await
    .expect("connect")
}

fn config() -> GroupConsumerConfig {
    GroupConsumerConfig::new("workers")
        .with_session_timeout(Duration::from_millis(1_500))
        .with_from(StartFrom::Earliest)
        .with_auto_commit(Some(Duration::from_millis(100)))
}

async fn produce_round(client: &Client, round: u32) {
    for p in 0..4 {
        client
            .produce_to_partition(TOPIC, p, "", format!("r{round}-p{p}"))
            .await
            .expect("produce");
    }
}

/// Polls `consumer` until `wanted` values were seen or `timeout` passes.
async fn read_until(consumer: &mut GroupConsumer, seen: &mut BTreeSet<String>, wanted: &[String], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !wanted.iter().all(|w| seen.contains(w)) && Instant::now() < deadline {
        for record in consumer.poll(100, Duration::from_millis(200)).await.expect("poll") {
            seen.insert(String::from_utf8_lossy(&record.value).into_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_partitions_and_take_over_from_a_dead_member() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let producer = connect(&broker).await;
    producer.create_topic(TOPIC, 4).await.expect("create topic");
    produce_round(&producer, 0).await;

    let events: Arc<Mutex<Vec<Rebalance>>> = Arc::default();
    let recorded = events.clone();
    let mut a = GroupConsumer::join(connect(&broker).await, TOPIC, config())
        .await
        .expect("a joins")
        .on_rebalance(move |r| recorded.lock().unwrap().push(r.clone()));
    assert_eq!(a.assignment(), [0, 1, 2, 3]);
    let mut b = GroupConsumer::join(connect(&broker).await, TOPIC, config())
        .await
        .expect("b joins");
    assert_eq!(b.assignment().len(), 2);
    assert_ne!(a.member_id(), b.member_id());

    // a learns of the rebalance at its next heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.assignment().len() != 2 && Instant::now() < deadline {
        a.poll(10, Duration::from_millis(200)).await.expect("poll a");
    }
    let mut split: Vec<i32> = a.assignment().into_iter().chain(b.assignment()).collect();
    split.sort_unstable();
    assert_eq!(split, [0, 1, 2, 3]);
    assert_eq!(a.generation(), b.generation());
    {
        let events = events.lock().unwrap();
        let last = events.last().expect("a rebalance callback");
        assert_eq!(last.revoked.len(), 2, "{events:?}");
        assert!(last.assigned.is_empty(), "{events:?}");
    }

    // Every record of a new round is read by one of the two.
    produce_round(&producer, 1).await;
    let wanted: Vec<String> = (0..4).map(|p| format!("r1-p{p}")).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !wanted.iter().all(|w| seen.contains(w)) && Instant::now() < deadline {
        for consumer in [&mut a, &mut b] {
            for record in consumer.poll(100, Duration::from_millis(100)).await.expect("poll") {
                seen.insert(String::from_utf8_lossy(&record.value).into_owned());
            }
        }
    }
    assert!(wanted.iter().all(|w| seen.contains(w)), "read {seen:?}");

    // b dies without leaving: after its session timeout a owns everything
    // and reads a new round on all four partitions.
    let b_partitions = b.assignment();
    drop(b);
    produce_round(&producer, 2).await;
    let wanted: Vec<String> = (0..4).map(|p| format!("r2-p{p}")).collect();
    let mut seen = BTreeSet::new();
    read_until(&mut a, &mut seen, &wanted, Duration::from_secs(15)).await;
    assert_eq!(a.assignment(), [0, 1, 2, 3]);
    assert!(wanted.iter().all(|w| seen.contains(w)), "read {seen:?}");
    let events = events.lock().unwrap().clone();
    assert_eq!(events.last().unwrap().assigned, b_partitions, "{events:?}");
    a.close().await.expect("close");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_member_hands_its_partitions_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let producer = connect(&broker).await;
    producer.create_topic(TOPIC, 4).await.expect("create topic");
    let long = GroupConsumerConfig::new("workers").with_session_timeout(Duration::from_secs(60));
    let mut a = GroupConsumer::join(connect(&broker).await, TOPIC, long.clone())
        .await
        .expect("a joins");
    let b = GroupConsumer::join(connect(&broker).await, TOPIC, long)
        .await
        .expect("b joins");
    b.close().await.expect("b leaves");
    a.heartbeat().await.expect("heartbeat");
    assert_eq!(a.assignment(), [0, 1, 2, 3], "no session timeout to wait for");
    a.close().await.expect("close");
    broker.shutdown().await;
}
