//! Consumer-group partition assignment on a standalone broker (FlyMQ
//! extensions JOIN_GROUP, GROUP_HEARTBEAT, LEAVE_GROUP, COMMIT_FENCED):
//! members split the partitions, a member that stops heartbeating is
//! replaced, a stale member's commit is refused, and plain SUBSCRIBE /
//! COMMIT groups (pyflymq) keep working beside it.

mod common;

use std::time::Duration;

use common::{RawClient, error_text};
use flymq_broker::testing::TestBroker;
use flymq_proto::*;

const TOPIC: &str = "work";

fn join(member_id: &str, session_timeout_ms: u32) -> Request {
    Request::JoinGroup(JoinGroupRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
        member_id: member_id.into(),
        session_timeout_ms,
    })
}

fn member(member_id: &str) -> GroupMemberRequest {
    GroupMemberRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
        member_id: member_id.into(),
    }
}

fn commit(member_id: &str, generation: u64, partition: i32, offset: u64) -> Request {
    Request::CommitFenced(CommitFencedRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
        partition,
        offset,
        member_id: member_id.into(),
        generation,
    })
}

async fn assignment(c: &mut RawClient, request: Request) -> GroupAssignment {
    match c.call(request).await {
        Response::JoinGroup(a) | Response::GroupHeartbeat(a) => a,
        other => panic!("expected an assignment, got {other:?}"),
    }
}

async fn committed(c: &mut RawClient, partition: i32) -> u64 {
    match c
        .call(Request::GetOffset(GroupPartitionRequest {
            topic: TOPIC.into(),
            group_id: "g".into(),
            partition,
        }))
        .await
    {
        Response::GetOffset(r) => r.offset,
        other => panic!("GET_OFFSET answered {other:?}"),
    }
}

async fn started() -> (TestBroker, RawClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let create = Request::CreateTopic(CreateTopicRequest {
        topic: TOPIC.into(),
        partitions: 4,
    });
    assert!(matches!(c.call(create).await, Response::CreateTopic));
    (broker, c, dir)
}

#[tokio::test]
async fn members_split_the_partitions_and_take_over_from_a_dead_one() {
    let (broker, mut c, _dir) = started().await;
    let a = assignment(&mut c, join("", 1_000)).await;
    assert!(a.member_id.starts_with("member-"), "{a:?}");
    assert_eq!((a.generation, a.partitions.clone()), (1, vec![0, 1, 2, 3]));
    let b = assignment(&mut c, join("", 1_000)).await;
    assert_eq!(b.generation, 2);
    let a2 = assignment(&mut c, Request::GroupHeartbeat(member(&a.member_id))).await;
    assert_eq!(a2.generation, 2);
    let mut both: Vec<i32> = a2.partitions.iter().chain(&b.partitions).copied().collect();
    both.sort_unstable();
    assert_eq!(both, [0, 1, 2, 3], "the two members split the partitions: {a2:?} {b:?}");
    assert_eq!((a2.partitions.len(), b.partitions.len()), (2, 2));

    // b stops heartbeating: after its session timeout a's heartbeat takes
    // every partition over in a new generation.
    let mut taken = a2.clone();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        taken = assignment(&mut c, Request::GroupHeartbeat(member(&a.member_id))).await;
        if taken.partitions.len() == 4 {
            break;
        }
    }
    assert_eq!((taken.generation, taken.partitions.clone()), (3, vec![0, 1, 2, 3]));
    let gone = error_text(c.call(Request::GroupHeartbeat(member(&b.member_id))).await);
    assert!(gone.starts_with(&format!("unknown member '{}'", b.member_id)), "{gone}");
    assert!(flymq_proto::is_membership_refusal(&gone), "the SDK rejoins on it");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_stale_member_cannot_move_offsets_back() {
    let (broker, mut c, _dir) = started().await;
    let a = assignment(&mut c, join("", 60_000)).await;
    assert!(matches!(
        c.call(commit(&a.member_id, 1, 0, 10)).await,
        Response::CommitFenced
    ));
    assert_eq!(committed(&mut c, 0).await, 10);
    // b joins: a new generation; partition 0 stays with a or moves to b.
    let b = assignment(&mut c, join("", 60_000)).await;
    let owner_of_0 = if b.partitions.contains(&0) { &b } else { &a };
    assert!(matches!(
        c.call(commit(&owner_of_0.member_id, 2, 0, 20)).await,
        Response::CommitFenced
    ));
    // a still believes in generation 1 and commits an older offset: refused.
    let refused = error_text(c.call(commit(&a.member_id, 1, 0, 5)).await);
    assert!(
        refused.starts_with(&format!("stale generation of member '{}'", a.member_id)),
        "{refused}"
    );
    assert!(refused.contains("current generation 2"), "{refused}");
    assert!(
        flymq_proto::is_membership_refusal(&refused),
        "the SDK takes the new assignment"
    );
    assert_eq!(committed(&mut c, 0).await, 20, "the stale commit changed nothing");
    // A partition the member does not own is refused too.
    let not_owned = b.partitions[0];
    let refused = error_text(c.call(commit(&a.member_id, 2, not_owned, 1)).await);
    assert!(refused.contains("is not assigned to member"), "{refused}");
    assert!(flymq_proto::is_membership_refusal(&refused));
    broker.shutdown().await;
}

