//! `ClusterNode`: this broker's part in the cluster. It owns the Raft groups
//! (the metadata group and the partition groups this broker holds a replica
//! of), routes proposals to group leaders, joins the cluster through the
//! seeds, and keeps partition groups in line with the replica assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::impls::OneshotResponder;
use tokio::sync::{mpsc, oneshot};

use super::log_store::{GroupLogStore, WalSyncer};
use super::network::{NetworkFactory, Peers};
use super::state_machine::{GroupStateMachine, SharedState};
use super::types::{
    CommandBatch, CommandResults, META_GROUP, NodeId, NodeInfo, Raft, TypeConfig, decode, encode, from_wire,
    partition_group, split_group,
};
use crate::core::command::{Applied, Command};
use crate::core::error::{BrokerError, BrokerResult};
use crate::observe::metrics::{Metrics, RaftFollowerLabels, RaftGroupLabels};
use crate::storage::{CF_RAFT_META, Store};
use flymq_proto::grpc::cluster::{ForwardRequest, JoinRequest, ManageRequest, NodeAddress};

/// Most commands in one Raft entry.
const MAX_BATCH_COMMANDS: usize = 4096;
/// Most Raft entries of one group waiting for commit at once.
const MAX_IN_FLIGHT_BATCHES: usize = 64;
/// How long a proposal waits for a group to elect a leader.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How often partition groups are checked against the assignment.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// A replica dropped from a partition's assignment deletes its copy after this long.
const REMOVED_REPLICA_GRACE: Duration = Duration::from_secs(15);
const CLUSTER_ID_KEY: &[u8] = b"cluster_id";

/// A follower at most this many entries behind the leader counts as in sync.
const IN_SYNC_LAG: u64 = 1000;

/// One group's state as this broker sees it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// This broker holds a replica (else only the assignment is known).
    pub local: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    /// Voters caught up with the leader (known on the leader; otherwise all voters while a leader exists).
    pub in_sync: Vec<NodeId>,
    pub committed: u64,
    pub applied: u64,
}

/// Cluster-mode settings, from the broker configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: NodeId,
    /// Expected cluster id; `None` learns it from the cluster (or creates one on node 0).
    pub cluster_id: Option<String>,
    pub me: NodeInfo,
    /// `host:port` cluster addresses (DNS names allowed) of brokers to join through.
    pub seeds: Vec<String>,
    pub replication_factor: u32,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Entries since the last snapshot before a new one is built and the log purged.
    pub snapshot_logs: u64,
}

/// Management requests executed on a group's leader.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum GroupOp {
    TransferLeader { to: NodeId },
}

/// What a Join request to one broker achieved.
enum JoinOutcome {
    Joined,
    /// That broker is not the metadata leader; it may name the one that is.
    NotLeader(Option<NodeAddress>),
}

struct Proposal {
    command: Command,
    reply: oneshot::Sender<BrokerResult<Applied>>,
}

/// One Raft group on this broker.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    log: GroupLogStore,
    proposals: mpsc::UnboundedSender<Proposal>,
    /// When the assignment stopped listing this broker (partition groups).
    dropped_since: parking_lot::Mutex<Option<Instant>>,
}

pub struct ClusterNode {
    pub settings: ClusterSettings,
    store: Store,
    shared: Arc<SharedState>,
    metrics: Arc<Metrics>,
    pub peers: Arc<Peers>,
    syncer: WalSyncer,
    raft_config: Arc<openraft::Config>,
    groups: parking_lot::RwLock<HashMap<u64, Arc<Group>>>,
    /// Serialises membership changes this broker makes as a leader.
    membership: tokio::sync::Mutex<()>,
    /// Groups with a membership change in progress (so the reconciler does not start another).
    changing: parking_lot::Mutex<BTreeSet<u64>>,
    joined: std::sync::atomic::AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster storage: {0}")]
    Storage(String),
    #[error(
        "this data directory belongs to cluster '{stored}' but the configuration says cluster_id '{configured}'; \
         point data_dir at the right directory or fix FLYMQ_CLUSTER_ID"
    )]
    WrongCluster { stored: String, configured: String },
    #[error("cannot start Raft group {group}: {message}")]
    Raft { group: u64, message: String },
}

fn storage_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Storage(e.to_string())
}

pub fn node_address(id: NodeId, info: &NodeInfo) -> NodeAddress {
    NodeAddress {
        node_id: id,
        cluster_addr: info.cluster_addr.clone(),
        client_addr: info.client_addr.clone(),
        admin_addr: info.admin_addr.clone(),
    }
}

fn not_leader(leader: Option<&NodeInfo>) -> BrokerError {
    match leader {
        Some(info) => BrokerError::NotLeader(format!("leader_addr={}", info.client_addr)),
        None => BrokerError::NotLeader("no leader elected".into()),
    }
}

