//! Dead-letter queues on a standalone broker (WIRE.md §11): a record a
//! consumer group keeps re-reading without committing past it moves to
//! `<topic>.dlq` after `max_deliveries`, the group moves on, and
//! FETCH_DLQ / REPLAY_DLQ (both request shapes) / PURGE_DLQ work on it.

mod common;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

fn produce(topic: &str, value: &str) -> Request {
    Request::Produce(ProduceRequest {
        topic: topic.into(),
        key: Bytes::from_static(b"k1"),
        value: Bytes::from(value.to_owned()),
        partition: 0,
    })
}

fn fetch(topic: &str, offset: u64) -> Request {
    Request::Fetch(FetchRequest {
        topic: topic.into(),
        partition: 0,
        offset,
        max_messages: 1,
        filter: String::new(),
    })
}

/// (first offset, values) of a FETCH answer.
async fn fetched(c: &mut RawClient, request: Request) -> (Option<u64>, Vec<String>) {
    match c.call(request).await {
        Response::Fetch(f) => (
            f.records.first().map(|r| r.offset),
            f.records
                .iter()
                .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
                .collect(),
        ),
        other => panic!("FETCH answered {other:?}"),
    }
}

async fn dlq_entries(c: &mut RawClient, topic: &str) -> Vec<DlqEntry> {
    match c
        .call(Request::FetchDlq(FetchDlqRequest {
            topic: topic.into(),
            max_messages: 10,
        }))
        .await
    {
        Response::FetchDlq(r) => r.entries,
        other => panic!("FETCH_DLQ answered {other:?}"),
    }
}

async fn replay(c: &mut RawClient, topic: &str, target: DlqTarget) -> ReplayDlqResponse {
    match c
        .call(Request::ReplayDlq(ReplayDlqRequest {
            topic: topic.into(),
            target,
        }))
        .await
    {
        Response::ReplayDlq(r) => r,
        other => panic!("REPLAY_DLQ answered {other:?}"),
    }
}

async fn purge(c: &mut RawClient, topic: &str) -> OkMessage {
    match c.call(Request::PurgeDlq(TopicRequest { topic: topic.into() })).await {
        Response::PurgeDlq(r) => r,
        other => panic!("PURGE_DLQ answered {other:?}"),
    }
}

#[tokio::test]
async fn a_record_delivered_too_often_moves_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let core = broker.running().broker().clone();
    let mut c = RawClient::connect(broker.client_addr()).await;
    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: "jobs".into(),
        partitions: 1,
    }))
    .await;
    core.set_max_deliveries("jobs", Some(2)).await.unwrap();
    for value in ["poison", "fine"] {
        assert!(matches!(c.call(produce("jobs", value)).await, Response::Produce(_)));
    }

    // A plain reader (no group) re-reads as often as it likes.
    for _ in 0..4 {
        assert_eq!(fetched(&mut c, fetch("jobs", 0)).await.1, ["poison"]);
    }
    assert!(dlq_entries(&mut c, "jobs").await.is_empty());

    // A group member that never gets past offset 0.
    let mut consumer = RawClient::connect(broker.client_addr()).await;
    let subscribed = consumer
        .call(Request::Subscribe(SubscribeRequest {
            topic: "jobs".into(),
            group_id: "workers".into(),
            partition: 0,
            mode: "earliest".into(),
        }))
        .await;
    assert!(matches!(subscribed, Response::Subscribe(_)), "{subscribed:?}");
    for delivery in 1..=2 {
        let (first, values) = fetched(&mut consumer, fetch("jobs", 0)).await;
        assert_eq!(
            (first, values),
            (Some(0), vec!["poison".to_owned()]),
            "delivery {delivery}"
        );
    }
    // The third delivery: the record goes to jobs.dlq, the group moves past it.
    let (first, values) = fetched(&mut consumer, fetch("jobs", 0)).await;
    assert_eq!((first, values), (Some(1), vec!["fine".to_owned()]));
    match consumer
        .call(Request::GetOffset(GroupPartitionRequest {
            topic: "jobs".into(),
            group_id: "workers".into(),
            partition: 0,
        }))
        .await
    {
        Response::GetOffset(o) => assert_eq!(o.offset, 1, "committed past the dead letter"),
        other => panic!("GET_OFFSET answered {other:?}"),
    }

    let entries = dlq_entries(&mut c, "jobs").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].id, "0:0");
    assert_eq!(&entries[0].data[..], b"poison");
    assert_eq!(entries[0].retries, 2);
    assert!(
        entries[0]
            .error
            .contains("delivered 2 times to consumer group 'workers'"),
        "{entries:?}"
    );
    // The DLQ is an ordinary topic: readable, its key says where the record came from.
    assert!(core.list_topics().contains(&"jobs.dlq".to_owned()));

    // REPLAY_DLQ by id (pyflymq replay_dlq) and by DLQ offset (re_inject_dlq):
    // the record is produced again to its partition, with its key.
    let r = replay(&mut c, "jobs", DlqTarget::MessageId("0:0".into())).await;
    assert!(r.success, "{r:?}");
    assert!(r.message.contains("offset 2"), "{r:?}");
    let r = replay(&mut c, "jobs", DlqTarget::Offset(0)).await;
    assert!(r.success && r.message.contains("offset 3"), "{r:?}");
    let all = fetched(
        &mut c,
        Request::Fetch(FetchRequest {
            topic: "jobs".into(),
            partition: 0,
            offset: 2,
            max_messages: 10,
            filter: String::new(),
        }),
    )
    .await;
    assert_eq!(all.1, ["poison", "poison"]);
    let (key, _) = core.consume("jobs", 0, 2).unwrap();
    assert_eq!(&key[..], b"k1", "replayed with its original key");
    let missing = replay(&mut c, "jobs", DlqTarget::MessageId("0:99".into())).await;
    assert!(!missing.success && missing.message.contains("not found"), "{missing:?}");

    // PURGE_DLQ empties it; purging again is still a success.
    let purged = purge(&mut c, "jobs").await;
    assert!(purged.success && purged.message.contains("deleted"), "{purged:?}");
    assert!(dlq_entries(&mut c, "jobs").await.is_empty());
    let again = purge(&mut c, "jobs").await;
    assert!(again.success && again.message.contains("nothing to purge"), "{again:?}");
    broker.shutdown().await;
}

