//! The inter-broker gRPC service (cluster port 9093): Raft RPCs for every
//! group, forwarded proposals, joins and group management. Every request's
//! envelope is checked: the cluster id must match and the target node id
//! must be this broker, so a stale address that now belongs to another
//! broker, or a broker of another cluster, is refused.

use std::sync::Arc;

use flymq_proto::grpc::cluster::cluster_server::Cluster;
use flymq_proto::grpc::cluster::{
    AppendMessage, Envelope, ForwardReply, ForwardRequest, FrameReply, FrameRequest, JoinReply, JoinRequest,
    ManageReply, ManageRequest, RaftKind, RaftReply, RaftRequest, SnapshotChunk,
};
use openraft::raft::AppendEntriesRequest;
use tonic::{Request, Response, Status, Streaming};

use super::append_stream;
use super::node::{ClusterNode, Group, node_address};
use super::snapshot;
use super::stages;
use super::types::{META_GROUP, NodeInfo, SnapshotData, SnapshotMeta, TypeConfig, Vote, decode, decode_shared, encode};
use crate::core::command::Command;

/// A snapshot transfer fails when no chunk arrives for this long.
const SNAPSHOT_PROGRESS: std::time::Duration = std::time::Duration::from_secs(60);
/// How long an `AppendStream` call may wait for its first message. A
/// leader sends it as it opens the call, so a call without one is a broken
/// or hostile peer holding a task open.
const FIRST_APPEND_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The next chunk of a snapshot stream, or an error when none comes in time.
async fn next_chunk(stream: &mut Streaming<SnapshotChunk>) -> Result<Option<SnapshotChunk>, Status> {
    tokio::time::timeout(SNAPSHOT_PROGRESS, stream.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "snapshot transfer stalled: no chunk for {} s",
                SNAPSHOT_PROGRESS.as_secs()
            ))
        })?
}

pub struct ClusterService {
    pub node: Arc<ClusterNode>,
}

/// Management requests sent to a group's replica (`Manage` RPC).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum GroupOp {
    /// On the leader: start a leadership transfer. Answers `()`.
    TransferLeader { to: super::types::NodeId },
    /// On any replica: the leader it knows. Answers `Option<NodeId>`.
    LeaderOf,
    /// On the leader: the read index for a linearizable read, after a
    /// quorum round confirms it still leads. Answers `u64`; UNAVAILABLE
    /// when it does not lead (see `read_barrier`).
    ReadIndex,
    /// Sent for the metadata group: this broker's cluster status, gathered
    /// from the other members as the metadata leader does (`gather`) or
    /// its own view only. Answers a protobuf `ClusterStatusReply` (see
    /// `status`).
    ClusterStatus { gather: bool },
}

/// How a payload this broker cannot decode is refused (INVALID_ARGUMENT);
/// a newer peer recognizes it as "this broker predates the request".
pub(super) const UNDECODABLE_PAYLOAD: &str = "undecodable payload";

