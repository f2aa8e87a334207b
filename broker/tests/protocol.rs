//! Every core and consumer-group opcode against a real broker on 127.0.0.1.

mod common;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

async fn start() -> (tempfile::TempDir, TestBroker, RawClient) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let client = RawClient::connect(broker.client_addr()).await;
    (dir, broker, client)
}

fn produce(topic: &str, key: &str, value: &str, partition: i32) -> Request {
    Request::Produce(ProduceRequest {
        topic: topic.into(),
        key: Bytes::from(key.to_owned()),
        value: Bytes::from(value.to_owned()),
        partition,
    })
}

fn create(topic: &str, partitions: i32) -> Request {
    Request::CreateTopic(CreateTopicRequest {
        topic: topic.into(),
        partitions,
    })
}

fn fetch(topic: &str, partition: i32, offset: u64, max: i32, filter: &str) -> Request {
    Request::Fetch(FetchRequest {
        topic: topic.into(),
        partition,
        offset,
        max_messages: max,
        filter: filter.into(),
    })
}

fn meta(response: Response) -> RecordMetadata {
    match response {
        Response::Produce(m) => m,
        other => panic!("expected RecordMetadata, got {other:?}"),
    }
}

fn fetched(response: Response) -> FetchResponse {
    match response {
        Response::Fetch(f) => f,
        other => panic!("expected a fetch response, got {other:?}"),
    }
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

#[tokio::test]
async fn topics_are_created_listed_and_deleted() {
    let (_dir, broker, mut c) = start().await;
    assert_eq!(c.call(create("orders", 3)).await, Response::CreateTopic);
    // Idempotent, as in Go.
    assert_eq!(c.call(create("orders", 3)).await, Response::CreateTopic);
    assert_eq!(c.call(create("__internal", 1)).await, Response::CreateTopic);
    assert_eq!(c.call(create("audit", 0)).await, Response::CreateTopic);
    let Response::ListTopics(list) = c.call(Request::ListTopics).await else {
        panic!()
    };
    assert_eq!(list.topics, vec!["audit".to_string(), "orders".to_string()]);

    let Response::ClusterMetadata(md) = c
        .call(Request::ClusterMetadata(ClusterMetadataRequest {
            topic: "orders".into(),
        }))
        .await
    else {
        panic!()
    };
    assert_eq!(md.topics.len(), 1);
    let partitions: Vec<i32> = md.topics[0].partitions.iter().map(|p| p.partition).collect();
    assert_eq!(partitions, vec![0, 1, 2]);
    assert_eq!(md.topics[0].partitions[0].leader_addr, broker.client_addr().to_string());
    assert_eq!(md.topics[0].partitions[0].state, "online");

    assert_eq!(
        c.call(Request::DeleteTopic(TopicRequest { topic: "orders".into() }))
            .await,
        Response::DeleteTopic
    );
    assert_eq!(
        c.call(Request::DeleteTopic(TopicRequest { topic: "orders".into() }))
            .await,
        Response::DeleteTopic
    );
    let Response::ListTopics(list) = c.call(Request::ListTopics).await else {
        panic!()
    };
    assert_eq!(list.topics, vec!["audit".to_string()]);
    let err = error_text(
        c.call(Request::ClusterMetadata(ClusterMetadataRequest {
            topic: "orders".into(),
        }))
        .await,
    );
    assert_eq!(err, "topic not found: orders");
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_topic_requests_get_clear_errors() {
    let (_dir, broker, mut c) = start().await;
    let err = error_text(c.call(create("bad name", 1)).await);
    assert!(err.starts_with("invalid topic name 'bad name'"), "{err}");
    let err = error_text(c.call(create("neg", -2)).await);
    assert!(err.contains("must be positive"), "{err}");
    let err = error_text(c.call(produce("empty//level", "", "x", -1)).await);
    assert!(err.starts_with("invalid topic name"), "{err}");
    let err = error_text(c.call(create(&"x".repeat(300), 1)).await);
    assert!(err.contains("longer than 249"), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn produce_assigns_offsets_and_partitions() {
    let (_dir, broker, mut c) = start().await;
    // Auto-create with 1 partition; offsets start at 0 and increase.
    for i in 0..3u64 {
        let m = meta(c.call(produce("auto", "", &format!("m{i}"), -1)).await);
        assert_eq!(
            (m.topic.as_str(), m.partition, m.offset, m.key_size, m.value_size),
            ("auto", 0, i, -1, 2)
        );
        assert!(m.timestamp > 1_600_000_000_000);
    }
    c.call(create("keyed", 4)).await;
    // Keys go to FNV-1a(key) mod partitions, as in the Go broker.
    for key in ["alpha", "beta", "gamma", "delta", "epsilon"] {
        let m = meta(c.call(produce("keyed", key, "v", -1)).await);
        assert_eq!(m.partition as u32, fnv1a(key.as_bytes()) % 4, "key {key}");
        assert_eq!(m.key_size, key.len() as i32);
    }
    // Keyless records go round robin from partition 0.
    let parts: Vec<i32> = futures_seq(&mut c, 4).await;
    assert_eq!(parts, vec![0, 1, 2, 3]);
    // An explicit partition is honoured; out of range is an error.
    assert_eq!(meta(c.call(produce("keyed", "alpha", "v", 2)).await).partition, 2);
    let err = error_text(c.call(produce("keyed", "", "v", 4)).await);
    assert!(err.starts_with("partition 4 not found"), "{err}");
    let err = error_text(c.call(produce("keyed", "", "v", -7)).await);
    assert!(err.starts_with("partition -7 not found"), "{err}");
    broker.shutdown().await;
}

async fn futures_seq(c: &mut RawClient, n: usize) -> Vec<i32> {
    let mut parts = Vec::new();
    for _ in 0..n {
        parts.push(meta(c.call(produce("keyed", "", "rr", -1)).await).partition);
    }
    parts
}

#[tokio::test]
async fn consume_and_fetch_read_back_what_was_produced() {
    let (_dir, broker, mut c) = start().await;
    c.call(create("t", 2)).await;
    for i in 0..20 {
        let key = if i % 2 == 0 { format!("k{i}") } else { String::new() };
        c.call(produce("t", &key, &format!("value-{i}"), 1)).await;
    }
    let Response::Consume(r) = c
        .call(Request::Consume(ConsumeRequest {
            topic: "t".into(),
            partition: 1,
            offset: 4,
        }))
        .await
    else {
        panic!()
    };
    assert_eq!((&r.key[..], &r.value[..]), (&b"k4"[..], &b"value-4"[..]));
    let err = error_text(
        c.call(Request::Consume(ConsumeRequest {
            topic: "t".into(),
            partition: 1,
            offset: 20,
        }))
        .await,
    );
    assert!(err.starts_with("EOF"), "{err}");
    let err = error_text(
        c.call(Request::Consume(ConsumeRequest {
            topic: "t".into(),
            partition: 2,
            offset: 0,
        }))
        .await,
    );
    assert!(err.starts_with("partition 2 out of range"), "{err}");
    let err = error_text(
        c.call(Request::Consume(ConsumeRequest {
            topic: "nope".into(),
            partition: 0,
            offset: 0,
        }))
        .await,
    );
    assert!(err.starts_with("topic not found"), "{err}");

    let f = fetched(c.call(fetch("t", 1, 3, 5, "")).await);
    assert_eq!(
        f.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7]
    );
    assert_eq!(f.next_offset, 8);
    assert_eq!(&f.records[1].key[..], b"k4");
    assert!(f.records[0].key.is_empty());
    // max <= 0 means 10.
    assert_eq!(fetched(c.call(fetch("t", 1, 0, 0, "")).await).records.len(), 10);
    // Past the end: empty, next = requested offset.
    let f = fetched(c.call(fetch("t", 1, 50, 10, "")).await);
    assert_eq!((f.records.len(), f.next_offset), (0, 50));
    // Empty partition.
    assert_eq!(fetched(c.call(fetch("t", 0, 0, 10, "")).await).records.len(), 0);
    // Filters: substring, regex, JSON path.
    let f = fetched(c.call(fetch("t", 1, 0, 100, "VALUE-1")).await);
    assert_eq!(
        f.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    );
    assert_eq!(f.next_offset, 20);
    let f = fetched(c.call(fetch("t", 1, 0, 100, "^value-[2-3]$")).await);
    assert_eq!(f.records.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![2, 3]);
    let err = error_text(c.call(fetch("t", 9, 0, 10, "")).await);
    assert!(err.starts_with("partition 9 not found"), "{err}");
    let err = error_text(c.call(fetch("t", -1, 0, 10, "")).await);
    assert!(err.starts_with("partition -1 not found"), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn produce_batch_extension_appends_consecutive_offsets() {
    let (_dir, broker, mut c) = start().await;
    c.call(create("b", 1)).await;
    let records: Vec<BatchRecord> = (0..100)
        .map(|i| BatchRecord {
            key: Bytes::new(),
            value: Bytes::from(format!("r{i}")),
        })
        .collect();
    let req = Request::ProduceBatch(ProduceBatchRequest {
        topic: "b".into(),
        partition: 0,
        records: records.clone(),
    });
    let Response::ProduceBatch(r) = c.call(req.clone()).await else {
        panic!()
    };
    assert_eq!((r.partition, r.base_offset, r.count), (0, 0, 100));
    let Response::ProduceBatch(r) = c.call(req).await else {
        panic!()
    };
    assert_eq!(r.base_offset, 100);
    let f = fetched(c.call(fetch("b", 0, 95, 10, "")).await);
    let values: Vec<String> = f
        .records
        .iter()
        .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
        .collect();
    assert_eq!(
        values,
        vec!["r95", "r96", "r97", "r98", "r99", "r0", "r1", "r2", "r3", "r4"]
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn consumer_groups_subscribe_commit_and_report_lag() {
    let (_dir, broker, mut c) = start().await;
    c.call(create("g", 2)).await;
    for i in 0..5 {
        c.call(produce("g", "", &format!("{i}"), 0)).await;
    }
    let sub = |group: &str, partition: i32, mode: &str| {
        Request::Subscribe(SubscribeRequest {
            topic: "g".into(),
            group_id: group.into(),
            partition,
            mode: mode.into(),
        })
    };
    assert_eq!(
        c.call(sub("grp", 0, "earliest")).await,
        Response::Subscribe(OffsetResponse { offset: 0 })
    );
    assert_eq!(
        c.call(sub("grp", 0, "latest")).await,
        Response::Subscribe(OffsetResponse { offset: 5 })
    );
    assert_eq!(
        c.call(sub("grp", 0, "")).await,
        Response::Subscribe(OffsetResponse { offset: 5 })
    );
    // Latest on an empty partition is the true log end, 0 (not Go's 1).
    assert_eq!(
        c.call(sub("grp", 1, "latest")).await,
        Response::Subscribe(OffsetResponse { offset: 0 })
    );
    assert_eq!(
        c.call(sub("grp", 0, "commit")).await,
        Response::Subscribe(OffsetResponse { offset: 0 })
    );
    assert!(error_text(c.call(sub("grp", 0, "sideways")).await).starts_with("unknown subscribe mode: sideways"));
    assert!(error_text(c.call(sub("grp", 2, "earliest")).await).starts_with("partition 2 not found"));

    let commit = Request::Commit(CommitRequest {
        topic: "g".into(),
        group_id: "grp".into(),
        partition: 0,
        offset: 3,
    });
    assert_eq!(c.call(commit).await, Response::Commit);
    assert_eq!(
        c.call(sub("grp", 0, "commit")).await,
        Response::Subscribe(OffsetResponse { offset: 3 })
    );
    let gp = |group: &str, partition: i32| GroupPartitionRequest {
        topic: "g".into(),
        group_id: group.into(),
        partition,
    };
    assert_eq!(
        c.call(Request::GetOffset(gp("grp", 0))).await,
        Response::GetOffset(OffsetResponse { offset: 3 })
    );
    assert_eq!(
        c.call(Request::GetOffset(gp("grp", 1))).await,
        Response::GetOffset(OffsetResponse { offset: 0 })
    );
    assert_eq!(
        error_text(c.call(Request::GetOffset(gp("nobody", 0))).await),
        "consumer group not found: g:nobody"
    );
    assert_eq!(
        c.call(Request::GetLag(gp("grp", 0))).await,
        Response::GetLag(LagInfo {
            current: 3,
            committed: 3,
            latest: 5,
            lag: 2
        })
    );

    let reset = |mode: &str, offset: u64| {
        Request::ResetOffset(ResetOffsetRequest {
            topic: "g".into(),
            group_id: "grp".into(),
            partition: 0,
            mode: mode.into(),
            offset,
        })
    };
    assert_eq!(c.call(reset("latest", 0)).await, Response::ResetOffset);
    assert_eq!(
        c.call(Request::GetOffset(gp("grp", 0))).await,
        Response::GetOffset(OffsetResponse { offset: 5 })
    );
    assert_eq!(c.call(reset("offset", 1)).await, Response::ResetOffset);
    assert_eq!(
        c.call(Request::GetOffset(gp("grp", 0))).await,
        Response::GetOffset(OffsetResponse { offset: 1 })
    );
    assert!(error_text(c.call(reset("nowhere", 0)).await).starts_with("unknown reset mode: nowhere"));

    // This connection is the group's one live member.
    let Response::ListGroups(groups) = c.call(Request::ListGroups).await else {
        panic!()
    };
    assert_eq!(groups.groups.len(), 1);
    assert_eq!(groups.groups[0].members, 1);
    assert_eq!(
        groups.groups[0].offsets,
        vec![PartitionOffset {
            partition: 0,
            offset: 1
        }]
    );
    let describe = Request::DescribeGroup(GroupRequest {
        topic: "g".into(),
        group_id: "grp".into(),
    });
    let Response::DescribeGroup(g) = c.call(describe.clone()).await else {
        panic!()
    };
    assert_eq!((g.topic.as_str(), g.group_id.as_str()), ("g", "grp"));

    let mut other = RawClient::connect(broker.client_addr()).await;
    let Response::DescribeGroup(g) = other.call(describe.clone()).await else {
        panic!()
    };
    assert_eq!(g.members, 1);
    drop(c);
    // Membership ends when the connection closes.
    let mut members = 1;
    for _ in 0..50 {
        let Response::DescribeGroup(g) = other.call(describe.clone()).await else {
            panic!()
        };
        members = g.members;
        if members == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(members, 0);

    let delete = Request::DeleteGroup(GroupRequest {
        topic: "g".into(),
        group_id: "grp".into(),
    });
    assert_eq!(other.call(delete.clone()).await, Response::DeleteGroup);
    assert_eq!(error_text(other.call(delete).await), "consumer group not found: g:grp");
    assert_eq!(
        error_text(other.call(describe).await),
        "consumer group not found: g:grp"
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn seek_to_timestamp_finds_the_first_record_at_or_after() {
    let (_dir, broker, mut c) = start().await;
    let first = meta(c.call(produce("ts", "", "a", -1)).await);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = meta(c.call(produce("ts", "", "b", -1)).await);
    let seek = |ts: i64| {
        Request::SeekToTimestamp(SeekToTimestampRequest {
            topic: "ts".into(),
            partition: 0,
            timestamp_ms: ts,
        })
    };
    assert_eq!(
        c.call(seek(0)).await,
        Response::SeekToTimestamp(OffsetResponse { offset: 0 })
    );
    assert_eq!(
        c.call(seek(first.timestamp + 1)).await,
        Response::SeekToTimestamp(OffsetResponse { offset: 1 })
    );
    assert_eq!(
        c.call(seek(second.timestamp + 1)).await,
        Response::SeekToTimestamp(OffsetResponse { offset: 2 })
    );
    broker.shutdown().await;
}

#[tokio::test]
async fn cluster_status_auth_and_unsupported_features() {
    let (_dir, broker, mut c) = start().await;
    let Response::ClusterStatus(s) = c.call(Request::ClusterStatus).await else {
        panic!()
    };
    assert_eq!(s.nodes.len(), 1);
    assert_eq!((s.node_id.as_str(), s.leader_id.as_str()), ("0", "0"));
    assert!(s.cluster_id.starts_with("flymq-"));

    // Authentication is off: AUTH succeeds and binds the name (WIRE.md §6.2).
    let auth = Request::Auth(AuthRequest {
        username: "alice".into(),
        password: "pw".into(),
    });
    let Response::Auth(a) = c.call(auth).await else {
        panic!()
    };
    assert!(a.success);
    assert_eq!(a.username, "alice");
    let Response::Whoami(w) = c.call(Request::Whoami).await else {
        panic!()
    };
    assert!(w.authenticated);
    assert_eq!(w.username, "alice");

    // DLQs off: FETCH_DLQ is an empty list, PURGE_DLQ answers in-band.
    let Response::FetchDlq(d) = c
        .call(Request::FetchDlq(FetchDlqRequest {
            topic: "x".into(),
            max_messages: 10,
        }))
        .await
    else {
        panic!()
    };
    assert!(d.entries.is_empty());
    let Response::PurgeDlq(p) = c.call(Request::PurgeDlq(TopicRequest { topic: "x".into() })).await else {
        panic!()
    };
    // No DLQ: nothing to purge, still a success (WIRE.md §11.3).
    assert!(p.success, "{p:?}");

    for (request, feature) in [(
        Request::CancelDelayed(RawPayload(bytes::Bytes::from_static(b"\0\x01t"))),
        "cancelling delayed messages",
    )] {
        let err = error_text(c.call(request).await);
        assert!(err.contains(feature) && err.contains("not supported yet"), "{err}");
    }
    let err = error_text(
        c.call(Request::ClusterJoin(ClusterJoinRequest {
            peer_address: "x:1".into(),
        }))
        .await,
    );
    assert!(err.contains("managed by the operator"), "{err}");
    // The connection is still usable after errors.
    assert!(matches!(c.call(Request::ListTopics).await, Response::ListTopics(_)));
    broker.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_dir, broker, mut c) = start().await;
    c.call(create("p", 1)).await;
    // 500 requests in one write, mixing produces (durable writes) with reads.
    let mut bytes = Vec::new();
    for i in 0..500 {
        let req = if i % 5 == 4 {
            Request::ListTopics
        } else {
            produce("p", "", &format!("{i}"), 0)
        };
        bytes.extend_from_slice(&req.to_frame_bytes().unwrap());
    }
    c.send_raw(&bytes).await;
    let mut expected_offset = 0;
    for i in 0..500 {
        match c.read_response().await {
            Response::Produce(m) => {
                assert_ne!(i % 5, 4, "reply {i} out of order");
                assert_eq!(m.offset, expected_offset);
                expected_offset += 1;
            }
            Response::ListTopics(_) => assert_eq!(i % 5, 4, "reply {i} out of order"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(expected_offset, 400);
    broker.shutdown().await;
}

/// Requests pipelined in one write take effect in the order sent: a read
/// sees the produce before it, and a produce after CREATE_TOPIC goes to the
/// topic as created (not auto-created with the default partition count).
#[tokio::test]
async fn pipelined_requests_take_effect_in_order() {
    let (_dir, broker, mut c) = start().await;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&create("eight", 8).to_frame_bytes().unwrap());
    bytes.extend_from_slice(&produce("eight", "", "first", 5).to_frame_bytes().unwrap());
    bytes.extend_from_slice(
        &Request::Consume(ConsumeRequest {
            topic: "eight".into(),
            partition: 5,
            offset: 0,
        })
        .to_frame_bytes()
        .unwrap(),
    );
    // A topic that does not exist yet: auto-created by the first produce,
    // read by the consume right behind it.
    bytes.extend_from_slice(&produce("auto", "", "a0", 0).to_frame_bytes().unwrap());
    bytes.extend_from_slice(
        &Request::Consume(ConsumeRequest {
            topic: "auto".into(),
            partition: 0,
            offset: 0,
        })
        .to_frame_bytes()
        .unwrap(),
    );
    for i in 0..50 {
        bytes.extend_from_slice(&produce("auto", "", &format!("a{}", i + 1), 0).to_frame_bytes().unwrap());
    }
    bytes.extend_from_slice(&fetch("auto", 0, 0, 100, "").to_frame_bytes().unwrap());
    c.send_raw(&bytes).await;

    assert!(
        matches!(c.read_response().await, Response::CreateTopic),
        "create answered first"
    );
    assert_eq!(
        meta(c.read_response().await).partition,
        5,
        "the produce went to partition 5 of 8"
    );
    match c.read_response().await {
        Response::Consume(r) => assert_eq!(&r.value[..], b"first"),
        other => panic!("the consume did not see the produce before it: {other:?}"),
    }
    assert_eq!(meta(c.read_response().await).offset, 0);
    match c.read_response().await {
        Response::Consume(r) => assert_eq!(&r.value[..], b"a0"),
        other => panic!("the consume did not see the auto-created topic's record: {other:?}"),
    }
    for i in 0..50 {
        assert_eq!(meta(c.read_response().await).offset, i + 1, "produce {i} in order");
    }
    let all = fetched(c.read_response().await);
    let values: Vec<String> = all
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let expected: Vec<String> = (0..51).map(|i| format!("a{i}")).collect();
    assert_eq!(values, expected, "the fetch saw every earlier produce, in order");
    c.call(Request::ListTopics).await;
    match c
        .call(Request::ClusterMetadata(ClusterMetadataRequest {
            topic: "eight".into(),
        }))
        .await
    {
        Response::ClusterMetadata(m) => assert_eq!(m.topics[0].partitions.len(), 8),
        other => panic!("{other:?}"),
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn hierarchical_topics_and_match_topics() {
    let (dir, broker, mut c) = start().await;
    for topic in ["sensors/room1/temp", "sensors/room2/temp", "logs/app", "orders"] {
        assert_eq!(c.call(create(topic, 1)).await, Response::CreateTopic);
    }
    let matching = |pattern: &str| Request::MatchTopics(TopicRequest { topic: pattern.into() });
    let names = |v: &[&str]| {
        Response::MatchTopics(ListTopicsResponse {
            topics: v.iter().map(|s| s.to_string()).collect(),
        })
    };
    assert_eq!(
        c.call(matching("sensors/+/temp")).await,
        names(&["sensors/room1/temp", "sensors/room2/temp"])
    );
    assert_eq!(c.call(matching("logs/#")).await, names(&["logs/app"]));
    assert_eq!(
        c.call(matching("#")).await.clone(),
        names(&["logs/app", "orders", "sensors/room1/temp", "sensors/room2/temp"])
    );
    assert_eq!(c.call(matching("nothing/+")).await, names(&[]));
    // A hierarchical topic is an ordinary topic.
    c.call(produce("sensors/room1/temp", "", "21.5", -1)).await;
    let Response::Fetch(f) = c.call(fetch("sensors/room1/temp", 0, 0, 10, "")).await else {
        panic!("fetch failed");
    };
    assert_eq!(f.records.len(), 1);
    // Bad patterns and names: the reason, and the connection stays usable.
    for (pattern, reason) in [
        ("a/#/b", "'#' must be the last level"),
        ("a//b", "empty level"),
        ("", "it is empty"),
    ] {
        let text = error_text(c.call(matching(pattern)).await);
        assert!(text.contains(reason), "{pattern}: {text}");
    }
    for name in ["/a", "a/", "a//b", "a/../b", "a/+/b"] {
        let text = error_text(c.call(create(name, 1)).await);
        assert!(text.starts_with("invalid topic name"), "{name}: {text}");
    }
    // Deleted topics leave the trie; a restart rebuilds it from storage.
    c.call(Request::DeleteTopic(TopicRequest {
        topic: "sensors/room2/temp".into(),
    }))
    .await;
    assert_eq!(c.call(matching("sensors/+/temp")).await, names(&["sensors/room1/temp"]));
    broker.shutdown().await;
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(c.call(matching("sensors/#")).await, names(&["sensors/room1/temp"]));
    broker.shutdown().await;
}
