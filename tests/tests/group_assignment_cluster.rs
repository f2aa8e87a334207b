//! Consumer-group partition assignment on a 3-broker cluster (issue 12,
//! item 7): two members talking to different brokers split the partitions;
//! when one member's broker is killed (the member goes silent), the other
//! takes its partitions over after the session timeout; the silent
//! member's late commit is refused on any broker.

use std::time::{Duration, Instant};

use flymq_client::{Client, Request, Response};
use flymq_proto::{CommitFencedRequest, GroupAssignment, GroupMemberRequest, JoinGroupRequest};
use flymq_tests::cluster::{Cluster, client_for};

const TOPIC: &str = "jobs";

/// A membership request, retried while the cluster elects a leader.
async fn assignment(client: &Client, request: &Request) -> GroupAssignment {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.request(request).await {
            Ok(Response::JoinGroup(a)) | Ok(Response::GroupHeartbeat(a)) => return a,
            other if Instant::now() >= deadline => panic!("{request:?} kept failing: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn heartbeat(member_id: &str) -> Request {
    Request::GroupHeartbeat(GroupMemberRequest {
        topic: TOPIC.into(),
        group_id: "workers".into(),
        member_id: member_id.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_on_two_brokers_split_partitions_and_take_over_after_a_kill() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(247, 3));
    let c1 = client_for(&[&cluster.nodes[1]]).await;
    let c2 = client_for(&[&cluster.nodes[2]]).await;
    c1.create_topic(TOPIC, 4).await.expect("create topic");
    let join = Request::JoinGroup(JoinGroupRequest {
        topic: TOPIC.into(),
        group_id: "workers".into(),
        member_id: String::new(),
        session_timeout_ms: 3_000,
    });
    let a = assignment(&c1, &join).await;
    let b = assignment(&c2, &join).await;
    let a = assignment(&c1, &heartbeat(&a.member_id)).await;
    assert_eq!(a.generation, b.generation);
    let mut all: Vec<i32> = a.partitions.iter().chain(&b.partitions).copied().collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3], "split: {a:?} {b:?}");
    assert_eq!((a.partitions.len(), b.partitions.len()), (2, 2));

    // b's broker dies: b goes silent. a keeps heartbeating through broker 1
    // and gets b's partitions once b's session (3 s) has run out.
    tokio::task::block_in_place(|| cluster.kill9(2));
    let deadline = Instant::now() + Duration::from_secs(30);
    let taken = loop {
        let now = assignment(&c1, &heartbeat(&a.member_id)).await;
        if now.partitions.len() == 4 {
            break now;
        }
        assert!(Instant::now() < deadline, "a never took over: {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(taken.generation > a.generation);

    // b comes back through broker 0 with its old generation: its commit of
    // a partition it used to own is refused, a's is stored.
    let c0 = client_for(&[&cluster.nodes[0]]).await;
    let stale = Request::CommitFenced(CommitFencedRequest {
        topic: TOPIC.into(),
        group_id: "workers".into(),
        partition: b.partitions[0],
        offset: 1,
        member_id: b.member_id.clone(),
        generation: b.generation,
    });
    let refused = c0.request(&stale).await.expect_err("a stale commit is refused");
    assert!(refused.to_string().contains("unknown member"), "{refused}");
    let fresh = Request::CommitFenced(CommitFencedRequest {
        topic: TOPIC.into(),
        group_id: "workers".into(),
        partition: b.partitions[0],
        offset: 5,
        member_id: a.member_id.clone(),
        generation: taken.generation,
    });
    assert!(matches!(c0.request(&fresh).await, Ok(Response::CommitFenced)));
    assert_eq!(
        c0.get_offset(TOPIC, "workers", b.partitions[0]).await.expect("offset"),
        5
    );
}
