//! Unit tests of the Client, Producer and Consumer against the in-memory
//! fake broker (real sockets, real codec). End-to-end tests against the
//! real broker live in `tests/`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use flymq_proto::Opcode;

use crate::fake_broker::{Behaviour, FakeBroker, FakeCluster};
use crate::partitioner::partition_for_key;
use crate::{
    Client, ClientConfig, Consumer, ConsumerConfig, Credentials, Error, Producer, ProducerConfig, ProducerRecord,
    StartFrom,
};

fn config(addrs: &[String]) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        reconnect_backoff: Duration::from_millis(10),
        ..ClientConfig::new(addrs.iter().cloned())
    }
}

async fn connect(broker: &FakeBroker) -> Client {
    Client::connect(config(&[broker.address()])).await.expect("connect")
}

/// An address nothing listens on.
async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    addr
}

#[tokio::test]
async fn topics_produce_and_fetch() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    client.create_topic("orders", 3).await.expect("create");
    assert_eq!(client.list_topics().await.expect("list"), vec!["orders"]);
    let meta = client.topic_metadata("orders").await.expect("metadata");
    assert_eq!(meta.partitions.len(), 3);

    let keyed = client
        .produce_with_key("orders", "customer-7", "a")
        .await
        .expect("produce keyed");
    assert_eq!(keyed.partition, partition_for_key(b"customer-7", 3));
    let explicit = client
        .produce_to_partition("orders", 2, Bytes::new(), "b")
        .await
        .expect("produce to partition");
    assert_eq!(explicit.partition, 2);
    assert!(
        client
            .produce_to_partition("orders", -1, Bytes::new(), "c")
            .await
            .is_err()
    );

    let fetched = client.fetch("orders", 2, 0, 10, "").await.expect("fetch");
    let values: Vec<&[u8]> = fetched.records.iter().map(|r| &r.value[..]).collect();
    assert!(values.contains(&&b"b"[..]));
    let one = client.consume("orders", 2, explicit.offset).await.expect("consume");
    assert_eq!(&one.value[..], b"b");

    // A single-node cluster's advertised address is not used for routing.
    assert_eq!(client.leader_for("orders", 0), None);

    client.delete_topic("orders").await.expect("delete");
    assert!(client.list_topics().await.expect("list").is_empty());
}

#[tokio::test]
async fn concurrent_requests_are_pipelined_and_matched_in_order() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    client.create_topic("t", 1).await.expect("create");
    // Each request has a distinct value length, so a mismatched reply shows.
    let sends = (0..300usize).map(|i| {
        let client = client.clone();
        async move {
            let meta = client.produce("t", vec![b'x'; i]).await?;
            Ok::<_, Error>((i, meta))
        }
    });
    let results = futures::future::join_all(sends).await;
    let mut offsets = Vec::new();
    for result in results {
        let (i, meta) = result.expect("produce");
        assert_eq!(meta.value_size as usize, i, "reply matched to the wrong request");
        offsets.push(meta.offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..300).collect::<Vec<u64>>());
    assert_eq!(broker.state.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_errors_are_typed() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    let err = client.fetch("missing", 0, 0, 10, "").await.unwrap_err();
    assert!(err.is_topic_not_found(), "{err}");
    assert!(matches!(err, Error::Server { op: "FETCH", .. }));
    // The connection stays usable after an error frame.
    client.list_topics().await.expect("list after error");
}

#[tokio::test]
async fn not_leader_redirect_is_followed_and_remembered() {
    let leader = FakeBroker::start().await;
    let follower = FakeBroker::start_with(Behaviour {
        redirect_to: Some(leader.address()),
        ..Behaviour::default()
    })
    .await;
    let client = connect(&follower).await;
    let meta = client.produce("t", "v").await.expect("redirected produce");
    assert_eq!(meta.offset, 0);
    assert_eq!(leader.state.partition_len("t", 0), 1);
    // The bootstrap connection stays; the leader got its own.
    assert_eq!(client.connected_to(), Some(follower.address()));

    // Requests about a partition whose leader is known go straight there.
    for i in 0..3 {
        let meta = client
            .produce_to_partition("t", 0, Bytes::new(), format!("p{i}"))
            .await
            .expect("produce to partition");
        assert_eq!(meta.offset, 1 + i);
    }
    assert_eq!(
        follower.state.requests(Opcode::Produce),
        2,
        "one keyless, one first partition-0 produce"
    );
    assert_eq!(leader.state.requests(Opcode::Produce), 4);
    let page = client.fetch("t", 0, 0, 10, "").await.expect("fetch via leader");
    assert_eq!(page.records.len(), 4);
    assert_eq!(follower.state.requests(Opcode::Fetch), 0);
}

