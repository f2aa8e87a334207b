//! Outgoing Raft RPCs: one gRPC channel per peer address, shared by every
//! group, with the group id, cluster id and both node ids in each request.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use flymq_proto::grpc::cluster::cluster_client::ClusterClient;
use flymq_proto::grpc::cluster::{Envelope, RaftKind, RaftRequest, SnapshotChunk};
use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, Endpoint};

use super::types::{NodeId, NodeInfo, Snapshot, SnapshotData, TypeConfig, Vote, decode, encode};

/// Largest snapshot chunk sent in one gRPC message.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Channels to peers and this broker's identity, shared by every group.
pub struct Peers {
    pub node_id: NodeId,
    cluster_id: parking_lot::RwLock<String>,
    channels: parking_lot::Mutex<HashMap<String, Channel>>,
    /// Latest known cluster address of each broker, learned from the
    /// metadata group's membership. openraft keeps a replication stream (and
    /// its client) when only a member's address changes, so clients look the
    /// address up on every call instead of keeping the one they started with.
    addresses: parking_lot::RwLock<HashMap<NodeId, String>>,
}

impl Peers {
    pub fn new(node_id: NodeId, cluster_id: String) -> Self {
        Self {
            node_id,
            cluster_id: parking_lot::RwLock::new(cluster_id),
            channels: parking_lot::Mutex::new(HashMap::new()),
            addresses: parking_lot::RwLock::new(HashMap::new()),
        }
    }

    /// Records the current cluster address of brokers (from the metadata membership).
    pub fn learn_addresses(&self, nodes: impl IntoIterator<Item = (NodeId, String)>) {
        let mut addresses = self.addresses.write();
        for (id, addr) in nodes {
            if addresses.get(&id) != Some(&addr) {
                tracing::debug!(node = id, %addr, "peer address");
                addresses.insert(id, addr);
            }
        }
    }

    /// Where to reach `id`: its latest known address, else `fallback`.
    pub fn address_of(&self, id: NodeId, fallback: &str) -> String {
        self.addresses
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }

    pub fn cluster_id(&self) -> String {
        self.cluster_id.read().clone()
    }

    pub fn set_cluster_id(&self, id: String) {
        *self.cluster_id.write() = id;
    }

    /// A lazily connecting channel to `addr` (`host:port`), reused by every group.
    pub fn client(&self, addr: &str) -> Result<ClusterClient<Channel>, String> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(ClusterClient::new(channel.clone()).max_decoding_message_size(64 << 20));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(ClusterClient::new(channel).max_decoding_message_size(64 << 20))
    }

    pub fn envelope(&self, to: NodeId, group: u64) -> Envelope {
        Envelope {
            cluster_id: self.cluster_id(),
            from_node: self.node_id,
            to_node: to,
            group_id: group,
        }
    }
}

/// Creates the per-target clients of one group.
pub struct NetworkFactory {
    pub group: u64,
    pub peers: std::sync::Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        GroupClient {
            group: self.group,
            target,
            addr: node.cluster_addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// One group's connection to one peer.
pub struct GroupClient {
    group: u64,
    target: NodeId,
    addr: String,
    peers: std::sync::Arc<Peers>,
}

fn unreachable(msg: impl ToString) -> Unreachable<TypeConfig> {
    Unreachable::from_string(msg)
}

impl GroupClient {
    fn addr(&self) -> String {
        self.peers.address_of(self.target, &self.addr)
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        kind: RaftKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let addr = self.addr();
        let mut client = self
            .peers
            .client(&addr)
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let mut request = tonic::Request::new(RaftRequest {
            envelope: Some(self.peers.envelope(self.target, self.group)),
            kind: kind as i32,
            payload,
        });
        request.set_timeout(option.hard_ttl());
        let reply = client.raft(request).await.map_err(|status| {
            let msg = format!("node {} at {addr}: {}", self.target, status.message());
            match status.code() {
                tonic::Code::DeadlineExceeded | tonic::Code::Internal => {
                    RPCError::Network(NetworkError::from_string(msg))
                }
                _ => RPCError::Unreachable(unreachable(msg)),
            }
        })?;
        decode(&reply.into_inner().payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for GroupClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::AppendEntries, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::Vote, &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::PreVote, &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::TransferLeader, &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header =
            encode(&(vote, snapshot.meta.clone())).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let data = snapshot.snapshot.into_inner();
        let envelope = self.peers.envelope(self.target, self.group);
        let mut chunks = Vec::new();
        let mut first = true;
        let mut rest = data.as_slice();
        while first || !rest.is_empty() {
            let (now, later) = rest.split_at(rest.len().min(SNAPSHOT_CHUNK));
            chunks.push(SnapshotChunk {
                envelope: first.then(|| envelope.clone()),
                header: if first { header.clone() } else { Vec::new() },
                data: now.to_vec(),
            });
            first = false;
            rest = later;
        }
        let addr = self.addr();
        let mut client = self
            .peers
            .client(&addr)
            .map_err(|e| StreamingError::Unreachable(unreachable(e)))?;
        let mut request = tonic::Request::new(tokio_stream::iter(chunks));
        request.set_timeout(option.hard_ttl().max(Duration::from_secs(30)));
        let send = client.install_snapshot(request);
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = send => reply,
        };
        let reply = reply.map_err(|status| {
            StreamingError::Unreachable(unreachable(format!(
                "node {} at {addr}: {}",
                self.target,
                status.message()
            )))
        })?;
        decode(&reply.into_inner().payload).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}