fn bad_payload(e: std::io::Error) -> Status {
    Status::invalid_argument(format!("{UNDECODABLE_PAYLOAD}: {e}"))
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
        let me = self.node.node_id();
        if envelope.to_node != me {
            use super::identity::{broker_of, incarnation_of};
            let to = envelope.to_node;
            return Err(Status::failed_precondition(format!(
                "this address now belongs to node {} (incarnation {:08x}), not node {} (incarnation {:08x}); \
                 a broker that lost its data comes back as a new incarnation",
                broker_of(me),
                incarnation_of(me),
                broker_of(to),
                incarnation_of(to)
            )));
        }
        Ok(())
    }

    /// The group a request is for; opened on demand when it is assigned
    /// here but the reconciler has not opened it yet (a new topic).
    async fn group(&self, envelope: Option<&Envelope>) -> Result<Arc<Group>, Status> {
        self.check(envelope)?;
        let id = envelope.map_or(META_GROUP, |e| e.group_id);
        match self.node.group(id) {
            Some(group) => Ok(group),
            None => self.node.open_assigned_group(id).await.ok_or_else(|| {
                Status::not_found(format!(
                    "group {id} is not hosted on node {}",
                    super::identity::broker_of(self.node.node_id())
                ))
            }),
        }
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
        let group = self.group(req.envelope.as_ref()).await?;
        let raft = &group.raft;
        let unavailable = |e: &dyn std::fmt::Display| Status::unavailable(e.to_string());
        match RaftKind::try_from(req.kind).unwrap_or(RaftKind::Unspecified) {
            RaftKind::AppendEntries => {
                let rpc: AppendEntriesRequest<TypeConfig> = decode_shared(&req.payload).map_err(bad_payload)?;
                let index = rpc.entries.last().map_or(0, |e| e.log_id.index);
                stages::mark("append_received", group.id, index);
                let response = raft.append_entries(rpc).await.map_err(|e| unavailable(&e))?;
                stages::mark("append_answered", group.id, index);
                reply(&response)
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

    type AppendStreamStream = append_stream::Replies;

    /// Pipelined AppendEntries of one group from its leader; the first
    /// message names the group and is checked like any request.
    async fn append_stream(
        &self,
        request: Request<Streaming<AppendMessage>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(FIRST_APPEND_WAIT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "AppendEntries stream sent no first message within {} s",
                    FIRST_APPEND_WAIT.as_secs()
                ))
            })??
            .ok_or_else(|| Status::invalid_argument("empty AppendEntries stream"))?;
        let group = self.group(first.envelope.as_ref()).await?;
        let request = decode_shared(&first.payload).map_err(bad_payload)?;
        Ok(Response::new(append_stream::serve(group, request, inbound)))
    }

    /// Receives a snapshot into a file in the data directory, chunk by
    /// chunk (each must arrive within `SNAPSHOT_PROGRESS`), then installs it.
    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut stream = request.into_inner();
        let first = next_chunk(&mut stream)
            .await?
            .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let group = self.group(first.envelope.as_ref()).await?;
        let (vote, meta): (Vote, SnapshotMeta) = decode(&first.header).map_err(bad_payload)?;
        let store = self.node.store.clone();
        let group_id = group.id;
        let mut writer = tokio::task::spawn_blocking(move || snapshot::FileWriter::create(&store, group_id))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
        let mut data = first.data;
        loop {
            let (back, written) = tokio::task::spawn_blocking(move || {
                let result = writer.write(&data);
                (writer, result)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
            writer = back;
            if let Err(err) = written {
                writer.abandon();
                return Err(Status::internal(format!("cannot store the snapshot: {err}")));
            }
            match next_chunk(&mut stream).await {
                Ok(Some(chunk)) => data = chunk.data,
                Ok(None) => break,
                Err(status) => {
                    writer.abandon();
                    return Err(status);
                }
            }
        }
        let data = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot store the snapshot: {e}")))?;
        let snapshot = openraft::alias::SnapshotOf::<TypeConfig, SnapshotData> { meta, snapshot: data };
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
        let forwarded = self
            .node
            .handle_forward(group, commands, req.hops)
            .await
            .map_err(Status::unavailable)?;
        let results = encode(&forwarded.results).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardReply {
            results,
            applied_index: forwarded.applied_index,
        }))
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
        let group = self.group(req.envelope.as_ref()).await?;
        let result = match decode::<GroupOp>(&req.op).map_err(bad_payload)? {
            GroupOp::TransferLeader { to } => {
                group
                    .raft
                    .trigger()
                    .transfer_leader(to)
                    .await
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                encode(&())
            }
            GroupOp::LeaderOf => {
                use openraft::async_runtime::WatchReceiver;
                encode(&group.raft.metrics().borrow_watched().current_leader)
            }
            GroupOp::ReadIndex => encode(&super::read_barrier::serve_read_index(&group).await?),
            GroupOp::ClusterStatus { gather } => {
                let status = if gather {
                    self.node.gathered_status().await
                } else {
                    self.node.own_status_view()
                };
                Ok(prost::Message::encode_to_vec(&status))
            }
        };
        let result = result.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ManageReply { result }))
    }
}