#[tokio::test]
async fn not_leader_without_retry_budget_is_reported() {
    // Both brokers redirect to each other: the client gives up with NotLeader.
    let a = FakeBroker::start_with(Behaviour {
        redirect_to: Some("127.0.0.1:1".into()),
        ..Behaviour::default()
    })
    .await;
    let client = connect(&a).await;
    let err = client.list_topics().await.unwrap_err();
    match err {
        Error::NotLeader { leader_addr, .. } => assert_eq!(leader_addr.as_deref(), Some("127.0.0.1:1")),
        Error::NoBrokerAvailable { .. } => {}
        other => panic!("expected NotLeader or NoBrokerAvailable, got {other:?}"),
    }
}

#[tokio::test]
async fn bootstrap_failover_skips_dead_brokers() {
    let broker = FakeBroker::start().await;
    let dead = dead_address().await;
    let client = Client::connect(config(&[dead.clone(), broker.address()]))
        .await
        .expect("connect via second address");
    assert_eq!(client.connected_to(), Some(broker.address()));

    let err = Client::connect(config(&[dead])).await.unwrap_err();
    assert!(matches!(err, Error::NoBrokerAvailable { .. }), "{err}");
    assert!(err.to_string().contains("FLYMQ_BOOTSTRAP"), "{err}");
}

#[tokio::test]
async fn reconnects_after_the_broker_closes_the_connection() {
    let broker = FakeBroker::start_with(Behaviour {
        close_after: Some(1),
        ..Behaviour::default()
    })
    .await;
    let client = connect(&broker).await;
    let first = client.generation();
    for _ in 0..3 {
        // Read-only requests are retried on a new connection transparently.
        client.list_topics().await.expect("list");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.generation() > first);
    assert!(broker.state.connections.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn silent_broker_times_out() {
    let broker = FakeBroker::start_with(Behaviour {
        silent: true,
        ..Behaviour::default()
    })
    .await;
    let mut cfg = config(&[broker.address()]);
    cfg.request_timeout = Duration::from_millis(200);
    let client = Client::connect(cfg).await.expect("connect");
    let err = client.produce("t", "v").await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn producer_batches_and_partitions_like_the_broker() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    client.create_topic("events", 3).await.expect("create");
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_max_records: 50,
            linger: Duration::from_millis(20),
            ..ProducerConfig::default()
        },
    );
    let sends: Vec<_> = (0..600)
        .map(|i| producer.send(ProducerRecord::new("events", format!("v{i}"))))
        .collect();
    let results = futures::future::join_all(sends).await;
    let mut per_partition = [0usize; 3];
    for result in results {
        let meta = result.expect("delivered");
        per_partition[meta.partition as usize] += 1;
    }
    // Round robin: an even spread.
    assert_eq!(per_partition, [200, 200, 200]);
    for p in 0..3 {
        assert_eq!(broker.state.partition_len("events", p), 200);
    }
    let batches = broker.state.requests(Opcode::ProduceBatch);
    assert!((12..100).contains(&batches), "{batches} PRODUCE_BATCH requests");
    assert_eq!(broker.state.requests(Opcode::Produce), 0);

    // Keys go to FNV-1a(key) mod partitions; offsets are per record.
    let a = producer.send(ProducerRecord::new("events", "x").with_key("user-1"));
    let b = producer.send(ProducerRecord::new("events", "y").with_key("user-1"));
    let (a, b) = futures::join!(a, b);
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a.partition, partition_for_key(b"user-1", 3));
    assert_eq!(a.partition, b.partition);
    assert_eq!(b.offset, a.offset + 1);
    assert_eq!(a.key_size, 6);

    // Explicit partitions are honoured; a negative one is refused.
    let meta = producer
        .send(ProducerRecord::new("events", "z").with_partition(1))
        .await
        .expect("explicit");
    assert_eq!(meta.partition, 1);
    assert!(
        producer
            .send(ProducerRecord::new("events", "z").with_partition(-2))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn producer_flush_and_callbacks() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger: Duration::from_secs(60),
            ..ProducerConfig::default()
        },
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10 {
        let tx = tx.clone();
        producer
            .send_with_callback(ProducerRecord::new("new-topic", format!("{i}")), move |r| {
                let _ = tx.send(r.map(|m| m.offset));
            })
            .await
            .expect("queued");
    }
    // The linger is long: only flush sends the batch.
    producer.flush().await.expect("flush");
    let mut offsets = Vec::new();
    for _ in 0..10 {
        offsets.push(rx.recv().await.expect("callback").expect("delivered"));
    }
    assert_eq!(offsets, (0..10).collect::<Vec<u64>>());
    assert_eq!(broker.state.partition_len("new-topic", 0), 10);
}

