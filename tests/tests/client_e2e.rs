//! The Rust SDK (`flymq-client`) against the real broker, in process
//! (`flymq_broker::testing::TestBroker`: RocksDB in a temporary directory,
//! loopback port 0).

use std::time::Duration;

use bytes::Bytes;
use flymq_broker::testing::{TestBroker, test_config};
use flymq_client::partitioner::partition_for_key;
use flymq_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, Error, Producer, ProducerConfig, ProducerRecord, ResetTo,
    SchemaType, StartFrom,
};

struct Env {
    broker: TestBroker,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = TestBroker::start(dir.path()).await.expect("start broker");
    let client = Client::connect(config(&broker.client_addr().to_string()))
        .await
        .expect("connect");
    Env {
        broker,
        client,
        _dir: dir,
    }
}

fn config(addr: &str) -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        reconnect_backoff: Duration::from_millis(50),
        ..ClientConfig::new([addr])
    }
}

#[tokio::test]
async fn topics_and_metadata() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("orders", 3).await.expect("create");
    c.create_topic("orders", 3).await.expect("create is idempotent");
    assert!(c.list_topics().await.expect("list").contains(&"orders".to_string()));
    let meta = c.topic_metadata("orders").await.expect("metadata");
    let ids: Vec<i32> = meta.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let all = c.cluster_metadata().await.expect("cluster metadata");
    assert!(all.topics.iter().any(|t| t.topic == "orders"));
    c.delete_topic("orders").await.expect("delete");
    assert!(!c.list_topics().await.expect("list").contains(&"orders".to_string()));
    let err = c.topic_metadata("orders").await.unwrap_err();
    assert!(err.is_topic_not_found(), "{err}");
    env.broker.shutdown().await;
}

#[tokio::test]
async fn produce_fetch_and_consume_round_trip() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("t", 3).await.expect("create");

    let keyed = c.produce_with_key("t", "customer-7", "k1").await.expect("keyed");
    assert_eq!(
        keyed.partition,
        partition_for_key(b"customer-7", 3),
        "broker and SDK hash alike"
    );
    assert_eq!((keyed.key_size, keyed.value_size), (10, 2));

    let explicit = c
        .produce_to_partition("t", 1, Bytes::new(), "p1")
        .await
        .expect("explicit");
    assert_eq!(explicit.partition, 1);
    assert_eq!(explicit.key_size, -1);

    let records: Vec<(Bytes, Bytes)> = (0..5).map(|i| (Bytes::new(), Bytes::from(format!("b{i}")))).collect();
    let batch = c.produce_batch("t", Some(2), records).await.expect("batch");
    assert_eq!((batch.partition, batch.count), (2, 5));

    let page = c.fetch("t", 2, batch.base_offset, 100, "").await.expect("fetch");
    let values: Vec<String> = page
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert_eq!(values, vec!["b0", "b1", "b2", "b3", "b4"]);
    assert_eq!(page.next_offset, batch.base_offset + 5);
    let offsets: Vec<u64> = page.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (batch.base_offset..batch.base_offset + 5).collect::<Vec<_>>());

    let one = c.consume("t", 1, explicit.offset).await.expect("consume");
    assert_eq!(&one.value[..], b"p1");
    let past_end = c.fetch("t", 2, 1_000, 10, "").await.expect("fetch past end");
    assert!(past_end.records.is_empty());

    let err = c.fetch("t", 9, 0, 10, "").await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err}");
    let err = c.fetch("missing", 0, 0, 10, "").await.unwrap_err();
    assert!(err.is_topic_not_found(), "{err}");
    env.broker.shutdown().await;
}

