//! Transactions on a standalone broker (WIRE.md §9.11): records are
//! invisible until COMMIT and never visible after ABORT; a commit across
//! partitions is all or nothing, also when the committing broker stops
//! after the decision; unknown, finished, foreign and idle transactions get
//! error frames that say which.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RawClient, error_text};
use flymq_broker::core::command::{Command, Decision, TransactionPart};
use flymq_broker::core::{NewRecord, now_ms};
use flymq_broker::testing::{TestBroker, test_config};
use flymq_proto::*;

const PARTITIONS: u32 = 3;

async fn create(c: &mut RawClient, topic: &str, partitions: u32) {
    let response = c
        .call(Request::CreateTopic(CreateTopicRequest {
            topic: topic.into(),
            partitions: partitions as i32,
        }))
        .await;
    assert!(matches!(response, Response::CreateTopic), "{response:?}");
}

async fn begin(c: &mut RawClient) -> String {
    match c.call(Request::BeginTx).await {
        Response::BeginTx(r) => {
            assert!(r.success);
            assert!(!r.txn_id.is_empty());
            r.txn_id
        }
        other => panic!("BEGIN_TX answered {other:?}"),
    }
}

fn produce_tx(txn: &str, topic: &str, value: &str) -> Request {
    Request::ProduceTx(ProduceTxRequest {
        txn_id: txn.into(),
        topic: topic.into(),
        data: Bytes::from(value.to_owned()),
    })
}

fn commit(txn: &str) -> Request {
    Request::CommitTx(TxRequest { txn_id: txn.into() })
}

fn abort(txn: &str) -> Request {
    Request::AbortTx(TxRequest { txn_id: txn.into() })
}

/// Every value of every partition of `topic`, sorted.
async fn all_values(c: &mut RawClient, topic: &str, partitions: u32) -> Vec<String> {
    let mut values = Vec::new();
    for partition in 0..partitions {
        let response = c
            .call(Request::Fetch(FetchRequest {
                topic: topic.into(),
                partition: partition as i32,
                offset: 0,
                max_messages: 10_000,
                filter: String::new(),
            }))
            .await;
        let Response::Fetch(f) = response else {
            panic!("expected a fetch response, got {response:?}")
        };
        values.extend(f.records.iter().map(|m| String::from_utf8(m.value.to_vec()).unwrap()));
    }
    values.sort();
    values
}

