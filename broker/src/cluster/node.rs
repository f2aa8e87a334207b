//! `ClusterNode`: this broker's part in the cluster. It owns the Raft groups
//! (the metadata group and the partition groups this broker holds a replica
//! of) and answers what the rest of the broker asks about them. The work is
//! split by concern: `proposer` (proposals and batching), `forwarding`
//! (proposals sent to other brokers), `join` (bootstrap and joining),
//! `reconcile` (partition groups follow the assignment), `assignment`
//! (replica placement, decommission), `leadership` (transfers),
//! `observe` (metrics), `replicator` (the core's view of all of it).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use tokio::sync::mpsc;

use super::identity::{self, Bootstrap, broker_of};
use super::log_store::{GroupLogStore, WalSyncer};
use super::network::{NetworkFactory, Peers};
use super::proposer::Proposal;
use super::state_machine::{GroupStateMachine, SharedState};
use super::types::{META_GROUP, NodeId, NodeInfo, Raft, split_group};
use crate::observe::metrics::Metrics;
use crate::storage::Store;
use flymq_proto::grpc::cluster::NodeAddress;

/// A follower at most this many entries behind the leader counts as in sync.
pub(super) const IN_SYNC_LAG: u64 = 1000;

/// One group's state as this broker sees it. Node ids are member ids.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// This broker holds a replica (else only the assignment is known).
    pub local: bool,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub voters: Vec<NodeId>,
    /// Voters caught up with the leader and heard from within an election
    /// timeout (known on the leader; otherwise all voters while a leader exists).
    pub in_sync: Vec<NodeId>,
    pub committed: u64,
    pub applied: u64,
}

/// Cluster-mode settings, from the broker configuration.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The broker id (StatefulSet ordinal); the member id adds the incarnation.
    pub broker_id: u32,
    /// Expected cluster id; `None` learns it from the cluster (or creates one on broker 0).
    pub cluster_id: Option<String>,
    pub bootstrap: Bootstrap,
    pub me: NodeInfo,
    /// `host:port` cluster addresses (DNS names allowed) of brokers to join through.
    pub seeds: Vec<String>,
    pub replication_factor: u32,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    /// Entries since the last snapshot before a new one is built and the log purged.
    pub snapshot_logs: u64,
    /// Inter-broker authentication (mutual TLS, cluster secret).
    pub auth: super::auth::PeerAuth,
}

/// One Raft group on this broker.
pub struct Group {
    pub id: u64,
    pub raft: Raft,
    pub(super) log: GroupLogStore,
    pub(super) proposals: mpsc::UnboundedSender<Proposal>,
    /// When the assignment stopped listing this broker (partition groups).
    pub(super) dropped_since: parking_lot::Mutex<Option<Instant>>,
}

impl Group {
    /// Runs `f` on the group's voter ids, as this replica knows its
    /// membership (no copy of the membership is made).
    fn with_voter_ids<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = NodeId>) -> R) -> R {
        let metrics = self.raft.metrics();
        let watched = metrics.borrow_watched();
        f(&mut watched.membership_config.membership().voter_ids())
    }

    /// The group's voters, as this replica knows its membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.with_voter_ids(|ids| ids.collect())
    }

    /// Whether `id` is a voter of the group, as this replica knows it
    /// (checked on every read: no set is built).
    pub fn has_voter(&self, id: NodeId) -> bool {
        self.with_voter_ids(|mut ids| Iterator::any(&mut ids, |v| v == id))
    }
}

