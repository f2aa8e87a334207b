//! Consumer groups: SUBSCRIBE, COMMIT, GET/RESET_OFFSET, LIST/DESCRIBE/DELETE_GROUP, GET_LAG.

use std::sync::Arc;

use flymq_proto::{
    CommitFencedRequest, CommitRequest, GroupAssignment, GroupMemberRequest, GroupPartitionRequest, GroupRecord,
    GroupRequest, JoinGroupRequest, LagInfo, ListGroupsResponse, OffsetResponse, PartitionOffset, ResetOffsetRequest,
    Response, SubscribeRequest,
};
use futures::FutureExt;

use crate::core::groups::Assignment;
use crate::core::{Broker, GroupInfo};
use crate::server::access::{AccessCheck, verify};
use crate::server::connection::{ConnectionContext, Session};
use crate::server::dispatch::{Answer, Reply};

fn group_record(info: GroupInfo) -> GroupRecord {
    GroupRecord {
        topic: info.topic,
        group_id: info.group,
        members: info.members,
        offsets: info
            .offsets
            .into_iter()
            .map(|(p, offset)| PartitionOffset {
                partition: p as i32,
                offset,
            })
            .collect(),
    }
}

pub async fn subscribe(session: &Session, broker: Arc<Broker>, req: SubscribeRequest) -> Answer {
    Answer::from_result(
        broker
            .subscribe(&req.topic, &req.group_id, req.partition, &req.mode, session.id)
            .await
            .map(|offset| Response::Subscribe(OffsetResponse { offset })),
    )
}

/// COMMIT is a queued write: pipelined commits keep their order.
pub fn commit(
    conn: &mut ConnectionContext,
    broker: &Arc<Broker>,
    req: CommitRequest,
    gate: Option<AccessCheck>,
) -> Reply {
    let broker = broker.clone();
    conn.sequencer.write(None, move || {
        if let Err(denied) = verify(&gate, &broker) {
            return futures::future::ready(Answer::error(denied)).boxed();
        }
        match broker.submit_commit(&req.topic, &req.group_id, req.partition, req.offset) {
            Ok(pending) => async move {
                match pending.await {
                    Ok(()) => Response::Commit.into(),
                    Err(err) => Answer::error(err),
                }
            }
            .boxed(),
            Err(err) => futures::future::ready(Answer::error(err)).boxed(),
        }
    })
}

pub async fn get_offset(broker: Arc<Broker>, req: GroupPartitionRequest) -> Answer {
    Answer::from_result(
        broker
            .committed_offset(&req.topic, &req.group_id, req.partition)
            .await
            .map(|offset| Response::GetOffset(OffsetResponse { offset })),
    )
}

pub async fn reset_offset(broker: Arc<Broker>, req: ResetOffsetRequest) -> Answer {
    Answer::from_result(
        broker
            .reset_offset(&req.topic, &req.group_id, req.partition, &req.mode, req.offset)
            .await
            .map(|()| Response::ResetOffset),
    )
}

pub async fn list(broker: Arc<Broker>) -> Answer {
    Answer::from_result(broker.list_groups().await.map(|groups| {
        Response::ListGroups(ListGroupsResponse {
            groups: groups.into_iter().map(group_record).collect(),
        })
    }))
}

pub async fn describe(broker: Arc<Broker>, req: GroupRequest) -> Answer {
    Answer::from_result(
        broker
            .describe_group(&req.topic, &req.group_id)
            .await
            .map(|g| Response::DescribeGroup(group_record(g))),
    )
}

pub async fn lag(broker: Arc<Broker>, req: GroupPartitionRequest) -> Answer {
    Answer::from_result(broker.lag(&req.topic, &req.group_id, req.partition).await.map(|lag| {
        Response::GetLag(LagInfo {
            current: lag.committed,
            committed: lag.committed,
            latest: lag.latest,
            lag: lag.lag,
        })
    }))
}

pub async fn delete(broker: Arc<Broker>, req: GroupRequest) -> Answer {
    Answer::from_result(
        broker
            .delete_group(&req.topic, &req.group_id)
            .await
            .map(|()| Response::DeleteGroup),
    )
}

fn assignment(a: Assignment) -> GroupAssignment {
    GroupAssignment {
        member_id: a.member_id,
        generation: a.generation,
        partitions: a.partitions.into_iter().map(|p| p as i32).collect(),
    }
}

/// JOIN_GROUP (FlyMQ extension).
pub async fn join(broker: Arc<Broker>, req: JoinGroupRequest) -> Answer {
    Answer::from_result(
        broker
            .join_group(&req.topic, &req.group_id, &req.member_id, req.session_timeout_ms)
            .await
            .map(|a| Response::JoinGroup(assignment(a))),
    )
}

/// GROUP_HEARTBEAT (FlyMQ extension).
pub async fn heartbeat(broker: Arc<Broker>, req: GroupMemberRequest) -> Answer {
    Answer::from_result(
        broker
            .group_heartbeat(&req.topic, &req.group_id, &req.member_id)
            .await
            .map(|a| Response::GroupHeartbeat(assignment(a))),
    )
}

/// LEAVE_GROUP (FlyMQ extension).
pub async fn leave(broker: Arc<Broker>, req: GroupMemberRequest) -> Answer {
    Answer::from_result(
        broker
            .leave_group(&req.topic, &req.group_id, &req.member_id)
            .await
            .map(|_| Response::LeaveGroup),
    )
}

/// COMMIT_FENCED (FlyMQ extension).
pub async fn commit_fenced(broker: Arc<Broker>, req: CommitFencedRequest) -> Answer {
    Answer::from_result(
        broker
            .commit_fenced(
                &req.topic,
                &req.group_id,
                req.partition,
                req.offset,
                &req.member_id,
                req.generation,
            )
            .await
            .map(|()| Response::CommitFenced),
    )
}