impl ClusterNode {
    /// Opens (or creates) this broker's cluster state and starts the metadata group.
    pub async fn start(
        settings: ClusterSettings,
        shared: Arc<SharedState>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ClusterError> {
        let store = shared.store.clone();
        let stored_id = {
            let cf = store.cf(CF_RAFT_META);
            store
                .db()
                .get_cf(&cf, CLUSTER_ID_KEY)
                .map_err(storage_err)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        if let (Some(stored), Some(configured)) = (&stored_id, &settings.cluster_id)
            && stored != configured
        {
            return Err(ClusterError::WrongCluster {
                stored: stored.clone(),
                configured: configured.clone(),
            });
        }
        let raft_config = openraft::Config {
            cluster_name: "flymq".into(),
            heartbeat_interval: settings.heartbeat_ms,
            election_timeout_min: settings.election_timeout_ms,
            election_timeout_max: settings.election_timeout_ms * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_logs),
            max_in_snapshot_log_to_keep: settings.snapshot_logs.min(1000),
            install_snapshot_timeout: 30_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft {
            group: META_GROUP,
            message: e.to_string(),
        })?;
        let cluster_id = stored_id
            .clone()
            .or_else(|| settings.cluster_id.clone())
            .unwrap_or_default();
        let node = Arc::new(Self {
            peers: Arc::new(Peers::new(settings.node_id, cluster_id)),
            syncer: WalSyncer::start(store.clone()).map_err(storage_err)?,
            settings,
            store,
            shared,
            metrics,
            raft_config: Arc::new(raft_config),
            groups: parking_lot::RwLock::new(HashMap::new()),
            membership: tokio::sync::Mutex::new(()),
            changing: parking_lot::Mutex::new(BTreeSet::new()),
            joined: std::sync::atomic::AtomicBool::new(stored_id.is_some()),
        });
        let meta = node.open_group(META_GROUP).await?;
        if stored_id.is_none() && node.settings.node_id == 0 && !meta.log.has_state().map_err(storage_err)? {
            let id = node
                .settings
                .cluster_id
                .clone()
                .unwrap_or_else(|| format!("flymq-{:016x}", rand::random::<u64>()));
            node.stamp_cluster_id(&id)?;
            let members = BTreeMap::from([(node.settings.node_id, node.settings.me.clone())]);
            meta.raft.initialize(members).await.map_err(|e| ClusterError::Raft {
                group: META_GROUP,
                message: e.to_string(),
            })?;
            node.joined.store(true, std::sync::atomic::Ordering::SeqCst);
            tracing::info!(cluster_id = %id, "initialised a new cluster as node 0");
        }
        // Partition groups this broker already holds.
        node.reconcile_groups().await;
        Ok(node)
    }

    fn stamp_cluster_id(&self, id: &str) -> Result<(), ClusterError> {
        let cf = self.store.cf(CF_RAFT_META);
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(&cf, CLUSTER_ID_KEY, id.as_bytes());
        self.store.write(batch, true).map_err(storage_err)?;
        self.peers.set_cluster_id(id.to_owned());
        Ok(())
    }

    pub fn cluster_id(&self) -> String {
        self.peers.cluster_id()
    }

    /// Stamps the cluster id of the cluster adding this (not yet joined) broker.
    pub fn adopt_cluster_id(&self, id: &str) -> Result<(), ClusterError> {
        if self.cluster_id().is_empty() {
            tracing::info!(cluster_id = id, "being added to cluster");
            self.stamp_cluster_id(id)?;
        }
        Ok(())
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    pub fn has_joined(&self) -> bool {
        self.joined.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn group(&self, id: u64) -> Option<Arc<Group>> {
        self.groups.read().get(&id).cloned()
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        let mut all: Vec<_> = self.groups.read().values().cloned().collect();
        all.sort_by_key(|g| g.id);
        all
    }

    pub fn meta(&self) -> Arc<Group> {
        // The metadata group is opened in `start` and never removed.
        self.group(META_GROUP)
            .unwrap_or_else(|| unreachable!("metadata group missing"))
    }

    async fn open_group(self: &Arc<Self>, id: u64) -> Result<Arc<Group>, ClusterError> {
        if let Some(existing) = self.group(id) {
            return Ok(existing);
        }
        let log = GroupLogStore::new(id, self.store.clone(), self.syncer.clone());
        let sm = GroupStateMachine::new(id, self.shared.clone());
        let network = NetworkFactory {
            group: id,
            peers: self.peers.clone(),
        };
        let raft = Raft::new(
            self.settings.node_id,
            self.raft_config.clone(),
            network,
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| ClusterError::Raft {
            group: id,
            message: e.to_string(),
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let group = Arc::new(Group {
            id,
            raft,
            log,
            proposals: tx,
            dropped_since: parking_lot::Mutex::new(None),
        });
        self.groups.write().insert(id, group.clone());
        tokio::spawn(self.clone().run_proposer(group.clone(), rx));
        if id == META_GROUP {
            tokio::spawn(learn_peer_addresses(group.raft.clone(), self.peers.clone()));
        }
        tokio::spawn(count_leader_changes(
            group.raft.clone(),
            self.metrics.clone(),
            self.group_labels(id),
        ));
        Ok(group)
    }

    /// What this broker knows of one group's state.
    pub fn group_view(&self, group: u64) -> GroupView {
        let Some(g) = self.group(group) else {
            let replicas = self.replicas_of(group);
            return GroupView {
                local: false,
                leader: None,
                term: 0,
                voters: replicas,
                in_sync: Vec::new(),
                committed: 0,
                applied: 0,
            };
        };
        let m = g.raft.metrics().borrow_watched().clone();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let in_sync = match &m.replication {
            // The leader knows how far each follower got.
            Some(progress) => voters
                .iter()
                .copied()
                .filter(|id| {
                    *id == self.settings.node_id
                        || progress
                            .get(id)
                            .and_then(|p| p.as_ref())
                            .is_some_and(|log_id| log_id.index + IN_SYNC_LAG >= last)
                })
                .collect(),
            None if m.current_leader.is_some() => voters.clone(),
            None => Vec::new(),
        };
        GroupView {
            local: true,
            leader: m.current_leader,
            term: m.current_term,
            voters,
            in_sync,
            committed: m.local_committed.map_or(0, |l| l.index),
            applied: m.last_applied.map_or(0, |l| l.index),
        }
    }

    /// How metrics name a group: `meta` or `<topic>/<partition>`.
    fn group_labels(&self, group: u64) -> RaftGroupLabels {
        group_labels(group, &self.topic_names())
    }

    fn topic_names(&self) -> HashMap<u32, String> {
        self.shared
            .catalog
            .topics()
            .iter()
            .map(|t| (t.record.id, t.record.name.clone()))
            .collect()
    }

    /// Sets the Raft gauges from every hosted group (when metrics are scraped).
    pub fn refresh_metrics(&self) {
        let metrics = &self.metrics;
        metrics.raft_is_leader.clear();
        metrics.raft_term.clear();
        metrics.raft_apply_lag.clear();
        metrics.raft_replication_lag.clear();
        let names = self.topic_names();
        for group in self.groups() {
            let m = group.raft.metrics().borrow_watched().clone();
            let labels = group_labels(group.id, &names);
            let leader = m.current_leader == Some(self.settings.node_id);
            metrics.raft_is_leader.get_or_create(&labels).set(i64::from(leader));
            metrics.raft_term.get_or_create(&labels).set(m.current_term as i64);
            let committed = m.local_committed.map_or(0, |l| l.index);
            let applied = m.last_applied.map_or(0, |l| l.index);
            metrics
                .raft_apply_lag
                .get_or_create(&labels)
                .set(committed.saturating_sub(applied) as i64);
            let last = m.last_log_index.unwrap_or(0);
            for (follower, matched) in m.replication.iter().flatten() {
                if *follower == self.settings.node_id {
                    continue;
                }
                let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                metrics
                    .raft_replication_lag
                    .get_or_create(&RaftFollowerLabels {
                        group: labels.group.clone(),
                        follower: *follower,
                    })
                    .set(behind as i64);
            }
        }
    }

    /// `leader`, `follower`, `candidate` or `learner` in `group` (`none` when not hosted).
    pub fn role_of(&self, group: u64) -> &'static str {
        let Some(g) = self.group(group) else { return "none" };
        match g.raft.metrics().borrow_watched().state {
            openraft::ServerState::Leader => "leader",
            openraft::ServerState::Follower => "follower",
            openraft::ServerState::Candidate => "candidate",
            openraft::ServerState::Learner => "learner",
            openraft::ServerState::Shutdown => "shutdown",
        }
    }

    // ---- proposals ----

    /// Queues a command for `group`; queueing is synchronous so the commands
    /// of one connection keep their order.
    pub fn submit(self: &Arc<Self>, group: u64, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        let (reply, rx) = oneshot::channel();
        match self.group(group) {
            Some(g) => {
                if let Err(err) = g.proposals.send(Proposal { command, reply }) {
                    let _ = err.0.reply.send(Err(BrokerError::ShuttingDown));
                }
            }
            None => {
                // Not a replica here: send it to a broker that holds the partition.
                let node = self.clone();
                tokio::spawn(async move {
                    let result = node.forward_to_replicas(group, vec![command], 0).await;
                    let _ = reply.send(result.and_then(|mut r| r.pop().unwrap_or(Err(BrokerError::ShuttingDown))));
                });
            }
        }
        rx
    }

    pub async fn propose(self: &Arc<Self>, group: u64, command: Command) -> BrokerResult<Applied> {
        self.submit(group, command)
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
    }

    /// The leader of `group` as this broker knows it, with its address.
    pub fn leader_of(&self, group: u64) -> Option<(NodeId, NodeInfo)> {
        let g = self.group(group)?;
        let metrics = g.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        let info = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .or_else(|| self.node_info(leader))?;
        Some((leader, info))
    }

    /// A broker's addresses from the metadata group's membership.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        let meta = self.meta();
        let metrics = meta.raft.metrics().borrow_watched().clone();
        metrics.membership_config.membership().get_node(&id).cloned()
    }

    /// Every broker in the metadata membership: id, addresses, voter or not.
    pub fn members(&self) -> Vec<(NodeId, NodeInfo, bool)> {
        let metrics = self.meta().raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, info)| (*id, info.clone(), voters.contains(id)))
            .collect()
    }

    async fn run_proposer(self: Arc<Self>, group: Arc<Group>, mut rx: mpsc::UnboundedReceiver<Proposal>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_BATCHES));
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH_COMMANDS {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            if !group.raft.is_leader() && group.raft.metrics().borrow_watched().current_leader.is_none() {
                let _ = group
                    .raft
                    .wait(Some(LEADER_WAIT))
                    .metrics(|m| m.current_leader.is_some(), "a leader is elected")
                    .await;
            }
            if group.raft.is_leader() {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let (responder, done) = OneshotResponder::new_pair();
                if group
                    .raft
                    .client_write_ff(CommandBatch(commands), Some(responder))
                    .await
                    .is_err()
                {
                    answer_all(replies, Err(BrokerError::ShuttingDown));
                    continue;
                }
                let node = self.clone();
                let group_id = group.id;
                let proposed = Instant::now();
                tokio::spawn(async move {
                    let result = done.await;
                    if matches!(result, Ok(Ok(_))) {
                        node.metrics
                            .raft_commit_latency
                            .observe(proposed.elapsed().as_secs_f64());
                    }
                    let outcome = match result {
                        Ok(Ok(response)) => Ok(response.data),
                        Ok(Err(ClientWriteError::ForwardToLeader(fwd))) => {
                            // Never point a client back at this broker: a
                            // leader that cannot take writes (cut off, or
                            // stepping down) says no leader is known yet.
                            let me = node.settings.node_id;
                            tracing::debug!(group = group_id, reason = ?fwd.reason, "write refused: forward to leader");
                            let hint = match (fwd.leader_id, fwd.leader_node) {
                                (Some(id), Some(info)) if id != me => Some(info),
                                _ => node.leader_of(group_id).filter(|(id, _)| *id != me).map(|(_, i)| i),
                            };
                            Err(not_leader(hint.as_ref()))
                        }
                        Ok(Err(other)) => Err(BrokerError::Remote(other.to_string())),
                        Err(_) => Err(BrokerError::ShuttingDown),
                    };
                    answer(replies, outcome);
                    drop(permit);
                });
            } else {
                // Forward in order; the leader batches them again.
                let outcome = match self.leader_of(group.id) {
                    Some((leader, info)) => self.forward(leader, &info, group.id, commands, 0).await,
                    None => Err(not_leader(None)),
                };
                match outcome {
                    Ok(results) => answer_each(replies, results.into_iter().map(from_wire).collect()),
                    Err(err) => answer_all(replies, Err(err)),
                }
            }
        }
    }

    async fn forward(
        &self,
        target: NodeId,
        info: &NodeInfo,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> BrokerResult<CommandResults> {
        let payload = encode(&commands).map_err(|e| BrokerError::Remote(e.to_string()))?;
        let mut client = self.peers.client(&info.cluster_addr).map_err(BrokerError::Remote)?;
        let mut request = tonic::Request::new(ForwardRequest {
            envelope: Some(self.peers.envelope(target, group)),
            commands: payload,
            hops: hops + 1,
        });
        request.set_timeout(Duration::from_secs(30));
        let reply = client.forward(request).await.map_err(|status| {
            if status.message().starts_with("not leader") {
                BrokerError::NotLeader(status.message().trim_start_matches("not leader: ").to_owned())
            } else {
                BrokerError::Remote(format!(
                    "forwarding to node {target} at {} failed: {}",
                    info.cluster_addr,
                    status.message()
                ))
            }
        })?;
        decode(&reply.into_inner().results).map_err(|e| BrokerError::Remote(e.to_string()))
    }

    /// Sends commands of a group this broker has no replica of to one that has.
    async fn forward_to_replicas(
        &self,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> BrokerResult<Vec<BrokerResult<Applied>>> {
        let replicas = self.replicas_of(group);
        if replicas.is_empty() {
            return Err(BrokerError::NotLeader("no broker holds this partition yet".into()));
        }
        let mut last = None;
        for id in replicas {
            let Some(info) = self.node_info(id) else { continue };
            match self.forward(id, &info, group, commands.clone(), hops).await {
                Ok(results) => return Ok(results.into_iter().map(from_wire).collect()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| not_leader(None)))
    }

    /// Handles a forwarded batch: propose it here if this broker leads the
    /// group, else pass it on once.
    pub async fn handle_forward(
        self: &Arc<Self>,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> BrokerResult<CommandResults> {
        if let Some(g) = self.group(group) {
            if g.raft.is_leader() || hops < 2 {
                let receivers: Vec<_> = commands.into_iter().map(|c| self.submit(group, c)).collect();
                let mut results = Vec::with_capacity(receivers.len());
                for rx in receivers {
                    let result = rx.await.unwrap_or(Err(BrokerError::ShuttingDown));
                    results.push(result.map_err(|e| e.to_string()));
                }
                return Ok(results);
            }
            return Err(not_leader(self.leader_of(group).as_ref().map(|(_, i)| i)));
        }
        if hops >= 2 {
            return Err(not_leader(None));
        }
        Ok(self
            .forward_to_replicas(group, commands, hops)
            .await?
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect())
    }

    // ---- assignment ----

    /// The assigned replicas of a partition group (empty for unknown groups).
    pub fn replicas_of(&self, group: u64) -> Vec<NodeId> {
        if group == META_GROUP {
            return self.members().into_iter().filter(|m| m.2).map(|m| m.0).collect();
        }
        let Some((topic_id, partition)) = split_group(group) else {
            return Vec::new();
        };
        self.shared
            .catalog
            .topics()
            .into_iter()
            .find(|t| t.record.id == topic_id)
            .and_then(|t| t.record.replicas.get(partition as usize).cloned())
            .unwrap_or_default()
    }

    /// Replica sets for a new topic: `min(rf, voters)` brokers per partition,
    /// rotating the first (preferred leader) so leaders spread evenly.
    pub fn assign(&self, name: &str, partitions: u32, replication_factor: u32) -> BrokerResult<Vec<Vec<NodeId>>> {
        let voters: Vec<NodeId> = self.replicas_of(META_GROUP);
        if voters.is_empty() {
            return Err(BrokerError::NotLeader("no leader elected".into()));
        }
        // The configured default is capped by the brokers there are; an explicit factor is not.
        let rf = match replication_factor {
            0 => (self.settings.replication_factor.max(1) as usize).min(voters.len()),
            n => n as usize,
        };
        if rf > voters.len() {
            return Err(BrokerError::InvalidArgument(format!(
                "replication factor {rf} for topic '{name}' is larger than the {} brokers in the cluster",
                voters.len()
            )));
        }
        let offset = crate::core::partitioner::partition_for_key(name.as_bytes(), voters.len() as u32) as usize;
        Ok((0..partitions as usize)
            .map(|p| (0..rf).map(|r| voters[(offset + p + r) % voters.len()]).collect())
            .collect())
    }

    /// Starts partition groups this broker is assigned, initialises new ones
    /// it is the preferred leader of, stops ones it is no longer part of, and
    /// (as a group leader) brings memberships in line with the assignment.
    pub async fn reconcile_groups(self: &Arc<Self>) {
        let me = self.settings.node_id;
        let mut wanted: HashMap<u64, Vec<NodeId>> = HashMap::new();
        for topic in self.shared.catalog.topics() {
            for (p, replicas) in topic.record.replicas.iter().enumerate() {
                wanted.insert(partition_group(topic.record.id, p as u32), replicas.clone());
            }
        }
        for (&id, replicas) in &wanted {
            if !replicas.contains(&me) {
                // Still leading a group this broker was moved off: hand the
                // replicas over (the new voters exclude it; it then steps down).
                if let Some(group) = self.group(id)
                    && group.raft.is_leader()
                {
                    self.align_membership(&group, replicas);
                }
                continue;
            }
            let group = match self.open_group(id).await {
                Ok(g) => g,
                Err(err) => {
                    tracing::error!(group = id, error = %err, "cannot start partition group");
                    continue;
                }
            };
            *group.dropped_since.lock() = None;
            if replicas.first() == Some(&me)
                && !group.raft.is_initialized().await.unwrap_or(true)
                && !group.log.has_state().unwrap_or(true)
            {
                let members: Option<BTreeMap<NodeId, NodeInfo>> = replicas
                    .iter()
                    .map(|id| self.node_info(*id).map(|info| (*id, info)))
                    .collect();
                if let Some(members) = members
                    && let Err(err) = group.raft.initialize(members).await
                {
                    tracing::warn!(group = id, error = %err, "initialising partition group failed");
                }
            }
            if group.raft.is_leader() {
                self.align_membership(&group, replicas);
            }
        }
        for group in self.groups() {
            if group.id == META_GROUP {
                continue;
            }
            let keep = wanted.get(&group.id).is_some_and(|r| r.contains(&me));
            if keep {
                continue;
            }
            let deleted = !wanted.contains_key(&group.id);
            let expired = {
                let mut since = group.dropped_since.lock();
                since.get_or_insert_with(Instant::now).elapsed() > REMOVED_REPLICA_GRACE
            };
            if deleted || (expired && !group.raft.is_leader()) {
                self.groups.write().remove(&group.id);
                let _ = group.raft.shutdown().await;
                if let Err(err) = group.log.destroy() {
                    tracing::warn!(group = group.id, error = %err, "removing a dropped group's log failed");
                }
                tracing::info!(
                    group = group.id,
                    deleted,
                    "stopped partition group (no longer a replica here)"
                );
            }
        }
        if self.meta().raft.is_leader() {
            let voters: BTreeSet<NodeId> = self.replicas_of(META_GROUP).into_iter().collect();
            let meta = self.meta();
            self.sync_addresses(&meta, &voters);
        }
    }

    /// As the leader of a partition group: add missing replicas (as learners
    /// first, so they catch up), then make the voters exactly the assignment.
    fn align_membership(self: &Arc<Self>, group: &Arc<Group>, replicas: &[NodeId]) {
        let metrics = group.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let desired: BTreeSet<NodeId> = replicas.iter().copied().collect();
        if voters == desired || desired.is_empty() {
            self.sync_addresses(group, &voters);
            return;
        }
        if !self.changing.lock().insert(group.id) {
            return;
        }
        let node = self.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let _guard = node.membership.lock().await;
            let mut ok = true;
            for id in desired.difference(&voters) {
                let Some(info) = node.node_info(*id) else {
                    ok = false;
                    break;
                };
                if let Err(err) = group.raft.add_learner(*id, info, true).await {
                    tracing::warn!(group = group.id, node = id, error = %err, "adding a replica failed");
                    ok = false;
                    break;
                }
            }
            if ok {
                match group
                    .raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(desired.clone()), false)
                    .await
                {
                    Ok(_) => tracing::info!(group = group.id, voters = ?desired, "partition replicas changed"),
                    Err(err) => tracing::warn!(group = group.id, error = %err, "changing partition replicas failed"),
                }
            }
            node.changing.lock().remove(&group.id);
        });
    }

    /// As a group leader: update members whose address changed (a pod that
    /// restarted with a new POD_IP) from the metadata membership.
    fn sync_addresses(self: &Arc<Self>, group: &Arc<Group>, ids: &BTreeSet<NodeId>) {
        let metrics = group.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let mut changed = BTreeMap::new();
        for id in ids {
            let (Some(current), Some(latest)) = (membership.get_node(id), self.node_info(*id)) else {
                continue;
            };
            if *current != latest {
                changed.insert(*id, latest);
            }
        }
        if changed.is_empty() || group.id == META_GROUP || !self.changing.lock().insert(group.id) {
            return;
        }
        let node = self.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let _guard = node.membership.lock().await;
            if let Err(err) = group
                .raft
                .change_membership(ChangeMembers::SetNodes(changed), false)
                .await
            {
                tracing::warn!(group = group.id, error = %err, "updating replica addresses failed");
            }
            node.changing.lock().remove(&group.id);
        });
    }

    /// Runs `reconcile_groups` whenever topics change, and every second.
    pub async fn run_reconciler(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let mut topics = self.shared.catalog.watch_topics();
        loop {
            tokio::select! {
                _ = shutdown.recv() => break,
                _ = topics.changed() => {}
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
            self.reconcile_groups().await;
        }
    }

    // ---- membership of the cluster ----

    /// Joins the cluster through the seeds (or, already a member, makes sure
    /// the cluster has this broker's current address). Retries until it works
    /// or shutdown.
    pub async fn run_join(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.try_join().await {
                Ok(()) => {
                    self.joined.store(true, std::sync::atomic::Ordering::SeqCst);
                    return;
                }
                Err(err) => tracing::info!(error = %err, "joining the cluster; retrying"),
            }
            tokio::select! {
                _ = shutdown.recv() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(3));
        }
    }

    /// Whether the cluster's membership already has this broker at its current address.
    fn membership_is_current(&self) -> bool {
        let me = self.settings.node_id;
        self.members()
            .iter()
            .any(|(id, info, voter)| *id == me && *voter && *info == self.settings.me)
    }

    async fn try_join(self: &Arc<Self>) -> Result<(), String> {
        if self.has_joined() && self.membership_is_current() {
            return Ok(());
        }
        // A leader that restarted with a new address records it itself.
        if self.meta().raft.is_leader() {
            let me = self.settings.me.clone();
            return self
                .handle_join(&self.cluster_id(), self.settings.node_id, me)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let mut targets: Vec<String> = Vec::new();
        if let Some((id, info)) = self.leader_of(META_GROUP)
            && id != self.settings.node_id
        {
            targets.push(info.cluster_addr);
        }
        for seed in &self.settings.seeds {
            // A DNS name may stand for several brokers (a headless Service).
            match tokio::net::lookup_host(seed.as_str()).await {
                Ok(addrs) => targets.extend(addrs.map(|a| a.to_string())),
                Err(err) => tracing::debug!(seed, error = %err, "seed does not resolve yet"),
            }
        }
        targets.retain(|t| *t != self.settings.me.cluster_addr);
        targets.dedup();
        if targets.is_empty() {
            return Err("no seed reachable (set FLYMQ_SEEDS to host:port of a running broker's cluster port)".into());
        }
        let mut last = String::new();
        for target in targets {
            match self.join_via(&target).await {
                Ok(JoinOutcome::Joined) => return Ok(()),
                Ok(JoinOutcome::NotLeader(leader)) => {
                    last = format!("{target} is not the metadata leader");
                    // Ask the leader it named (it may not be among the seeds).
                    if let Some(leader) = leader.filter(|l| l.cluster_addr != target) {
                        match self.join_via(&leader.cluster_addr).await {
                            Ok(JoinOutcome::Joined) => return Ok(()),
                            Ok(JoinOutcome::NotLeader(_)) => {}
                            Err(err) => last = err,
                        }
                    }
                }
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// Sends one Join to `target`; on success stamps the cluster id.
    async fn join_via(&self, target: &str) -> Result<JoinOutcome, String> {
        let mut client = self.peers.client(target)?;
        let mut request = tonic::Request::new(JoinRequest {
            cluster_id: self.cluster_id(),
            node: Some(node_address(self.settings.node_id, &self.settings.me)),
        });
        request.set_timeout(Duration::from_secs(60));
        match client.join(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if !reply.joined {
                    return Ok(JoinOutcome::NotLeader(reply.leader));
                }
                if self.cluster_id() != reply.cluster_id {
                    self.stamp_cluster_id(&reply.cluster_id).map_err(|e| e.to_string())?;
                }
                tracing::info!(via = %target, cluster_id = %reply.cluster_id, "joined the cluster");
                Ok(JoinOutcome::Joined)
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::error!(seed = %target, "{}", status.message());
                Err(status.message().to_owned())
            }
            Err(status) => Err(format!("{target}: {}", status.message())),
        }
    }

    /// On the metadata leader: adds a broker as a learner, waits for it to
    /// catch up, then makes it a voter; or updates its address.
    pub async fn handle_join(
        self: &Arc<Self>,
        cluster_id: &str,
        id: NodeId,
        info: NodeInfo,
    ) -> Result<(), tonic::Status> {
        let mine = self.cluster_id();
        if !cluster_id.is_empty() && cluster_id != mine {
            return Err(tonic::Status::failed_precondition(format!(
                "node {id} belongs to cluster '{cluster_id}', this is cluster '{mine}': refusing to join; \
                 wipe its data directory to move it to this cluster"
            )));
        }
        let meta = self.meta();
        if !meta.raft.is_leader() {
            return Err(tonic::Status::unavailable("not leader of the metadata group"));
        }
        let _guard = self.membership.lock().await;
        let members = self.members();
        let existing = members.iter().find(|m| m.0 == id);
        match existing {
            Some((_, current, true)) if *current == info => return Ok(()),
            Some((_, _, true)) => {
                tracing::info!(node = id, addr = %info.cluster_addr, "updating a broker's address");
                meta.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, info)])), false)
                    .await
                    .map_err(raft_status)?;
            }
            _ => {
                tracing::info!(node = id, addr = %info.cluster_addr, "adding a broker: learner first, then voter");
                meta.raft.add_learner(id, info, true).await.map_err(raft_status)?;
                meta.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(raft_status)?;
            }
        }
        Ok(())
    }

    /// Moves every replica off `id`, waits until no partition group has it,
    /// then removes it from the metadata group. Returns how many partitions moved.
    pub async fn decommission(self: &Arc<Self>, id: NodeId) -> BrokerResult<u32> {
        let voters = self.replicas_of(META_GROUP);
        if !voters.contains(&id) {
            return Err(BrokerError::InvalidArgument(format!(
                "node {id} is not a member of this cluster"
            )));
        }
        if voters.len() == 1 {
            return Err(BrokerError::InvalidArgument(
                "cannot decommission the only broker of the cluster".into(),
            ));
        }
        let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
        let mut load: HashMap<NodeId, usize> = others.iter().map(|o| (*o, 0)).collect();
        let mut moves = Vec::new();
        for topic in self.shared.catalog.topics() {
            for replicas in &topic.record.replicas {
                for r in replicas {
                    if let Some(n) = load.get_mut(r) {
                        *n += 1;
                    }
                }
            }
            for (p, replicas) in topic.record.replicas.iter().enumerate() {
                if !replicas.contains(&id) {
                    continue;
                }
                let mut next: Vec<NodeId> = replicas.iter().copied().filter(|r| *r != id).collect();
                let spare = others
                    .iter()
                    .filter(|o| !next.contains(o))
                    .min_by_key(|o| load.get(o).copied().unwrap_or(0))
                    .copied();
                if let Some(spare) = spare {
                    next.push(spare);
                    *load.entry(spare).or_default() += 1;
                }
                moves.push((topic.name().to_owned(), p as u32, next));
            }
        }
        let moved = moves.len() as u32;
        for (topic, partition, replicas) in moves {
            self.propose(
                META_GROUP,
                Command::Reassign {
                    topic,
                    partition,
                    replicas,
                },
            )
            .await?;
        }
        // Partition leaders move the replicas; wait until no group lists `id`.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pending = self.groups_with_voter(id).await;
            if pending == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(BrokerError::Remote(format!(
                    "timed out moving replicas off node {id}: {pending} partition groups still include it"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let meta = self.meta();
        if !meta.raft.is_leader() {
            return Err(not_leader(self.leader_of(META_GROUP).as_ref().map(|(_, i)| i)));
        }
        let _guard = self.membership.lock().await;
        meta.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| BrokerError::Remote(e.to_string()))?;
        meta.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| BrokerError::Remote(e.to_string()))?;
        tracing::info!(node = id, moved, "decommissioned broker");
        Ok(moved)
    }

    /// Partition groups whose voters (as their local replica knows them) include `id`.
    async fn groups_with_voter(&self, id: NodeId) -> usize {
        let mut count = 0;
        for topic in self.shared.catalog.topics() {
            for p in 0..topic.record.replicas.len() {
                let group = partition_group(topic.record.id, p as u32);
                let voters: BTreeSet<NodeId> = match self.group(group) {
                    Some(g) => g
                        .raft
                        .metrics()
                        .borrow_watched()
                        .membership_config
                        .membership()
                        .voter_ids()
                        .collect(),
                    // Not a replica here: trust the assignment.
                    None => topic.record.replicas[p].iter().copied().collect(),
                };
                if voters.contains(&id) {
                    count += 1;
                }
            }
        }
        count
    }

    /// Moves leadership of `group` to `to` (run on any broker; sent to the leader).
    pub async fn transfer_leader(&self, group: u64, to: NodeId) -> BrokerResult<()> {
        let (leader, info) = self.leader_of(group).ok_or_else(|| not_leader(None))?;
        if leader == to {
            return Ok(());
        }
        if leader == self.settings.node_id {
            let g = self.group(group).ok_or_else(|| not_leader(None))?;
            return g
                .raft
                .trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| BrokerError::Remote(e.to_string()));
        }
        let op = encode(&GroupOp::TransferLeader { to }).map_err(|e| BrokerError::Remote(e.to_string()))?;
        let mut client = self.peers.client(&info.cluster_addr).map_err(BrokerError::Remote)?;
        client
            .manage(ManageRequest {
                envelope: Some(self.peers.envelope(leader, group)),
                op,
            })
            .await
            .map_err(|s| BrokerError::Remote(s.message().to_owned()))?;
        Ok(())
    }

    /// Before a planned stop (SIGTERM, a rolling restart): moves the
    /// leadership of every group this broker leads to a voter that has the
    /// whole log, so clients see a prompt hand-over instead of waiting out an
    /// election timeout. Returns how many groups moved within `within`.
    pub async fn hand_over_leadership(&self, within: Duration) -> usize {
        let me = self.settings.node_id;
        let mut moving = Vec::new();
        for group in self.groups() {
            let m = group.raft.metrics().borrow_watched().clone();
            if m.current_leader != Some(me) {
                continue;
            }
            let last = m.last_log_index.unwrap_or(0);
            let target = m.replication.iter().flatten().find_map(|(id, matched)| {
                let caught_up = matched.is_some_and(|l| l.index >= last);
                let voter = m.membership_config.membership().voter_ids().any(|v| v == *id);
                (*id != me && voter && caught_up).then_some(*id)
            });
            let Some(to) = target else { continue };
            if group.raft.trigger().transfer_leader(to).await.is_ok() {
                moving.push(group);
            }
        }
        let wanted = moving.len();
        let deadline = tokio::time::Instant::now() + within;
        let mut moved = 0;
        for group in moving {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let done = group
                .raft
                .wait(Some(left))
                .metrics(|m| m.current_leader.is_some_and(|l| l != me), "leadership moved")
                .await;
            moved += usize::from(done.is_ok());
        }
        if wanted > 0 {
            tracing::info!(groups = wanted, moved, "handed over leadership before stopping");
        }
        moved
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        let groups: Vec<_> = self.groups.write().drain().map(|(_, g)| g).collect();
        for group in groups {
            let _ = group.raft.shutdown().await;
        }
    }
}

