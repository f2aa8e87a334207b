//! Many concurrent connections producing and reading at once.

mod common;

use bytes::Bytes;
use common::RawClient;
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_and_twenty_connections_produce_and_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let addr = broker.client_addr();
    let mut admin = RawClient::connect(addr).await;
    admin
        .call(Request::CreateTopic(CreateTopicRequest {
            topic: "busy".into(),
            partitions: 4,
        }))
        .await;

    const CONNECTIONS: usize = 120;
    const PER_CONNECTION: usize = 25;
    let mut tasks = Vec::new();
    for conn in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let mut offsets = Vec::new();
            for i in 0..PER_CONNECTION {
                let r = c
                    .call(Request::Produce(ProduceRequest {
                        topic: "busy".into(),
                        key: Bytes::from(format!("conn-{conn}")),
                        value: Bytes::from(format!("{conn}:{i}")),
                        partition: -1,
                    }))
                    .await;
                let Response::Produce(m) = r else { panic!("{r:?}") };
                offsets.push((m.partition, m.offset));
            }
            let r = c.call(Request::ListTopics).await;
            assert!(matches!(r, Response::ListTopics(_)));
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let offsets = t.await.unwrap();
        // One key -> one partition, offsets increasing.
        assert!(offsets.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1));
        all.extend(offsets);
    }
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        CONNECTIONS * PER_CONNECTION,
        "two produces got the same offset"
    );

    let mut total = 0;
    for partition in 0..4 {
        let mut offset = 0;
        loop {
            let r = admin
                .call(Request::Fetch(FetchRequest {
                    topic: "busy".into(),
                    partition,
                    offset,
                    max_messages: 500,
                    filter: String::new(),
                }))
                .await;
            let Response::Fetch(f) = r else { panic!() };
            if f.records.is_empty() {
                break;
            }
            total += f.records.len();
            offset = f.next_offset;
        }
    }
    assert_eq!(total, CONNECTIONS * PER_CONNECTION);
    broker.shutdown().await;
}
