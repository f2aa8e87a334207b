//! Outgoing Raft RPCs: one gRPC channel per peer address, shared by every
//! group, with the group id, cluster id and both node ids in each request.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use flymq_proto::grpc::cluster::cluster_client::ClusterClient;
use flymq_proto::grpc::cluster::{Envelope, RaftKind, RaftRequest, SnapshotChunk};
use futures::Stream;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2, stream_append_sequential};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::auth::{AttachSecret, PeerAuth};
use super::stages;
use super::types::{
    NodeId, NodeInfo, Raft, Snapshot, SnapshotData, TypeConfig, Vote, decode, encode, encode_with_capacity, entry_size,
};
use crate::storage::Store;
use openraft::async_runtime::WatchReceiver;
use std::sync::Arc;

/// Most bytes of entries in one AppendEntries request (well under the
/// 64 MiB gRPC message limit; one entry is at most a few MiB).
pub(super) const MAX_APPEND_BYTES: usize = 16 << 20;

/// How many of `entries`, from the first, fit in `limit` bytes (at least one,
/// so a single large entry still goes), and their estimated encoded bytes.
pub(super) fn entries_within(entries: &[super::types::Entry], limit: usize) -> (usize, usize) {
    let mut total = 0usize;
    for (i, entry) in entries.iter().enumerate() {
        let size = entry_size(entry);
        if total + size > limit && i > 0 {
            return (i, total);
        }
        total += size;
    }
    (entries.len(), total)
}

/// A client of a peer's cluster port: the cluster secret (if any) is
/// attached to every call, TLS (if on) is in the channel.
pub type PeerClient = ClusterClient<InterceptedService<Channel, AttachSecret>>;

/// Channels to peers and this broker's identity, shared by every group.
pub struct Peers {
    pub node_id: NodeId,
    /// How calls to peers are authenticated.
    auth: PeerAuth,
    cluster_id: parking_lot::RwLock<String>,
    channels: parking_lot::Mutex<HashMap<String, Channel>>,
    /// Latest known cluster address of each broker, learned from the
    /// metadata group's membership. openraft keeps a replication stream (and
    /// its client) when only a member's address changes, so clients look the
    /// address up on every call instead of keeping the one they started with.
    addresses: parking_lot::RwLock<HashMap<NodeId, String>>,
    /// Peers that answered `Unimplemented` to an `AppendStream` call (an
    /// older version, during a rolling upgrade), and when.
    without_append_stream: parking_lot::Mutex<HashMap<String, Instant>>,
}

/// How long replication to a peer without `AppendStream` sends one request
/// at a time before trying a stream again (the peer may have been upgraded).
const APPEND_STREAM_RETRY: Duration = Duration::from_secs(60);