pub struct ClusterNode {
    pub settings: ClusterSettings,
    /// This broker's member id in every group.
    me: NodeId,
    pub(super) store: Store,
    pub(super) shared: Arc<SharedState>,
    pub(super) metrics: Arc<Metrics>,
    pub peers: Arc<Peers>,
    syncer: WalSyncer,
    raft_config: Arc<openraft::Config>,
    groups: parking_lot::RwLock<HashMap<u64, Arc<Group>>>,
    /// Serialises the metadata group's membership changes this broker
    /// makes as its leader (joins, decommissions). Partition groups use
    /// `changing` instead: one group's change never waits for another's.
    pub(super) meta_membership: tokio::sync::Mutex<()>,
    /// Groups with a membership change in progress (so the reconciler does not start another).
    pub(super) changing: parking_lot::Mutex<BTreeSet<u64>>,
    pub(super) joined: AtomicBool,
    /// Ordered forwarding queues of groups this broker has no replica of.
    pub(super) forwarders: parking_lot::Mutex<HashMap<u64, mpsc::UnboundedSender<Proposal>>>,
    /// Per group, the highest log index of writes this broker forwarded
    /// (to the group's leader, or to a replica while it had none itself)
    /// and acknowledged. Reads here are served only once the local replica
    /// has applied that far, so a client reads its own writes even when
    /// this replica lags (just created, or catching up a snapshot).
    pub(super) forwarded_index: parking_lot::Mutex<HashMap<u64, u64>>,
    /// Held while a group is opened. Two Raft instances of one group must
    /// never run at once, even briefly: each loads the state machine and
    /// applies committed entries to the same keys, so a second one could
    /// re-apply entries over state the first already advanced (records at
    /// wrong offsets: the jepsen test found replicas that differ).
    pub(super) opening: tokio::sync::Mutex<()>,
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

pub(super) fn storage_err(e: impl std::fmt::Display) -> ClusterError {
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

impl ClusterNode {
    /// Opens this broker's cluster state and starts the metadata group. A
    /// broker that is not in a cluster yet joins (or bootstraps one) in
    /// `run_join`.
    pub async fn start(
        settings: ClusterSettings,
        shared: Arc<SharedState>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, ClusterError> {
        let store = shared.store.clone();
        let stored_id = identity::stored_cluster_id(&store)?;
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
            // Snapshots are streamed with progress-based limits (network.rs);
            // openraft's own limit only has to outlast the slowest transfer.
            install_snapshot_timeout: 24 * 3600 * 1000,
            // Each entry is at most MAX_ENTRY_BYTES; the transport splits
            // larger requests (network.rs), so this only bounds entry counts.
            max_payload_entries: 64,
            // A restarted leader must win a new election; openraft's default
            // lets it resume in its old term. The leader sends entries to
            // followers before its own write of them is durable, so it can
            // come back without entries the followers kept and then write
            // different ones under the same (term, index): the followers
            // keep theirs as identical, and replicas diverge (found by the
            // randomized fault test, seeds 97633 and 614159).
            enable_leader_restore: Some(false),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft {
            group: META_GROUP,
            message: e.to_string(),
        })?;
        super::snapshot::remove_stale_files(&store);
        let has_state = GroupLogStore::group_has_state(&store, META_GROUP).map_err(storage_err)?;
        let incarnation = identity::load_or_stamp_incarnation(&store, has_state)?;
        let me = identity::member_id(settings.broker_id, incarnation);
        let cluster_id = stored_id
            .clone()
            .or_else(|| settings.cluster_id.clone())
            .unwrap_or_default();
        tracing::info!(
            broker = settings.broker_id,
            incarnation = format!("{incarnation:08x}"),
            member = me,
            "cluster identity"
        );
        let node = Arc::new(Self {
            peers: Arc::new(Peers::new(me, cluster_id, settings.auth.clone())),
            syncer: WalSyncer::start(store.clone()).map_err(storage_err)?,
            me,
            settings,
            store,
            shared,
            metrics,
            raft_config: Arc::new(raft_config),
            groups: parking_lot::RwLock::new(HashMap::new()),
            meta_membership: tokio::sync::Mutex::new(()),
            changing: parking_lot::Mutex::new(BTreeSet::new()),
            // Not from the stored state: a member removed from the cluster
            // (decommissioned) never hears of it and still finds itself a
            // voter there. It counts as joined once the metadata leader
            // answered its Join (`run_join`), which adds it back if needed.
            joined: AtomicBool::new(false),
            forwarders: parking_lot::Mutex::new(HashMap::new()),
            forwarded_index: parking_lot::Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
        });
        node.open_group(META_GROUP).await?;
        // Partition groups this broker already holds.
        node.reconcile_groups().await;
        Ok(node)
    }

    pub(super) fn stamp_cluster_id(&self, id: &str) -> Result<(), ClusterError> {
        identity::stamp_cluster_id(&self.store, id)?;
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

    /// This broker's member id (broker id and incarnation).
    pub fn node_id(&self) -> NodeId {
        self.me
    }

    pub fn broker_id(&self) -> u32 {
        self.settings.broker_id
    }

    pub fn has_joined(&self) -> bool {
        self.joined.load(Ordering::SeqCst)
    }

    pub fn group(&self, id: u64) -> Option<Arc<Group>> {
        self.groups.read().get(&id).cloned()
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        let mut all: Vec<_> = self.groups.read().values().cloned().collect();
        all.sort_by_key(|g| g.id);
        all
    }

    pub(super) fn remove_group(&self, id: u64) {
        self.groups.write().remove(&id);
    }

    pub fn meta(&self) -> Arc<Group> {
        // The metadata group is opened in `start` and never removed.
        self.group(META_GROUP)
            .unwrap_or_else(|| unreachable!("metadata group missing"))
    }

    /// The Raft log store of group `id` (open or not).
    pub(super) fn log_store(&self, id: u64) -> GroupLogStore {
        GroupLogStore::new(id, self.store.clone(), self.syncer.clone())
    }

    pub(super) async fn open_group(self: &Arc<Self>, id: u64) -> Result<Arc<Group>, ClusterError> {
        if let Some(existing) = self.group(id) {
            return Ok(existing);
        }
        let _opening = self.opening.lock().await;
        // Opened by a concurrent caller (reconciler and an incoming RPC)
        // while this one waited: use that one.
        if let Some(existing) = self.group(id) {
            return Ok(existing);
        }
        let log = self.log_store(id);
        let sm = GroupStateMachine::open(id, self.shared.clone()).map_err(|e| ClusterError::Raft {
            group: id,
            message: e.to_string(),
        })?;
        let network = NetworkFactory {
            group: id,
            peers: self.peers.clone(),
            store: self.store.clone(),
        };
        // The group's name in openraft's own (debug) log spans.
        let config = Arc::new(openraft::Config {
            cluster_name: format!("flymq-{}", self.group_labels(id).group),
            ..(*self.raft_config).clone()
        });
        let raft = Raft::new(self.me, config, network, log.clone(), sm)
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
            tokio::spawn(super::network::learn_peer_addresses(
                group.raft.clone(),
                self.peers.clone(),
            ));
        }
        tokio::spawn(super::observe::count_leader_changes(
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
        // A follower is in sync when it acknowledged the leader within an
        // election timeout (on an idle group a dead follower's log is not
        // behind) and holds the log up to at most IN_SYNC_LAG entries behind.
        let recent = Duration::from_millis(self.settings.election_timeout_ms.max(1000));
        let heard_from = |id: &NodeId| {
            m.heartbeat
                .as_ref()
                .and_then(|h| h.get(id))
                .and_then(|acked| acked.as_ref())
                .is_some_and(|acked| openraft::Instant::elapsed(&**acked) < recent)
        };
        let in_sync = match &m.replication {
            // The leader knows how far each follower got.
            Some(progress) => voters
                .iter()
                .copied()
                .filter(|id| {
                    *id == self.me
                        || (heard_from(id)
                            && progress
                                .get(id)
                                .and_then(|p| p.as_ref())
                                .is_some_and(|log_id| log_id.index + IN_SYNC_LAG >= last))
                })
                .collect(),
            // A follower cannot see how far the others got: it counts every
            // voter while a leader is known, except the members the
            // metadata group sees down when this broker leads it (so a
            // partition whose leader cannot be asked, e.g. an older broker
            // during a rolling upgrade, still shows a dead follower).
            None if m.current_leader.is_some() => match self.members_seen_up(group) {
                Some(up) => voters.iter().copied().filter(|id| up.contains(id)).collect(),
                None => voters.clone(),
            },
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

    /// The members the metadata group saw within an election timeout, when
    /// this broker leads that group (only its leader knows) and `group` is
    /// another group.
    fn members_seen_up(&self, group: u64) -> Option<HashSet<NodeId>> {
        if group == META_GROUP || !self.meta().raft.is_leader() {
            return None;
        }
        let meta = self.group_view(META_GROUP);
        Some(meta.in_sync.into_iter().chain(meta.leader).collect())
    }

    /// Whether this broker is a voter of `group`, as its replica knows the membership.
    pub(super) fn is_voter_in(&self, group: &Group) -> bool {
        group.has_voter(self.me)
    }

    /// Whether this broker is a caught-up voter of `group` with a known
    /// leader: what readiness requires of every group it is assigned.
    pub(super) fn caught_up_in(&self, group: u64) -> bool {
        let Some(g) = self.group(group) else { return false };
        let m = g.raft.metrics().borrow_watched().clone();
        let voter = m.membership_config.membership().voter_ids().any(|v| v == self.me);
        let applied = m.last_applied.as_ref().map(|l| l.index);
        voter && m.current_leader.is_some() && applied >= m.local_committed.as_ref().map(|l| l.index)
    }

    /// Ok when this broker's replica of `group` has applied every write it
    /// forwarded and acknowledged (see `ClusterNode::forwarded_index`);
    /// otherwise a retriable error. Does not wait: the forwarding path
    /// already waited for the local apply, so this only fails while a
    /// replica lags by more.
    pub(super) fn check_forwarded_applied(&self, group: &Group) -> crate::core::error::BrokerResult<()> {
        let needed = self.forwarded_index_of(group.id);
        if needed == 0 {
            return Ok(());
        }
        let applied = group
            .raft
            .metrics()
            .borrow_watched()
            .last_applied
            .as_ref()
            .map_or(0, |l| l.index);
        if applied >= needed {
            return Ok(());
        }
        Err(crate::core::error::BrokerError::CatchingUp {
            what: self.group_name(group.id),
            applied,
            needed,
        })
    }

    /// See `ClusterNode::forwarded_index`.
    pub(super) fn forwarded_index_of(&self, group: u64) -> u64 {
        self.forwarded_index.lock().get(&group).copied().unwrap_or(0)
    }

    /// Records that a forwarded write at `index` of `group` was acknowledged.
    pub(super) fn note_forwarded(&self, group: u64, index: u64) {
        if index > 0 {
            let mut all = self.forwarded_index.lock();
            let entry = all.entry(group).or_insert(0);
            *entry = (*entry).max(index);
        }
    }

    /// Ready to serve: joined, and a caught-up voter (with a known leader)
    /// of the metadata group and of every partition group assigned to this
    /// broker. A broker back with an empty volume is therefore not ready
    /// until it has caught up everywhere.
    pub fn is_ready(&self) -> bool {
        if !self.has_joined() || !self.caught_up_in(META_GROUP) {
            return false;
        }
        self.shared.catalog.topics().iter().all(|topic| {
            topic.record.replicas.iter().enumerate().all(|(p, replicas)| {
                !replicas.contains(&self.me)
                    || self.caught_up_in(super::types::partition_group(topic.record.id, p as u32))
            })
        })
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

    /// A member's addresses from the metadata group's membership.
    pub fn node_info(&self, id: NodeId) -> Option<NodeInfo> {
        let meta = self.meta();
        let metrics = meta.raft.metrics().borrow_watched().clone();
        metrics.membership_config.membership().get_node(&id).cloned()
    }

    /// Every member of the metadata group: member id, addresses, voter or not.
    pub fn members(&self) -> Vec<(NodeId, NodeInfo, bool)> {
        let metrics = self.meta().raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, info)| (*id, info.clone(), voters.contains(id)))
            .collect()
    }

    /// The current member id of broker `broker` (a voter if it has one).
    pub fn member_of_broker(&self, broker: u32) -> Option<NodeId> {
        let members = self.members();
        let of_broker = |voter: bool| {
            members
                .iter()
                .filter(|m| broker_of(m.0) == broker && m.2 == voter)
                .map(|m| m.0)
                .next()
        };
        of_broker(true).or_else(|| of_broker(false))
    }

    /// Which topic partition a group holds, for messages (`<topic>/<p>`).
    pub fn group_name(&self, group: u64) -> String {
        match split_group(group) {
            None => "metadata".into(),
            Some((topic_id, partition)) => {
                let name = self
                    .shared
                    .catalog
                    .topics()
                    .into_iter()
                    .find(|t| t.record.id == topic_id)
                    .map(|t| t.name().to_owned())
                    .unwrap_or_else(|| format!("topic#{topic_id}"));
                format!("{name}/{partition}")
            }
        }
    }

    /// Stops every group.
    pub async fn shutdown(&self) {
        let groups: Vec<_> = self.groups.write().drain().map(|(_, g)| g).collect();
        for group in groups {
            let _ = group.raft.shutdown().await;
        }
    }
}