fn group_labels(group: u64, topic_names: &HashMap<u32, String>) -> RaftGroupLabels {
    let name = if group == META_GROUP {
        "meta".to_owned()
    } else {
        let (topic_id, partition) = ((group >> 32) as u32, group as u32);
        match topic_names.get(&topic_id) {
            Some(topic) => format!("{topic}/{partition}"),
            None => format!("{group}"),
        }
    };
    RaftGroupLabels { group: name }
}

/// Counts changes of a group's leader (including losing it: no leader).
async fn count_leader_changes(raft: Raft, metrics: Arc<Metrics>, labels: RaftGroupLabels) {
    let mut watch = raft.metrics();
    let mut leader = watch.borrow_watched().current_leader;
    while watch.changed().await.is_ok() {
        let now = watch.borrow_watched().current_leader;
        if now != leader {
            leader = now;
            metrics.raft_leader_changes.get_or_create(&labels).inc();
        }
    }
}

/// Keeps the peer address book in step with the metadata membership, which
/// is where a broker that restarted on a new address is re-registered.
async fn learn_peer_addresses(raft: Raft, peers: Arc<Peers>) {
    let mut metrics = raft.metrics();
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

fn raft_status<E: std::fmt::Display + std::fmt::Debug + std::error::Error>(
    err: RaftError<TypeConfig, E>,
) -> tonic::Status {
    tonic::Status::unavailable(err.to_string())
}

fn answer(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, outcome: BrokerResult<CommandResults>) {
    match outcome {
        Ok(results) => answer_each(replies, results.into_iter().map(from_wire).collect()),
        Err(err) => answer_all(replies, Err(err)),
    }
}

fn answer_each(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, results: Vec<BrokerResult<Applied>>) {
    let mut results = results.into_iter();
    for reply in replies {
        let result = results.next().unwrap_or_else(|| {
            Err(BrokerError::Remote(
                "the leader returned fewer results than commands".into(),
            ))
        });
        let _ = reply.send(result);
    }
}

fn answer_all(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, result: BrokerResult<Applied>) {
    for reply in replies {
        let _ = reply.send(result.clone());
    }
}