#[tokio::test]
async fn leaving_hands_partitions_over_and_membership_survives_a_restart() {
    let (broker, mut c, dir) = started().await;
    let a = assignment(&mut c, join("", 60_000)).await;
    let b = assignment(&mut c, join("", 60_000)).await;
    drop(c);
    broker.shutdown().await;

    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let b_after = assignment(&mut c, Request::GroupHeartbeat(member(&b.member_id))).await;
    assert_eq!(
        (b_after.generation, b_after.partitions.clone()),
        (2, b.partitions.clone())
    );
    assert!(matches!(
        c.call(Request::LeaveGroup(member(&a.member_id))).await,
        Response::LeaveGroup
    ));
    let b_alone = assignment(&mut c, Request::GroupHeartbeat(member(&b.member_id))).await;
    assert_eq!((b_alone.generation, b_alone.partitions), (3, vec![0, 1, 2, 3]));
    // Leaving twice is fine; DESCRIBE_GROUP shows the group.
    assert!(matches!(
        c.call(Request::LeaveGroup(member(&a.member_id))).await,
        Response::LeaveGroup
    ));
    let describe = Request::DescribeGroup(GroupRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
    });
    assert!(matches!(c.call(describe).await, Response::DescribeGroup(_)));
    broker.shutdown().await;
}

#[tokio::test]
async fn bad_membership_requests_get_clear_errors() {
    let (broker, mut c, _dir) = started().await;
    let cases = [
        (join("", 10), "session timeout 10 ms must be between 1000 and 300000 ms"),
        (
            Request::JoinGroup(JoinGroupRequest {
                topic: "missing".into(),
                group_id: "g".into(),
                member_id: String::new(),
                session_timeout_ms: 10_000,
            }),
            "topic not found: missing",
        ),
        (
            Request::JoinGroup(JoinGroupRequest {
                topic: TOPIC.into(),
                group_id: String::new(),
                member_id: String::new(),
                session_timeout_ms: 10_000,
            }),
            "invalid group id ''",
        ),
        (join("bad\u{1}id", 10_000), "invalid member id"),
        (Request::GroupHeartbeat(member("nobody")), "unknown member 'nobody'"),
        (commit("nobody", 1, 0, 1), "unknown member 'nobody'"),
        (commit("nobody", 1, 9, 1), "partition 9 not found"),
        (commit("nobody", 1, -1, 1), "partition -1 not found"),
    ];
    for (request, expected) in cases {
        let text = error_text(c.call(request.clone()).await);
        assert!(text.contains(expected), "{request:?}: {text}");
    }
    broker.shutdown().await;
}

#[tokio::test]
async fn plain_subscribe_and_commit_groups_keep_working_beside_assignment() {
    let (broker, mut c, _dir) = started().await;
    assignment(&mut c, join("", 60_000)).await;
    // pyflymq's way: SUBSCRIBE and unfenced COMMIT per partition.
    let subscribe = Request::Subscribe(SubscribeRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
        partition: 3,
        mode: "earliest".into(),
    });
    assert!(matches!(c.call(subscribe).await, Response::Subscribe(_)));
    let plain = Request::Commit(CommitRequest {
        topic: TOPIC.into(),
        group_id: "g".into(),
        partition: 3,
        offset: 7,
    });
    assert!(matches!(c.call(plain).await, Response::Commit));
    assert_eq!(committed(&mut c, 3).await, 7);
    broker.shutdown().await;
}

/// Heartbeats and fenced commits store only the times that moved, not the
/// whole membership; those times must survive a restart, or a member that
/// kept its session alive would come back expired.
#[tokio::test]
async fn heartbeat_times_survive_a_restart() {
    let (broker, mut c, dir) = started().await;
    let session = Duration::from_secs(5);
    let a = assignment(&mut c, join("", session.as_millis() as u32)).await;
    let owned = a.partitions[0];
    // Longer than the session: only the stored heartbeats keep it alive.
    let until = tokio::time::Instant::now() + session + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        let beat = assignment(&mut c, Request::GroupHeartbeat(member(&a.member_id))).await;
        assert_eq!(beat.generation, a.generation, "a lone member's heartbeat rebalanced");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(matches!(
        c.call(commit(&a.member_id, a.generation, owned as i32, 7)).await,
        Response::CommitFenced
    ));
    drop(c);
    broker.shutdown().await;

    let broker = TestBroker::start(dir.path()).await.unwrap();
    let mut c = RawClient::connect(broker.client_addr()).await;
    let after = assignment(&mut c, Request::GroupHeartbeat(member(&a.member_id))).await;
    assert_eq!((after.generation, after.partitions), (a.generation, a.partitions));
    assert_eq!(committed(&mut c, owned as i32).await, 7);
    broker.shutdown().await;
}