fn expected(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}")).collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_commit_across_partitions_shows_every_record_and_an_abort_none() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    create(&mut c, "orders", PARTITIONS).await;

    let txn = begin(&mut c).await;
    for i in 0..12 {
        match c.call(produce_tx(&txn, "orders", &format!("paid-{i:03}"))).await {
            Response::ProduceTx(m) => assert_eq!((m.partition, m.offset, m.key_size), (0, 0, -1)),
            other => panic!("PRODUCE_TX answered {other:?}"),
        }
    }
    assert!(
        all_values(&mut c, "orders", PARTITIONS).await.is_empty(),
        "visible before COMMIT"
    );
    match c.call(commit(&txn)).await {
        Response::CommitTx(r) => assert!(r.success && r.txn_id == txn),
        other => panic!("COMMIT_TX answered {other:?}"),
    }
    assert_eq!(all_values(&mut c, "orders", PARTITIONS).await, expected("paid", 12));

    // Pipelined: BEGIN's id is needed, then PRODUCE_TX ×5 and ABORT in one write.
    let txn = begin(&mut c).await;
    for i in 0..5 {
        c.send(&produce_tx(&txn, "orders", &format!("void-{i:03}"))).await;
    }
    c.send(&abort(&txn)).await;
    for _ in 0..5 {
        assert!(matches!(c.read_response().await, Response::ProduceTx(_)));
    }
    assert!(matches!(c.read_response().await, Response::AbortTx(r) if r.success));
    assert_eq!(all_values(&mut c, "orders", PARTITIONS).await, expected("paid", 12));

    // Finished transactions say how they ended.
    let text = error_text(c.call(commit(&txn)).await);
    assert!(text.contains("was aborted"), "{text}");
    let text = error_text(c.call(produce_tx(&txn, "orders", "late")).await);
    assert!(text.contains("was aborted"), "{text}");

    // Committed records survive a restart.
    drop(c);
    broker.shutdown().await;
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    assert_eq!(all_values(&mut c, "orders", PARTITIONS).await, expected("paid", 12));
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_finished_and_foreign_transactions_get_error_frames() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let mut other = RawClient::connect(broker.client_addr()).await;
    create(&mut c, "t", 1).await;

    let text = error_text(c.call(commit("txn-nope")).await);
    assert!(text.contains("transaction not found: txn-nope"), "{text}");
    let text = error_text(c.call(abort("txn-nope")).await);
    assert!(text.contains("transaction not found"), "{text}");
    let text = error_text(c.call(produce_tx("txn-nope", "t", "x")).await);
    assert!(text.contains("transaction not found"), "{text}");

    // A transaction is used on the connection that began it.
    let txn = begin(&mut c).await;
    assert!(matches!(
        c.call(produce_tx(&txn, "t", "mine")).await,
        Response::ProduceTx(_)
    ));
    for request in [produce_tx(&txn, "t", "theirs"), commit(&txn), abort(&txn)] {
        let text = error_text(other.call(request).await);
        assert!(text.contains("belongs to another connection"), "{text}");
    }
    // ... and is still intact for its owner.
    assert!(matches!(c.call(commit(&txn)).await, Response::CommitTx(_)));
    assert_eq!(all_values(&mut c, "t", 1).await, vec!["mine".to_owned()]);
    let text = error_text(c.call(commit(&txn)).await);
    assert!(text.contains("already committed"), "{text}");
    let text = error_text(c.call(abort(&txn)).await);
    assert!(text.contains("already committed"), "{text}");

    // A bad topic name is refused at PRODUCE_TX, the transaction stays usable.
    let txn = begin(&mut c).await;
    let text = error_text(c.call(produce_tx(&txn, "bad name!", "x")).await);
    assert!(text.contains("invalid topic name"), "{text}");
    assert!(matches!(c.call(commit(&txn)).await, Response::CommitTx(_)));

    // A commit of nothing succeeds and shows nothing.
    assert_eq!(all_values(&mut c, "t", 1).await, vec!["mine".to_owned()]);

    // The connection that began a transaction closes: it is aborted.
    let mut owner = RawClient::connect(broker.client_addr()).await;
    let txn = begin(&mut owner).await;
    assert!(matches!(
        owner.call(produce_tx(&txn, "t", "orphan")).await,
        Response::ProduceTx(_)
    ));
    drop(owner);
    let mut text = String::new();
    for _ in 0..50 {
        text = error_text(c.call(commit(&txn)).await);
        if text.contains("connection that began it closed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(text.contains("connection that began it closed"), "{text}");
    assert_eq!(all_values(&mut c, "t", 1).await, vec!["mine".to_owned()]);
    broker.shutdown().await;
}

#[tokio::test]
async fn idle_and_oversized_transactions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.transaction_timeout_ms = 300;
    let broker = TestBroker::start_with(config).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    create(&mut c, "t", 1).await;

    let txn = begin(&mut c).await;
    assert!(matches!(
        c.call(produce_tx(&txn, "t", "slow")).await,
        Response::ProduceTx(_)
    ));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let text = error_text(c.call(commit(&txn)).await);
    assert!(text.contains("expired"), "{text}");
    assert!(all_values(&mut c, "t", 1).await.is_empty());

    // 4 MiB per transaction: the fifth 1 MiB record does not fit.
    let txn = begin(&mut c).await;
    let big = "x".repeat(1 << 20);
    for _ in 0..4 {
        let response = c.call(produce_tx(&txn, "t", &big[..(1 << 20) - 64])).await;
        assert!(matches!(response, Response::ProduceTx(_)), "{response:?}");
    }
    let text = error_text(c.call(produce_tx(&txn, "t", &big[..(1 << 20) - 64])).await);
    assert!(text.contains("is full"), "{text}");
    assert!(matches!(c.call(commit(&txn)).await, Response::CommitTx(_)));
    let response = c
        .call(Request::Fetch(FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_messages: 100,
            filter: String::new(),
        }))
        .await;
    let Response::Fetch(f) = response else {
        panic!("{response:?}")
    };
    assert_eq!(f.records.len(), 4, "the four records that fitted are committed");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_connection_holds_at_most_64_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let mut ids = Vec::new();
    for _ in 0..64 {
        ids.push(begin(&mut c).await);
    }
    let text = error_text(c.call(Request::BeginTx).await);
    assert!(text.contains("already has 64 open transactions"), "{text}");
    // Another connection is not affected; finishing one frees a slot.
    let mut other = RawClient::connect(broker.client_addr()).await;
    begin(&mut other).await;
    assert!(matches!(c.call(abort(&ids[0])).await, Response::AbortTx(_)));
    begin(&mut c).await;
    broker.shutdown().await;
}

/// The committing broker stored the decision and stopped before delivering:
/// the metadata leader (here: the broker itself after a restart) delivers
/// every partition's share once.
#[tokio::test]
async fn a_stored_decision_is_delivered_to_every_partition_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    create(&mut c, "ledger", 2).await;
    let topic_id = broker.running().broker().catalog().topic("ledger").unwrap().record.id;
    let part = |partition: u32, values: &[&str]| TransactionPart {
        topic: "ledger".into(),
        topic_id,
        partition,
        records: values
            .iter()
            .map(|v| NewRecord::new(Bytes::new(), Bytes::from(v.to_string())))
            .collect(),
    };
    let decision = Decision {
        txn_id: "txn-crashed".into(),
        committed_ms: now_ms() - 60_000,
        parts: vec![part(0, &["debit", "fee"]), part(1, &["credit"])],
    };
    broker
        .running()
        .broker()
        .propose(Command::CommitTransaction { decision })
        .await
        .unwrap();
    drop(c);
    broker.shutdown().await;

    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let mut values = Vec::new();
    for _ in 0..100 {
        values = all_values(&mut c, "ledger", 2).await;
        if values.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(values, ["credit", "debit", "fee"]);
    assert_eq!(
        broker.running().broker().finish_pending().await.unwrap(),
        0,
        "decision dropped"
    );
    assert!(broker.running().broker().store().txn_decisions().unwrap().is_empty());
    broker.shutdown().await;
}