/// Values of every record of `topic` partition `partition` a FETCH returns.
async fn fetch_values(c: &Client, topic: &str, partition: i32) -> Vec<String> {
    let page = c.fetch(topic, partition, 0, 100, "").await.expect("fetch");
    page.records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

#[tokio::test]
async fn records_with_a_ttl_expire_and_delayed_records_arrive_when_due() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("timed", 1).await.expect("create");

    let short = c
        .produce_with_ttl("timed", "short-lived", Duration::from_millis(300))
        .await
        .expect("ttl produce");
    assert_eq!((short.partition, short.key_size), (0, -1));
    c.produce_with_ttl("timed", "long-lived", Duration::from_secs(3600))
        .await
        .expect("ttl produce");
    assert_eq!(fetch_values(c, "timed", 0).await, vec!["short-lived", "long-lived"]);

    let scheduled = c
        .produce_delayed("timed", "later", Duration::from_millis(400))
        .await
        .expect("delayed produce");
    assert_eq!(
        (scheduled.partition, scheduled.offset),
        (0, 0),
        "no offset until delivered"
    );
    assert!(
        !fetch_values(c, "timed", 0).await.contains(&"later".to_string()),
        "a scheduled record is hidden until due"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        fetch_values(c, "timed", 0).await,
        vec!["long-lived", "later"],
        "the TTL record expired, the delayed one was delivered"
    );

    // Below the broker's 1 ms minimum: refused before anything is sent.
    let err = c
        .produce_with_ttl("timed", "x", Duration::from_micros(10))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = c.produce_delayed("timed", "x", Duration::ZERO).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Over the broker's 30-day limit: the broker's error.
    let err = c
        .produce_delayed("timed", "x", Duration::from_secs(31 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid delay"), "{err}");
    env.broker.shutdown().await;
}

const ORDER_V1: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
    "required": ["id"]}"#;
const ORDER_V2: &str = r#"{"type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}, "note": {"type": "string"}},
    "required": ["id"]}"#;