#[tokio::test]
async fn topics_without_a_dead_letter_queue_answer_empty_and_bad_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let core = broker.running().broker().clone();
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert!(dlq_entries(&mut c, "never-created").await.is_empty());
    assert!(purge(&mut c, "never-created").await.success);
    let r = replay(&mut c, "never-created", DlqTarget::Offset(0)).await;
    assert!(!r.success, "{r:?}");

    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: "t".into(),
        partitions: 1,
    }))
    .await;
    for bad in [0, 1001] {
        let err = core.set_max_deliveries("t", Some(bad)).await.unwrap_err().to_string();
        assert!(err.contains("between 1 and 1000"), "{err}");
    }
    // The DLQ name must fit the topic name limit.
    let long = "x".repeat(249);
    c.call(Request::CreateTopic(CreateTopicRequest {
        topic: long.clone(),
        partitions: 1,
    }))
    .await;
    let err = core.set_max_deliveries(&long, Some(3)).await.unwrap_err().to_string();
    assert!(err.contains("invalid topic name"), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_consumer_rejects_a_record_into_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    for value in ["bad", "good"] {
        assert!(matches!(c.call(produce("orders", value)).await, Response::Produce(_)));
    }
    let commit = Request::Commit(CommitRequest {
        topic: "orders".into(),
        group_id: "billing".into(),
        partition: 0,
        offset: 0,
    });
    assert!(matches!(c.call(commit).await, Response::Commit));
    let reject = |offset, reason: &str| {
        Request::RejectRecord(RejectRecordRequest {
            topic: "orders".into(),
            group_id: "billing".into(),
            partition: 0,
            offset,
            reason: reason.into(),
        })
    };
    match c.call(reject(0, "amount is not a number")).await {
        Response::RejectRecord(r) => assert_eq!(r.message, "moved to orders.dlq as 0:0"),
        other => panic!("REJECT_RECORD answered {other:?}"),
    }
    let entries = dlq_entries(&mut c, "orders").await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].id.as_str(), &entries[0].data[..]), ("0:0", &b"bad"[..]));
    assert_eq!(
        entries[0].error,
        "rejected by consumer group 'billing': amount is not a number"
    );
    // The group stood at the rejected record: it moved past it.
    let offset = Request::GetOffset(GroupPartitionRequest {
        topic: "orders".into(),
        group_id: "billing".into(),
        partition: 0,
    });
    match c.call(offset.clone()).await {
        Response::GetOffset(r) => assert_eq!(r.offset, 1),
        other => panic!("GET_OFFSET answered {other:?}"),
    }
    // The group now stands at 1: rejecting it moves the group to 2.
    assert!(matches!(c.call(reject(1, "")).await, Response::RejectRecord(_)));
    match c.call(offset.clone()).await {
        Response::GetOffset(r) => assert_eq!(r.offset, 2),
        other => panic!("GET_OFFSET answered {other:?}"),
    }
    assert_eq!(
        dlq_entries(&mut c, "orders").await[1].error,
        "rejected by consumer group 'billing'"
    );
    // Rejecting a record the group is past leaves its offset alone.
    assert!(matches!(c.call(reject(0, "again")).await, Response::RejectRecord(_)));
    match c.call(offset).await {
        Response::GetOffset(r) => assert_eq!(r.offset, 2),
        other => panic!("GET_OFFSET answered {other:?}"),
    }
    // Bad input.
    let text = error_text(c.call(reject(9, "x")).await);
    assert!(text.contains("no readable record at offset 9"), "{text}");
    let mut missing = reject(0, "x");
    if let Request::RejectRecord(r) = &mut missing {
        r.topic = "nope".into();
    }
    assert_eq!(error_text(c.call(missing).await), "topic not found: nope");
    broker.shutdown().await;
}