#[tokio::test]
async fn consumer_reads_all_partitions_and_commits() {
    let broker = FakeBroker::start().await;
    let client = connect(&broker).await;
    client.create_topic("t", 3).await.expect("create");
    for i in 0..30 {
        client.produce("t", format!("m{i}")).await.expect("produce");
    }
    let mut cfg = ConsumerConfig::new("g");
    cfg.from = StartFrom::Earliest;
    cfg.auto_commit_interval = None;
    cfg.fetch_max_records = 4;
    let mut consumer = Consumer::subscribe(client.clone(), "t", cfg.clone())
        .await
        .expect("subscribe");
    assert_eq!(consumer.assignment(), vec![0, 1, 2]);
    let mut seen = Vec::new();
    while seen.len() < 30 {
        let records = consumer.poll(7, Duration::from_millis(500)).await.expect("poll");
        assert!(!records.is_empty(), "stalled after {} records", seen.len());
        assert!(records.len() <= 7);
        seen.extend(records.into_iter().map(|r| (r.partition, r.offset)));
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 30);
    assert!(
        consumer
            .poll(10, Duration::from_millis(50))
            .await
            .expect("poll")
            .is_empty()
    );
    consumer.commit().await.expect("commit");
    for p in 0..3 {
        assert_eq!(consumer.committed(p).await.expect("committed"), 10);
        assert_eq!(consumer.position(p), Some(10));
    }

    // A new member resumes from the committed offsets.
    for i in 0..3 {
        client.produce("t", format!("late{i}")).await.expect("produce");
    }
    cfg.from = StartFrom::Committed;
    let mut resumed = Consumer::subscribe(client.clone(), "t", cfg).await.expect("subscribe");
    let mut late = Vec::new();
    while late.len() < 3 {
        late.extend(resumed.poll(10, Duration::from_millis(500)).await.expect("poll"));
    }
    let mut values: Vec<String> = late
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    values.sort();
    assert_eq!(values, vec!["late0", "late1", "late2"]);

    // seek moves the position back.
    resumed.seek(0, 0).expect("seek");
    let again = resumed.poll(100, Duration::from_millis(500)).await.expect("poll");
    assert!(again.iter().any(|r| r.partition == 0 && r.offset == 0));
    assert!(resumed.seek(9, 0).is_err());
}

