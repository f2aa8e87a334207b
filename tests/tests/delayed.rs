//! Delayed delivery on a 3-broker cluster (issue 12, item 2): delayed
//! records survive a kill -9 of their partition's leader before they are
//! due and are then delivered exactly once, identically on every replica.

use std::time::{Duration, Instant};

use bytes::Bytes;
use flymq_proto::{ProduceDelayedRequest, Request, Response};
use flymq_tests::cluster::{Cluster, client_for, read_all_from};

const TOPIC: &str = "delayed";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delayed_records_survive_a_leader_kill_and_are_delivered_once() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(191, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let admin = client_for(&all).await;
    admin.create_topic(TOPIC, 1).await.expect("create topic");

    // 20 delayed records, due 4 s from now, through the partition's leader.
    let meta = admin.topic_metadata(TOPIC).await.unwrap();
    let leader_addr = meta.partitions[0].leader_addr.clone();
    let victim = cluster.index_of_client(&leader_addr).expect("leader is a broker");
    let via_leader = client_for(&[&cluster.nodes[victim]]).await;
    for i in 0..20 {
        let request = Request::ProduceDelayed(ProduceDelayedRequest {
            topic: TOPIC.into(),
            data: Bytes::from(format!("job-{i:02}")),
            delay_ms: 4_000,
        });
        match via_leader.request(&request).await.expect("delayed produce") {
            Response::ProduceDelayed(m) => assert_eq!(m.partition, 0),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let sent = Instant::now();
    assert!(read_all_from(&via_leader, TOPIC).await.is_empty(), "visible before due");

    // The leader dies before they are due; a new leader delivers them.
    cluster.procs[victim].as_mut().unwrap().kill9();
    let survivor = (0..3).find(|i| *i != victim).unwrap();
    let via_survivor = client_for(&[&cluster.nodes[survivor]]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = read_all_from(&via_survivor, TOPIC).await;
        if got.len() >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered {} of 20 after the leader died",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent.elapsed() >= Duration::from_millis(3_900), "delivered early");

    // The old leader comes back; every replica holds each record once, the same way.
    tokio::task::block_in_place(|| cluster.restart(victim, &[]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut copies = Vec::new();
    for node in &cluster.nodes {
        let client = client_for(&[node]).await;
        let mut records = Vec::new();
        for _ in 0..300 {
            records = read_all_from(&client, TOPIC).await;
            if records.len() >= 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut values: Vec<&str> = records.iter().map(|(_, v)| v.as_str()).collect();
        values.sort_unstable();
        let want: Vec<String> = (0..20).map(|i| format!("job-{i:02}")).collect();
        assert_eq!(values, want, "{}: each delayed record exactly once", node.client_addr());
        copies.push(records);
    }
    assert_eq!(copies[0], copies[1]);
    assert_eq!(copies[0], copies[2]);
}
