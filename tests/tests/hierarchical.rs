//! Hierarchical topic names and pattern subscriptions on a 3-broker cluster
//! (issue 12, item 6): topics created through one broker are matched on the
//! others (every broker keeps its topic trie from the replicated metadata),
//! bad names and patterns are refused with the reason, and a
//! `PatternConsumer` receives the records of a topic created after it
//! started.

use std::time::{Duration, Instant};

use flymq_client::{Client, ClientConfig, ConsumerConfig, PatternConsumer, StartFrom};
use flymq_tests::cluster::Cluster;

async fn client(addr: String) -> Client {
    Client::connect(ClientConfig {
        bootstrap: vec![addr],
        request_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    })
    .await
    .expect("connect")
}

/// Retries `probe` until it is true or 30 s have passed.
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patterns_match_topics_made_anywhere_in_the_cluster_and_follow_new_ones() {
    let cluster = tokio::task::block_in_place(|| Cluster::start(171, 3));
    let first = client(cluster.nodes[0].client_addr()).await;
    let third = client(cluster.nodes[2].client_addr()).await;
    for topic in [
        "sensors/room1/temp",
        "sensors/room2/temp",
        "sensors/room1/humidity",
        "logs",
    ] {
        first.create_topic(topic, 1).await.expect("create");
    }
    eventually("broker 2 matches sensors/+/temp", || async {
        third.match_topics("sensors/+/temp").await.ok()
            == Some(vec!["sensors/room1/temp".to_string(), "sensors/room2/temp".to_string()])
    })
    .await;
    assert_eq!(
        third.match_topics("sensors/room1/#").await.expect("match"),
        vec!["sensors/room1/humidity", "sensors/room1/temp"]
    );
    assert_eq!(third.match_topics("+").await.expect("match"), vec!["logs"]);

    // Bad input: the reason comes back, nothing is created.
    let err = third.match_topics("sensors/#/temp").await.expect_err("bad pattern");
    assert!(err.to_string().contains("'#' must be the last level"), "{err}");
    let err = first.create_topic("sensors//temp", 1).await.expect_err("empty level");
    assert!(err.to_string().contains("empty level"), "{err}");
    let err = first
        .create_topic("sensors/+/temp", 1)
        .await
        .expect_err("wildcard in a name");
    assert!(err.to_string().contains("invalid topic name"), "{err}");

    // A pattern consumer on broker 2 gets records of existing topics and of
    // one created (through broker 0) after it started.
    first.produce("sensors/room1/temp", "t1").await.expect("produce");
    let mut config = ConsumerConfig::new("dashboard");
    config.from = StartFrom::Earliest;
    let mut consumer = PatternConsumer::subscribe(third.clone(), "sensors/+/temp", config)
        .await
        .expect("subscribe")
        .with_refresh_interval(Duration::from_millis(200));
    assert_eq!(consumer.topics(), vec!["sensors/room1/temp", "sensors/room2/temp"]);
    first.create_topic("sensors/room3/temp", 1).await.expect("create later");
    first.produce("sensors/room3/temp", "t3").await.expect("produce");
    first
        .produce("sensors/room1/humidity", "not-matched")
        .await
        .expect("produce");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && Instant::now() < deadline {
        for r in consumer.poll(10, Duration::from_millis(500)).await.expect("poll") {
            got.push((r.topic, String::from_utf8_lossy(&r.value).into_owned()));
        }
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("sensors/room1/temp".to_string(), "t1".to_string()),
            ("sensors/room3/temp".to_string(), "t3".to_string())
        ]
    );
    assert!(consumer.topics().contains(&"sensors/room3/temp".to_string()));
    // Deleted topics leave the subscription.
    first.delete_topic("sensors/room2/temp").await.expect("delete");
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.topics().contains(&"sensors/room2/temp".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the deleted topic stayed in the subscription"
        );
        consumer.refresh().await.expect("refresh");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.close().await.expect("close");
}
