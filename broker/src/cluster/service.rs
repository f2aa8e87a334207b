//! The inter-broker gRPC service (cluster port 9093): Raft RPCs for every
//! group, forwarded proposals, joins and group management. Every request's
//! envelope is checked: the cluster id must match and the target node id
//! must be this broker, so a stale address that now belongs to another
//! broker, or a broker of another cluster, is refused.

use std::sync::Arc;

use flymq_proto::grpc::cluster::cluster_server::Cluster;
use flymq_proto::grpc::cluster::{
    Envelope, ForwardReply, ForwardRequest, FrameReply, FrameRequest, JoinReply, JoinRequest, ManageReply,
    ManageRequest, RaftKind, RaftReply, RaftRequest, SnapshotChunk,
};
use tonic::{Request, Response, Status, Streaming};

use super::node::{ClusterNode, Group, GroupOp, node_address};
use super::types::{META_GROUP, NodeInfo, SnapshotData, SnapshotMeta, TypeConfig, Vote, decode, encode};
use crate::core::command::Command;

pub struct ClusterService {
    pub node: Arc<ClusterNode>,
}

fn bad_payload(e: std::io::Error) -> Status {
    Status::invalid_argument(format!("undecodable payload: {e}"))
}

impl ClusterService {
    fn check(&self, envelope: Option<&Envelope>) -> Result<(), Status> {
        let envelope = envelope.ok_or_else(|| Status::invalid_argument("request without an envelope"))?;
        let mut mine = self.node.cluster_id();
        if mine.is_empty() && !envelope.cluster_id.is_empty() {
            // A broker that has not joined yet is being added by the
            // metadata leader, whose RPCs arrive before the join reply.
            self.node
                .adopt_cluster_id(&envelope.cluster_id)
                .map_err(|e| Status::internal(e.to_string()))?;
            mine = envelope.cluster_id.clone();
        }
        if envelope.cluster_id != mine {
            return Err(Status::failed_precondition(format!(
                "cluster id mismatch: sender is in cluster '{}', this broker is in '{}'",
                envelope.cluster_id, mine
            )));
        }
        if envelope.to_node != self.node.node_id() {
            return Err(Status::failed_precondition(format!(
                "this address now belongs to node {}, not node {}",
                self.node.node_id(),
                envelope.to_node
            )));
        }
        Ok(())
    }

    fn group(&self, envelope: Option<&Envelope>) -> Result<Arc<Group>, Status> {
        self.check(envelope)?;
        let id = envelope.map_or(META_GROUP, |e| e.group_id);
        self.node
            .group(id)
            .ok_or_else(|| Status::not_found(format!("group {id} is not hosted on node {}", self.node.node_id())))
    }
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftReply>, Status> {
    let payload = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftReply { payload }))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn raft(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        let group = self.group(req.envelope.as_ref())?;
        let raft = &group.raft;
        let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(e.to_string());
        match RaftKind::try_from(req.kind).unwrap_or(RaftKind::Unspecified) {
            RaftKind::AppendEntries => {
                let rpc = decode(&req.payload).map_err(bad_payload)?;
                reply(&raft.append_entries(rpc).await.map_err(|e| unavailable(&e))?)
            }
            RaftKind::Vote => {
                let rpc = decode(&req.payload).map_err(bad_payload)?;
                reply(&raft.vote(rpc).await.map_err(|e| unavailable(&e))?)
            }
            RaftKind::PreVote => {
                let rpc = decode(&req.payload).map_err(bad_payload)?;
                reply(&raft.pre_vote(rpc).await.map_err(|e| unavailable(&e))?)
            }
            RaftKind::TransferLeader => {
                let rpc = decode(&req.payload).map_err(bad_payload)?;
                reply(&raft.handle_transfer_leader(rpc).await.map_err(|e| unavailable(&e))?)
            }
            RaftKind::Unspecified => Err(Status::invalid_argument("unknown Raft request kind")),
        }
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let group = self.group(first.envelope.as_ref())?;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(bad_payload)?;
        let mut data = first.data;
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotData> {
            meta,
            snapshot: SnapshotData::new(data),
        };
        let response = group
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        reply(&response)
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
        let req = request.into_inner();
        self.check(req.envelope.as_ref())?;
        let group = req.envelope.as_ref().map_or(META_GROUP, |e| e.group_id);
        let commands: Vec<Command> = decode(&req.commands).map_err(bad_payload)?;
        let results = self
            .node
            .handle_forward(group, commands, req.hops)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let results = encode(&results).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardReply { results }))
    }

    async fn forward_frame(&self, _request: Request<FrameRequest>) -> Result<Response<FrameReply>, Status> {
        Err(Status::unimplemented(
            "forwarding client frames is not supported yet; clients route reads to a replica",
        ))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let req = request.into_inner();
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("join without a node"))?;
        let info = NodeInfo {
            cluster_addr: node.cluster_addr,
            client_addr: node.client_addr,
            admin_addr: node.admin_addr,
        };
        if !self.node.meta().raft.is_leader() {
            let mine = self.node.cluster_id();
            if !req.cluster_id.is_empty() && req.cluster_id != mine {
                return Err(Status::failed_precondition(format!(
                    "node {} belongs to cluster '{}', this is cluster '{mine}': refusing to join",
                    node.node_id, req.cluster_id
                )));
            }
            return Ok(Response::new(JoinReply {
                cluster_id: mine,
                leader: self
                    .node
                    .leader_of(META_GROUP)
                    .map(|(id, info)| node_address(id, &info)),
                joined: false,
            }));
        }
        self.node.handle_join(&req.cluster_id, node.node_id, info).await?;
        Ok(Response::new(JoinReply {
            cluster_id: self.node.cluster_id(),
            leader: None,
            joined: true,
        }))
    }

    async fn manage(&self, request: Request<ManageRequest>) -> Result<Response<ManageReply>, Status> {
        let req = request.into_inner();
        let group = self.group(req.envelope.as_ref())?;
        match decode::<GroupOp>(&req.op).map_err(bad_payload)? {
            GroupOp::TransferLeader { to } => group
                .raft
                .trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?,
        }
        Ok(Response::new(ManageReply {}))
    }
}