impl Peers {
    pub fn new(node_id: NodeId, cluster_id: String, auth: PeerAuth) -> Self {
        Self {
            node_id,
            auth,
            cluster_id: parking_lot::RwLock::new(cluster_id),
            channels: parking_lot::Mutex::new(HashMap::new()),
            addresses: parking_lot::RwLock::new(HashMap::new()),
            without_append_stream: parking_lot::Mutex::new(HashMap::new()),
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

    /// Whether replication to `addr` may use an `AppendStream` call.
    fn takes_append_stream(&self, addr: &str) -> bool {
        let mut without = self.without_append_stream.lock();
        match without.get(addr) {
            Some(since) if since.elapsed() < APPEND_STREAM_RETRY => false,
            Some(_) => {
                without.remove(addr);
                true
            }
            None => true,
        }
    }

    /// Records that `addr` answered `Unimplemented` to an `AppendStream` call.
    pub(super) fn note_no_append_stream(&self, addr: &str) {
        tracing::info!(%addr, "peer takes no AppendEntries streams (an older version); sending one request at a time");
        self.without_append_stream
            .lock()
            .insert(addr.to_owned(), Instant::now());
    }

    /// How this broker authenticates to peers (and checks them).
    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// A lazily connecting channel to `addr` (`host:port`), reused by every
    /// group; over mutual TLS when TLS is on.
    pub fn client(&self, addr: &str) -> Result<PeerClient, String> {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(addr) {
            return Ok(self.wrap(channel.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr}: {e}"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = match &self.auth.tls {
            Some(tls) => flymq_security::tls::grpc::lazy_channel_on(endpoint, tls.clone()),
            None => endpoint.connect_lazy(),
        };
        channels.insert(addr.to_owned(), channel.clone());
        Ok(self.wrap(channel))
    }

    fn wrap(&self, channel: Channel) -> PeerClient {
        ClusterClient::with_interceptor(channel, self.auth.attach()).max_decoding_message_size(64 << 20)
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
    /// Where snapshots are read from when sent.
    pub store: Store,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        GroupClient {
            group: self.group,
            target,
            addr: node.cluster_addr.clone(),
            peers: self.peers.clone(),
            store: self.store.clone(),
        }
    }
}

/// One group's connection to one peer.
pub struct GroupClient {
    group: u64,
    target: NodeId,
    addr: String,
    peers: std::sync::Arc<Peers>,
    store: Store,
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
        encoded_size: usize,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let payload = encode_with_capacity(req, encoded_size).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let addr = self.addr();
        let mut client = self
            .peers
            .client(&addr)
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        let mut request = tonic::Request::new(RaftRequest {
            envelope: Some(self.peers.envelope(self.target, self.group)),
            kind: kind as i32,
            payload: payload.into(),
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

    /// Replication and heartbeats: one pipelined `AppendStream` call
    /// (append_stream.rs), or one call per request to a peer that does not
    /// take streams.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let addr = self.addr();
        if !self.peers.takes_append_stream(&addr) {
            return stream_append_sequential(self, input, option);
        }
        let (peers, target, group) = (self.peers.clone(), self.target, self.group);
        Box::pin(async move {
            let answers = super::append_stream::send(peers, target, group, addr, input, option).await?;
            Ok(answers as BoxStream<'s, _>)
        })
    }

    /// One request of the one-at-a-time fallback (see `stream_append`).
    /// Sends at most `MAX_APPEND_BYTES` of entries per request: a longer
    /// request is cut to a prefix, and its success reported as partial so
    /// openraft sends the rest next (a far-behind follower makes progress
    /// whatever the size of the entries).
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (keep, entries_bytes) = entries_within(&rpc.entries, MAX_APPEND_BYTES);
        let partial = keep < rpc.entries.len();
        rpc.entries.truncate(keep);
        let last = rpc.entries.last().map(|e| e.log_id);
        let index = last.map_or(0, |id| id.index);
        stages::mark("append_sent", self.group, index);
        let response: AppendEntriesResponse<TypeConfig> = self
            .call(RaftKind::AppendEntries, &rpc, 256 + entries_bytes, &option)
            .await?;
        stages::mark("append_replied", self.group, index);
        Ok(match response {
            AppendEntriesResponse::Success if partial => AppendEntriesResponse::PartialSuccess(last),
            other => other,
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::Vote, &rpc, 256, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::PreVote, &rpc, 256, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(RaftKind::TransferLeader, &req, 256, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let header =
            encode(&(vote, snapshot.meta.clone())).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let envelope = self.peers.envelope(self.target, self.group);
        // Chunks are read on a blocking thread, a few at a time: memory stays
        // bounded whatever the snapshot's size. No overall deadline: the
        // transfer lasts as long as it progresses (HTTP/2 keep-alive and the
        // receiver's per-chunk limit catch a stalled peer).
        let mut chunks = super::snapshot::stream(self.store.clone(), snapshot.snapshot);
        let mut first = Some((envelope, header));
        let messages = futures::stream::poll_fn(move |cx| {
            chunks.poll_recv(cx).map(|next| match next {
                Some(Ok(data)) => Some(match first.take() {
                    Some((envelope, header)) => SnapshotChunk {
                        envelope: Some(envelope),
                        header,
                        data,
                    },
                    None => SnapshotChunk {
                        envelope: None,
                        header: Vec::new(),
                        data,
                    },
                }),
                Some(Err(err)) => {
                    // Ends the stream early: the receiver finds no end marker and refuses it.
                    tracing::warn!(error = %err, "reading a snapshot to send failed");
                    None
                }
                None => None,
            })
        });
        let addr = self.addr();
        let mut client = self
            .peers
            .client(&addr)
            .map_err(|e| StreamingError::Unreachable(unreachable(e)))?;
        let send = client.install_snapshot(tonic::Request::new(messages));
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

/// Keeps the peer address book in step with the metadata membership, which
/// is where a broker that restarted on a new address is re-registered.
pub(super) async fn learn_peer_addresses(raft: Raft, peers: Arc<Peers>) {
    // Server metrics change with the membership, not with every heartbeat.
    let mut metrics = raft.server_metrics();
    let mut seen = None;
    loop {
        let membership = metrics.borrow_watched().membership_config.clone();
        if seen.as_ref() != Some(membership.log_id()) {
            seen = Some(*membership.log_id());
            peers.learn_addresses(
                membership
                    .membership()
                    .nodes()
                    .map(|(id, info)| (*id, info.cluster_addr.clone())),
            );
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use flymq_proto::grpc::cluster::cluster_server::{Cluster, ClusterServer};
    use flymq_proto::grpc::cluster::{
        AppendMessage, ForwardReply, ForwardRequest, FrameReply, FrameRequest, JoinReply, JoinRequest, ManageReply,
        ManageRequest, RaftReply,
    };
    use futures::StreamExt;
    use tonic::{Request, Response, Status, Streaming};

    use super::*;

    /// A peer of an older version: `AppendStream` unknown, every `Raft`
    /// call (AppendEntries only in this test) answered with success.
    #[derive(Clone, Default)]
    struct OldPeer {
        appends: Arc<AtomicUsize>,
    }

    fn unimplemented<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("unknown method"))
    }

    #[tonic::async_trait]
    impl Cluster for OldPeer {
        type AppendStreamStream = super::super::append_stream::Replies;

        async fn raft(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
            assert_eq!(request.get_ref().kind, RaftKind::AppendEntries as i32);
            self.appends.fetch_add(1, Ordering::SeqCst);
            let payload = encode(&AppendEntriesResponse::<TypeConfig>::Success).expect("encode");
            Ok(Response::new(RaftReply { payload }))
        }

        async fn append_stream(
            &self,
            _: Request<Streaming<AppendMessage>>,
        ) -> Result<Response<Self::AppendStreamStream>, Status> {
            unimplemented()
        }

        async fn install_snapshot(&self, _: Request<Streaming<SnapshotChunk>>) -> Result<Response<RaftReply>, Status> {
            unimplemented()
        }

        async fn forward(&self, _: Request<ForwardRequest>) -> Result<Response<ForwardReply>, Status> {
            unimplemented()
        }

        async fn forward_frame(&self, _: Request<FrameRequest>) -> Result<Response<FrameReply>, Status> {
            unimplemented()
        }

        async fn join(&self, _: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
            unimplemented()
        }

        async fn manage(&self, _: Request<ManageRequest>) -> Result<Response<ManageReply>, Status> {
            unimplemented()
        }
    }

    fn append(index: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new(1, 1),
            prev_log_id: (index > 1).then(|| openraft::testing::log_id::<TypeConfig>(1, 1, index - 1)),
            leader_commit: None,
            entries: vec![openraft::testing::blank_ent::<TypeConfig>(1, 1, index)],
        }
    }

    /// During a rolling upgrade a leader meets followers without
    /// `AppendStream`: the first session fails with a clear error, the next
    /// ones send one `Raft` call per request, and every request is answered.
    #[tokio::test]
    async fn a_peer_without_append_streams_gets_one_request_at_a_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let peer = OldPeer::default();
        let server = tonic::transport::Server::builder()
            .add_service(ClusterServer::new(peer.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        let dir = tempfile::tempdir().expect("temp dir");
        let peers = Arc::new(Peers::new(1, "cluster".into(), PeerAuth::default()));
        let mut client = GroupClient {
            group: 5,
            target: 2,
            addr: addr.clone(),
            peers: peers.clone(),
            store: Store::open(dir.path()).expect("store"),
        };
        let option = RPCOption::new(Duration::from_secs(5));

        match client
            .stream_append(futures::stream::iter(vec![append(1)]), option.clone())
            .await
        {
            Ok(_) => panic!("an old peer took an AppendEntries stream"),
            Err(err) => assert!(err.to_string().contains("does not take AppendEntries streams"), "{err}"),
        }
        assert!(!peers.takes_append_stream(&addr));

        let answers: Vec<_> = match client
            .stream_append(futures::stream::iter(vec![append(1), append(2)]), option)
            .await
        {
            Ok(answers) => answers.collect().await,
            Err(err) => panic!("one request at a time failed: {err}"),
        };
        let matched: Vec<_> = answers
            .into_iter()
            .map(|answer| answer.expect("no transport error").expect("accepted"))
            .collect();
        assert_eq!(
            matched,
            vec![
                Some(openraft::testing::log_id::<TypeConfig>(1, 1, 1)),
                Some(openraft::testing::log_id::<TypeConfig>(1, 1, 2))
            ]
        );
        assert_eq!(peer.appends.load(Ordering::SeqCst), 2);
    }
}
