//! Consumer groups: SUBSCRIBE, COMMIT, GET/RESET_OFFSET, LIST/DESCRIBE/DELETE_GROUP, GET_LAG.

use std::sync::Arc;

use flymq_proto::{
    CommitRequest, GroupPartitionRequest, GroupRecord, GroupRequest, LagInfo, ListGroupsResponse, OffsetResponse,
    PartitionOffset, ResetOffsetRequest, Response, SubscribeRequest,
};

use crate::core::{Broker, GroupInfo};
use crate::server::connection::ConnectionContext;
use crate::server::dispatch::Reply;

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

pub fn subscribe(conn: &ConnectionContext, broker: &Arc<Broker>, req: SubscribeRequest) -> Reply {
    let broker = broker.clone();
    let connection = conn.id;
    Reply::pending(async move {
        let offset = broker
            .subscribe(&req.topic, &req.group_id, req.partition, &req.mode, connection)
            .await?;
        Ok(Response::Subscribe(OffsetResponse { offset }))
    })
}

pub fn commit(broker: &Arc<Broker>, req: CommitRequest) -> Reply {
    match broker.submit_commit(&req.topic, &req.group_id, req.partition, req.offset) {
        Ok(pending) => Reply::pending(async move {
            pending.await?;
            Ok(Response::Commit)
        }),
        Err(err) => Reply::error(err),
    }
}

pub fn get_offset(broker: &Arc<Broker>, req: GroupPartitionRequest) -> Reply {
    Reply::from_result(
        broker
            .committed_offset(&req.topic, &req.group_id, req.partition)
            .map(|offset| Response::GetOffset(OffsetResponse { offset })),
    )
}

pub fn reset_offset(broker: &Arc<Broker>, req: ResetOffsetRequest) -> Reply {
    let broker = broker.clone();
    Reply::pending(async move {
        broker
            .reset_offset(&req.topic, &req.group_id, req.partition, &req.mode, req.offset)
            .await?;
        Ok(Response::ResetOffset)
    })
}

pub fn list(broker: &Arc<Broker>) -> Reply {
    Reply::from_result(broker.list_groups().map(|groups| {
        Response::ListGroups(ListGroupsResponse {
            groups: groups.into_iter().map(group_record).collect(),
        })
    }))
}

pub fn describe(broker: &Arc<Broker>, req: GroupRequest) -> Reply {
    Reply::from_result(
        broker
            .describe_group(&req.topic, &req.group_id)
            .map(|g| Response::DescribeGroup(group_record(g))),
    )
}

pub fn lag(broker: &Arc<Broker>, req: GroupPartitionRequest) -> Reply {
    Reply::from_result(broker.lag(&req.topic, &req.group_id, req.partition).map(|lag| {
        Response::GetLag(LagInfo {
            current: lag.committed,
            committed: lag.committed,
            latest: lag.latest,
            lag: lag.lag,
        })
    }))
}

pub fn delete(broker: &Arc<Broker>, req: GroupRequest) -> Reply {
    let broker = broker.clone();
    Reply::pending(async move {
        broker.delete_group(&req.topic, &req.group_id).await?;
        Ok(Response::DeleteGroup)
    })
}