#[tokio::test]
async fn consumer_auto_commits_and_survives_reconnect() {
    let broker = FakeBroker::start_with(Behaviour {
        close_after: Some(5),
        ..Behaviour::default()
    })
    .await;
    let client = connect(&broker).await;
    client.create_topic("t", 1).await.expect("create");
    for i in 0..20 {
        // Produce is not retried on a broken connection: retry here.
        let mut tries = 0;
        while let Err(err) = client.produce("t", format!("m{i}")).await {
            tries += 1;
            assert!(err.is_connection_error() && tries < 5, "{err}");
        }
    }
    let mut cfg = ConsumerConfig::new("g");
    cfg.from = StartFrom::Earliest;
    cfg.auto_commit_interval = Some(Duration::ZERO);
    cfg.fetch_max_records = 3;
    let mut consumer = Consumer::subscribe(client.clone(), "t", cfg).await.expect("subscribe");
    let mut offsets = Vec::new();
    while offsets.len() < 20 {
        match consumer.poll(3, Duration::from_millis(200)).await {
            Ok(records) => offsets.extend(records.iter().map(|r| r.offset)),
            Err(err) => assert!(err.is_connection_error(), "{err}"),
        }
    }
    // No record lost or repeated across reconnects.
    assert_eq!(offsets, (0..20).collect::<Vec<u64>>());
    let mut committed = 0;
    for _ in 0..5 {
        match consumer.commit().await.and(client.get_offset("t", "g", 0).await) {
            Ok(offset) => {
                committed = offset;
                break;
            }
            Err(err) => assert!(err.is_connection_error(), "{err}"),
        }
    }
    assert_eq!(committed, 20);
}

#[tokio::test]
async fn credentials_are_sent_on_connect() {
    let broker = FakeBroker::start().await;
    let mut cfg = config(&[broker.address()]);
    cfg.credentials = Some(Credentials::new("alice", "secret"));
    let client = Client::connect(cfg.clone()).await.expect("authenticated");
    client.list_topics().await.expect("list");
    assert_eq!(broker.state.requests(Opcode::Auth), 1);

    cfg.credentials = Some(Credentials::new("alice", "wrong"));
    let err = Client::connect(cfg).await.unwrap_err();
    match err {
        Error::Authentication { username, reason } => {
            assert_eq!(username, "alice");
            assert_eq!(reason, "invalid username or password");
        }
        other => panic!("expected Authentication, got {other:?}"),
    }
}

/// Two fake brokers forming one pretend cluster; each stores its own records,
/// the leadership table is shared. `topic` exists on both with `partitions`.
async fn two_node_cluster(topic: &str, partitions: u32) -> (Arc<FakeCluster>, FakeBroker, FakeBroker) {
    let cluster = FakeCluster::new();
    let behaviour = Behaviour {
        cluster: Some(cluster.clone()),
        ..Behaviour::default()
    };
    let a = FakeBroker::start_with(behaviour.clone()).await;
    let b = FakeBroker::start_with(behaviour).await;
    cluster.add_node(&a.address());
    cluster.add_node(&b.address());
    for broker in [&a, &b] {
        connect(broker)
            .await
            .create_topic(topic, partitions)
            .await
            .expect("create");
    }
    (cluster, a, b)
}

fn fast_retries() -> ProducerConfig {
    ProducerConfig {
        linger: Duration::from_millis(2),
        retry_backoff: Duration::from_millis(20),
        max_retry_backoff: Duration::from_millis(100),
        ..ProducerConfig::default()
    }
}

#[tokio::test]
async fn producer_sends_each_partition_to_its_leader_from_metadata() {
    let (cluster, a, b) = two_node_cluster("t", 2).await;
    cluster.set_leader(0, Some(&a.address()));
    cluster.set_leader(1, Some(&b.address()));
    // Several bootstrap addresses: the dead one is skipped.
    let client = Client::connect(config(&[dead_address().await, a.address()]))
        .await
        .expect("connect");
    let producer = Producer::new(client.clone(), fast_retries());
    let sends: Vec<_> = (0..100)
        .map(|i| producer.send(ProducerRecord::new("t", format!("v{i}"))))
        .collect();
    for result in futures::future::join_all(sends).await {
        result.expect("delivered");
    }
    assert_eq!((a.state.partition_len("t", 0), a.state.partition_len("t", 1)), (50, 0));
    assert_eq!((b.state.partition_len("t", 0), b.state.partition_len("t", 1)), (0, 50));
    // Routed by metadata, not by trial and error.
    assert_eq!(a.state.not_leader_replies.load(Ordering::SeqCst), 0);
    assert_eq!(b.state.not_leader_replies.load(Ordering::SeqCst), 0);
    assert_eq!(client.leader_for("t", 1), Some(b.address()));
    assert_eq!(client.connected_to(), Some(a.address()));

    // The plain Client routes partition requests the same way.
    let page = client.fetch("t", 1, 0, 100, "").await.expect("fetch from the leader");
    assert_eq!(page.records.len(), 50);
    assert_eq!(a.state.requests(Opcode::Fetch), 0);
}