#[tokio::test]
async fn schema_registry_validates_what_is_produced() {
    let env = start().await;
    let c = &env.client;

    assert_eq!(
        c.register_schema("orders", SchemaType::Json, ORDER_V1)
            .await
            .expect("v1"),
        1
    );
    assert_eq!(
        c.register_schema("orders", SchemaType::Json, ORDER_V1)
            .await
            .expect("same again"),
        1,
        "the latest definition again is the same version"
    );
    assert_eq!(
        c.register_schema("orders", SchemaType::Json, ORDER_V2)
            .await
            .expect("v2"),
        2
    );
    let avro = r#"{"type": "record", "name": "Reading", "fields": [{"name": "c", "type": "double"}]}"#;
    let proto = "syntax = \"proto3\"; message Click { string page = 1; }";
    assert_eq!(
        c.register_schema("readings", SchemaType::Avro, avro)
            .await
            .expect("avro"),
        1
    );
    let kind: SchemaType = "proto".parse().expect("proto is protobuf");
    assert_eq!(c.register_schema("clicks", kind, proto).await.expect("protobuf"), 1);

    let listed: Vec<(String, String, u32)> = c
        .list_schemas("")
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.name, e.schema_type, e.version))
        .collect();
    assert_eq!(
        listed,
        [
            ("clicks".to_string(), "protobuf".to_string(), 1),
            ("orders".into(), "json".into(), 1),
            ("orders".into(), "json".into(), 2),
            ("readings".into(), "avro".into(), 1),
        ]
    );
    assert_eq!(c.list_schemas("orders").await.expect("filtered").len(), 2);
    assert!(c.list_schemas("order").await.expect("exact name").is_empty());

    let latest = c.get_schema("orders", 0).await.expect("latest");
    assert_eq!(
        (latest.name.as_str(), latest.schema_type.as_str(), latest.version),
        ("orders", "json", 2)
    );
    assert_eq!(c.get_schema("orders", 1).await.expect("v1").version, 1);
    let err = c.get_schema("orders", 9).await.unwrap_err();
    assert!(err.is_schema_not_found(), "{err}");
    let err = c.get_schema("nothing", 0).await.unwrap_err();
    assert!(err.is_schema_not_found(), "{err}");

    // An incompatible new version and a definition that does not parse are refused.
    let err = c
        .register_schema(
            "orders",
            SchemaType::Json,
            r#"{"type": "object", "required": ["id", "item"]}"#,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not backward compatible"), "{err}");
    let err = c.register_schema("x", SchemaType::Json, "{not json").await.unwrap_err();
    assert!(
        matches!(err, Error::Server { .. }) && err.to_string().contains("invalid json schema"),
        "{err}"
    );

    let valid = c.validate_schema("orders", r#"{"id": 1}"#).await.expect("validate");
    assert!(valid.valid && valid.errors.is_empty(), "{valid:?}");
    let invalid = c
        .validate_schema("orders", r#"{"id": 1.5, "item": 3}"#)
        .await
        .expect("validate");
    assert!(!invalid.valid);
    let mut fields: Vec<&str> = invalid.errors.iter().filter_map(|e| e.split(':').next()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["/id", "/item"], "{:?}", invalid.errors);

    c.create_topic("orders-topic", 1).await.expect("create");
    let meta = c
        .produce_with_schema("orders-topic", "orders", r#"{"id": 7, "item": "tea"}"#)
        .await
        .expect("valid record");
    assert_eq!((meta.partition, meta.offset, meta.key_size), (0, 0, -1));
    let err = c
        .produce_with_schema("orders-topic", "orders", r#"{"id": "seven"}"#)
        .await
        .unwrap_err();
    match &err {
        Error::SchemaValidation { problems, message, .. } => {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("/id: "), "{problems:?}");
            assert!(message.contains("(schema 'orders' version 2)"), "{message}");
        }
        other => panic!("expected SchemaValidation, got {other:?}"),
    }
    let err = c
        .produce_with_schema("orders-topic", "nothing", r#"{"id": 1}"#)
        .await
        .unwrap_err();
    assert!(err.is_schema_not_found(), "{err}");
    assert_eq!(
        fetch_values(c, "orders-topic", 0).await,
        [r#"{"id": 7, "item": "tea"}"#],
        "only the accepted record was written"
    );

    // Deleting one version leaves the others; version 0 deletes every one.
    let message = c.delete_schema("orders", 1).await.expect("delete v1");
    assert_eq!(message, "deleted 1 version of schema 'orders'");
    assert_eq!(c.list_schemas("orders").await.expect("list").len(), 1);
    let err = c.delete_schema("orders", 1).await.unwrap_err();
    assert!(err.is_schema_not_found(), "{err}");
    c.delete_schema("orders", 0).await.expect("delete all");
    assert!(c.list_schemas("orders").await.expect("list").is_empty());
    let err = c
        .produce_with_schema("orders-topic", "orders", r#"{"id": 8}"#)
        .await
        .unwrap_err();
    assert!(err.is_schema_not_found(), "a deleted schema validates nothing: {err}");
    env.broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_produces_get_distinct_offsets() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("p", 1).await.expect("create");
    let sends = (0..500usize).map(|i| {
        let c = c.clone();
        async move { c.produce("p", vec![b'v'; i % 50 + 1]).await.map(|m| (i, m)) }
    });
    let mut offsets = Vec::new();
    for result in futures::future::join_all(sends).await {
        let (i, meta) = result.expect("produce");
        assert_eq!(meta.value_size as usize, i % 50 + 1, "reply matched to another request");
        offsets.push(meta.offset);
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..500).collect::<Vec<u64>>());
    env.broker.shutdown().await;
}

#[tokio::test]
async fn producer_places_records_like_the_broker() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("ev", 3).await.expect("create");
    let producer = Producer::new(c.clone(), ProducerConfig::default());
    let sends: Vec<_> = (0..300)
        .map(|i| producer.send(ProducerRecord::new("ev", format!("v{i}"))))
        .collect();
    let mut per_partition = [0u32; 3];
    for result in futures::future::join_all(sends).await {
        per_partition[result.expect("delivered").partition as usize] += 1;
    }
    assert_eq!(per_partition, [100, 100, 100]);

    for key in ["alice", "bob", "carol", "dave"] {
        let via_producer = producer
            .send(ProducerRecord::new("ev", "x").with_key(key))
            .await
            .expect("keyed");
        let via_broker = c.produce_with_key("ev", key, "y").await.expect("broker-chosen");
        assert_eq!(via_producer.partition, via_broker.partition, "key {key}");
    }

    // A topic that does not exist yet is created by the broker.
    let meta = producer
        .send(ProducerRecord::new("auto-created", "hello"))
        .await
        .expect("auto-create");
    assert_eq!(meta.offset, 0);
    producer.flush().await.expect("flush");
    let page = c.fetch("ev", 0, 0, 1000, "").await.expect("fetch");
    assert!(page.records.len() >= 100);
    env.broker.shutdown().await;
}

#[tokio::test]
async fn consumer_group_commits_and_resumes() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("g", 2).await.expect("create");
    for i in 0..20 {
        c.produce("g", format!("m{i}")).await.expect("produce");
    }
    let mut cfg = ConsumerConfig::new("billing");
    cfg.from = StartFrom::Earliest;
    cfg.auto_commit_interval = None;
    let mut consumer = Consumer::subscribe(c.clone(), "g", cfg.clone())
        .await
        .expect("subscribe");
    let mut got = Vec::new();
    while got.len() < 20 {
        let batch = consumer.poll(8, Duration::from_secs(2)).await.expect("poll");
        assert!(!batch.is_empty(), "stalled at {}", got.len());
        got.extend(batch);
    }
    assert_eq!(got.len(), 20);
    consumer.commit().await.expect("commit");
    let total: u64 = futures::future::try_join_all((0..2).map(|p| c.get_offset("g", "billing", p)))
        .await
        .expect("offsets")
        .into_iter()
        .sum();
    assert_eq!(total, 20);
    for (p, lag) in consumer.lag().await.expect("lag") {
        assert_eq!(lag.lag, 0, "partition {p}");
    }
    drop(consumer);

    for i in 0..4 {
        c.produce("g", format!("late{i}")).await.expect("produce");
    }
    cfg.from = StartFrom::Committed;
    let mut resumed = Consumer::subscribe(c.clone(), "g", cfg).await.expect("resubscribe");
    let mut late = Vec::new();
    while late.len() < 4 {
        let batch = resumed.poll(10, Duration::from_secs(2)).await.expect("poll");
        assert!(!batch.is_empty());
        late.extend(batch);
    }
    let mut values: Vec<String> = late
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    values.sort();
    assert_eq!(values, vec!["late0", "late1", "late2", "late3"]);
    env.broker.shutdown().await;
}

#[tokio::test]
async fn group_administration() {
    let env = start().await;
    let c = &env.client;
    c.create_topic("adm", 1).await.expect("create");
    for i in 0..10 {
        c.produce("adm", format!("{i}")).await.expect("produce");
    }
    assert_eq!(
        c.subscribe("adm", "ops", 0, StartFrom::Earliest)
            .await
            .expect("subscribe"),
        0
    );
    assert_eq!(c.subscribe("adm", "", 0, StartFrom::Latest).await.expect("latest"), 10);
    c.commit("adm", "ops", 0, 4).await.expect("commit");
    assert_eq!(c.get_offset("adm", "ops", 0).await.expect("offset"), 4);
    let lag = c.get_lag("adm", "ops", 0).await.expect("lag");
    assert_eq!((lag.committed, lag.latest, lag.lag), (4, 10, 6));
    let group = c.describe_group("adm", "ops").await.expect("describe");
    assert_eq!(group.offsets.len(), 1);
    assert_eq!(group.offsets[0].offset, 4);
    assert!(
        c.list_groups()
            .await
            .expect("list groups")
            .iter()
            .any(|g| g.topic == "adm" && g.group_id == "ops")
    );
    c.reset_offset("adm", "ops", 0, ResetTo::Latest)
        .await
        .expect("reset latest");
    assert_eq!(c.get_offset("adm", "ops", 0).await.expect("offset"), 10);
    c.reset_offset("adm", "ops", 0, ResetTo::Offset(2))
        .await
        .expect("reset offset");
    assert_eq!(c.get_offset("adm", "ops", 0).await.expect("offset"), 2);
    c.delete_group("adm", "ops").await.expect("delete group");
    assert!(c.describe_group("adm", "ops").await.is_err());
    env.broker.shutdown().await;
}

#[tokio::test]
async fn cluster_status_and_seek_to_timestamp() {
    let env = start().await;
    let c = &env.client;
    let status = c.cluster_status().await.expect("status");
    assert!(!status.nodes.is_empty());
    c.create_topic("ts", 1).await.expect("create");
    let first = c.produce("ts", "a").await.expect("produce");
    assert_eq!(c.seek_to_timestamp("ts", 0, 0).await.expect("seek to 0"), 0);
    let end = c
        .seek_to_timestamp("ts", 0, first.timestamp + 60_000)
        .await
        .expect("seek to the future");
    assert_eq!(end, 1, "a timestamp after every record gives the log end");
    env.broker.shutdown().await;
}

#[tokio::test]
async fn client_reconnects_after_broker_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A fixed port, so the restarted broker is reachable at the same address.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut cfg = test_config(dir.path());
    cfg.bind_addr = format!("127.0.0.1:{port}");
    let broker = TestBroker::start_with(cfg.clone()).await.expect("start");
    let client = Client::connect(config(&cfg.bind_addr)).await.expect("connect");
    client.create_topic("r", 1).await.expect("create");
    let before = client.produce("r", "before").await.expect("produce");
    broker.shutdown().await;

    let broker = TestBroker::start_with(cfg).await.expect("restart");
    // The first request may find the old socket dead; reads are retried.
    let page = client.fetch("r", 0, 0, 10, "").await.expect("fetch after restart");
    assert_eq!(page.records.len(), 1);
    let after = client.produce("r", "after").await.expect("produce after restart");
    assert_eq!(after.offset, before.offset + 1);
    broker.shutdown().await;
}

/// Values of `records`, in order.
fn values(records: &[flymq_client::ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

#[tokio::test]
async fn consumers_pause_resume_seek_stream_and_read_several_topics() {
    use futures::StreamExt;
    let env = start().await;
    let c = &env.client;
    c.create_topic("ergo", 2).await.expect("create");
    c.create_topic("ergo-other", 1).await.expect("create");
    for i in 0..3 {
        c.produce_to_partition("ergo", 0, Bytes::new(), Bytes::from(format!("p0-{i}")))
            .await
            .expect("produce");
        c.produce_to_partition("ergo", 1, Bytes::new(), Bytes::from(format!("p1-{i}")))
            .await
            .expect("produce");
    }
    let mut config = ConsumerConfig::new("ergo-group");
    config.from = StartFrom::Earliest;
    config.auto_commit_interval = None;
    let mut consumer = Consumer::subscribe(c.clone(), "ergo", config.clone())
        .await
        .expect("subscribe");

    // Paused partitions are skipped, their positions kept.
    consumer.pause(&[1]).expect("pause");
    assert_eq!(consumer.paused(), vec![1]);
    let got = consumer.poll(100, Duration::from_millis(300)).await.expect("poll");
    assert_eq!(values(&got), vec!["p0-0", "p0-1", "p0-2"]);
    assert!(consumer.pause(&[7]).is_err(), "an unassigned partition is refused");
    consumer.resume(&[1]).expect("resume");
    let got = consumer.poll(100, Duration::from_millis(300)).await.expect("poll");
    assert_eq!(values(&got), vec!["p1-0", "p1-1", "p1-2"]);

    // seek_all: to the end (nothing), back to the beginning (everything).
    consumer.seek_all(flymq_client::SeekTo::End).await.expect("seek end");
    assert_eq!(consumer.position(0), Some(3));
    assert!(
        consumer
            .poll(100, Duration::from_millis(200))
            .await
            .expect("poll")
            .is_empty()
    );
    consumer
        .seek_all(flymq_client::SeekTo::Beginning)
        .await
        .expect("seek start");
    assert_eq!(consumer.position(1), Some(0));
    let after = consumer.seek_to_timestamp(0, i64::MAX).await.expect("seek ts");
    assert_eq!(after, 3, "past every record: the log end");

    // As a futures::Stream: partition 1's three records, in order.
    let streamed: Vec<String> = consumer
        .stream(10)
        .take(3)
        .map(|r| String::from_utf8_lossy(&r.expect("record").value).into_owned())
        .collect()
        .await;
    assert_eq!(streamed, vec!["p1-0", "p1-1", "p1-2"]);

    // Several topics in one subscription.
    c.produce("ergo-other", "other-0").await.expect("produce");
    let mut multi = flymq_client::PatternConsumer::subscribe_topics(c.clone(), &["ergo", "ergo-other"], config)
        .await
        .expect("subscribe topics");
    assert_eq!(multi.topics(), vec!["ergo", "ergo-other"]);
    assert_eq!(multi.pattern(), None);
    let mut seen = Vec::new();
    while seen.len() < 7 {
        let got = multi.poll(100, Duration::from_secs(2)).await.expect("poll");
        assert!(!got.is_empty(), "stalled after {seen:?}");
        seen.extend(
            got.into_iter()
                .map(|r| format!("{}:{}", r.topic, String::from_utf8_lossy(&r.value))),
        );
    }
    seen.sort();
    assert_eq!(seen.len(), 7);
    assert!(seen.contains(&"ergo-other:other-0".to_string()), "{seen:?}");
    multi.close().await.expect("close");
    env.broker.shutdown().await;
}

#[tokio::test]
async fn producer_gzip_metrics_keep_alive_and_health_check() {
    let env = start().await;
    let client =
        Client::connect(config(&env.broker.client_addr().to_string()).with_keep_alive(Duration::from_millis(100)))
            .await
            .expect("connect");
    client.create_topic("zipped", 1).await.expect("create");
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .with_gzip_above(512)
            .with_linger(Duration::from_millis(20)),
    );
    let values: Vec<String> = (0..50).map(|i| format!("{i:03}-{}", "x".repeat(200))).collect();
    let sends: Vec<_> = values
        .iter()
        .map(|v| producer.send(ProducerRecord::new("zipped", v.clone())))
        .collect();
    // Sent together, so they share batches.
    for result in futures::future::join_all(sends).await {
        result.expect("acknowledged");
    }
    let m = producer.metrics();
    assert_eq!((m.records_sent, m.records_failed), (50, 0), "{m:?}");
    assert!(m.batches_sent >= 1 && m.batches_compressed >= 1, "{m:?}");
    assert!(m.max_batch_records >= 1 && m.max_batch_records <= 50, "{m:?}");
    // The broker stored the records decompressed, in order.
    let fetched = client.fetch("zipped", 0, 0, 100, "").await.expect("fetch");
    let read: Vec<String> = fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    assert_eq!(read, values);

    // Health check and client counters; keep-alive sends requests by itself.
    assert!(client.health_check().await.expect("healthy") > Duration::ZERO);
    let before = client.metrics();
    assert!(before.requests_sent > 0 && before.connections >= 1, "{before:?}");
    assert!(client.create_topic("bad//name", 1).await.is_err());
    assert_eq!(client.metrics().requests_failed, before.requests_failed + 1);
    let idle = client.metrics().requests_sent;
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(
        client.metrics().requests_sent >= idle + 2,
        "keep-alive checks while idle: {:?}",
        client.metrics()
    );
    drop(producer);
    drop(client);
    env.broker.shutdown().await;
}