#[tokio::test]
async fn producer_waits_out_an_election_and_follows_the_new_leader() {
    let (cluster, a, b) = two_node_cluster("t", 1).await;
    cluster.set_leader(0, Some(&a.address()));
    let client = connect(&a).await;
    let producer = Producer::new(client.clone(), fast_retries());
    let first = producer.send(ProducerRecord::new("t", "before")).await.expect("first");
    assert_eq!((first.partition, first.offset), (0, 0));

    // The leader steps down: "no leader elected" for a while, then B leads.
    cluster.set_leader(0, None);
    let elect = {
        let (cluster, b_addr) = (cluster.clone(), b.address());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cluster.set_leader(0, Some(&b_addr));
        })
    };
    let second = producer.send(ProducerRecord::new("t", "after")).await.expect("second");
    elect.await.expect("election task");
    assert_eq!((second.partition, second.offset), (0, 0), "B's log starts at 0");
    assert_eq!(a.state.partition_len("t", 0), 1);
    assert_eq!(b.state.partition_len("t", 0), 1);
    assert!(a.state.not_leader_replies.load(Ordering::SeqCst) >= 1);
    assert!(
        a.state.requests(Opcode::ClusterMetadata) >= 3,
        "metadata is read again before retries"
    );
    assert_eq!(client.leader_for("t", 0), Some(b.address()));
}

#[tokio::test]
async fn producer_follows_a_redirect_without_waiting_for_metadata() {
    let (cluster, a, b) = two_node_cluster("t", 1).await;
    cluster.set_leader(0, Some(&a.address()));
    let client = connect(&a).await;
    let producer = Producer::new(client.clone(), fast_retries());
    producer.send(ProducerRecord::new("t", "x")).await.expect("first");
    // Leadership moves; the client's metadata still names A, which redirects.
    cluster.set_leader(0, Some(&b.address()));
    producer.send(ProducerRecord::new("t", "y")).await.expect("redirected");
    assert_eq!(b.state.partition_len("t", 0), 1);
    assert_eq!(a.state.not_leader_replies.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn producer_recovers_when_the_leader_dies() {
    let (cluster, a, b) = two_node_cluster("t", 1).await;
    cluster.set_leader(0, Some(&b.address()));
    let client = connect(&a).await;
    let producer = Producer::new(client.clone(), fast_retries());
    producer.send(ProducerRecord::new("t", "x")).await.expect("to B");
    assert_eq!(b.state.partition_len("t", 0), 1);

    // B crashes and A takes over.
    b.stop();
    cluster.set_leader(0, Some(&a.address()));
    let meta = producer.send(ProducerRecord::new("t", "y")).await.expect("to A");
    assert_eq!((meta.partition, meta.offset), (0, 0));
    assert_eq!(a.state.partition_len("t", 0), 1);
}

#[tokio::test]
async fn producer_gives_up_after_the_retry_timeout() {
    let (cluster, a, _b) = two_node_cluster("t", 1).await;
    cluster.set_leader(0, None);
    let client = connect(&a).await;
    let producer = Producer::new(
        client,
        ProducerConfig {
            retry_timeout: Duration::from_millis(400),
            ..fast_retries()
        },
    );
    let started = std::time::Instant::now();
    let err = producer.send(ProducerRecord::new("t", "x")).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::NotLeader { leader_addr: None, .. }), "{err}");
    assert!(took < Duration::from_secs(2), "gave up after {took:?}");
    assert!(a.state.not_leader_replies.load(Ordering::SeqCst) >= 3, "retried");
    assert_eq!(a.state.partition_len("t", 0), 0);
}
