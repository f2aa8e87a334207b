//! Becoming part of the cluster: bootstrap (once, by broker 0), joining
//! through the seeds, re-registering a new address, and replacing a
//! broker's old incarnation when it comes back with an empty volume.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::errors::RaftError;

use super::identity::{Bootstrap, broker_of};
use super::node::{ClusterNode, node_address};
use super::types::{META_GROUP, NodeId, NodeInfo, RaftMetrics, TypeConfig};
use crate::core::command::Command;
use flymq_proto::grpc::cluster::{JoinRequest, NodeAddress};

/// How long broker 0 looks for an existing cluster before creating one.
const BOOTSTRAP_PROBE: Duration = Duration::from_secs(3);
/// How long the metadata leader waits for a joining broker to catch up
/// before answering "retry" (the joiner's request times out at 60 s).
const JOIN_CATCH_UP: Duration = Duration::from_secs(45);
/// A learner this many entries behind the leader is caught up.
const CAUGHT_UP_LAG: u64 = 100;

/// What a Join request to one broker achieved.
enum JoinOutcome {
    Joined,
    /// That broker is not the metadata leader; it may name the one that is,
    /// and says which cluster it belongs to ("" when none yet).
    NotLeader {
        leader: Option<NodeAddress>,
        cluster_id: String,
    },
}

/// What one round of join attempts found.
#[derive(Default)]
struct Probe {
    /// Some seed belongs to a cluster: never bootstrap another one.
    cluster_seen: bool,
    /// Some other broker answered (or could be asked) at all.
    others: bool,
    last_error: String,
}

impl ClusterNode {
    /// Joins the cluster through the seeds, bootstrapping it first when this
    /// broker may (or, already a member, makes sure the cluster has this
    /// broker's current address). Retries until it works or shutdown.
    pub async fn run_join(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        loop {
            match self.try_join(started).await {
                Ok(()) => {
                    self.joined.store(true, Ordering::SeqCst);
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

    /// Whether the cluster's membership already has this broker, as a voter, at its current address.
    fn membership_is_current(&self) -> bool {
        let me = self.node_id();
        self.members()
            .iter()
            .any(|(id, info, voter)| *id == me && *voter && *info == self.settings.me)
    }

    /// Broker 0 may create a cluster: bootstrapping allowed, and no sign of
    /// ever having been in one (no cluster id, no Raft state).
    fn may_bootstrap(&self) -> bool {
        self.settings.bootstrap == Bootstrap::Auto
            && self.broker_id() == 0
            && self.cluster_id().is_empty()
            && !self.meta().log.has_state().unwrap_or(true)
    }

    async fn try_join(self: &Arc<Self>, started: Instant) -> Result<(), String> {
        if self.has_joined() && self.membership_is_current() {
            return Ok(());
        }
        // A leader that restarted with a new address records it itself.
        if self.meta().raft.is_leader() {
            let me = self.settings.me.clone();
            return self
                .handle_join(&self.cluster_id(), self.node_id(), me)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let probe = match self.join_through_seeds().await {
            Ok(()) => return Ok(()),
            Err(probe) => probe,
        };
        if !probe.cluster_seen && self.may_bootstrap() && (!probe.others || started.elapsed() >= BOOTSTRAP_PROBE) {
            return self.bootstrap().await;
        }
        Err(probe.last_error)
    }

    /// Creates a new one-broker cluster with this broker as its only voter.
    async fn bootstrap(&self) -> Result<(), String> {
        let id = self
            .settings
            .cluster_id
            .clone()
            .unwrap_or_else(|| format!("flymq-{:016x}", rand::random::<u64>()));
        self.stamp_cluster_id(&id).map_err(|e| e.to_string())?;
        let members = BTreeMap::from([(self.node_id(), self.settings.me.clone())]);
        self.meta()
            .raft
            .initialize(members)
            .await
            .map_err(|e| format!("initialising the metadata group failed: {e}"))?;
        tracing::info!(cluster_id = %id, "no seed belongs to a cluster: created a new cluster as broker 0");
        Ok(())
    }

    async fn join_through_seeds(self: &Arc<Self>) -> Result<(), Probe> {
        let mut targets: Vec<String> = Vec::new();
        if let Some((id, info)) = self.leader_of(META_GROUP)
            && id != self.node_id()
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
        let mut probe = Probe {
            last_error: "no seed reachable (set FLYMQ_SEEDS to host:port of a running broker's cluster port)".into(),
            others: !targets.is_empty(),
            ..Probe::default()
        };
        for target in targets {
            match self.join_via(&target).await {
                Ok(JoinOutcome::Joined) => return Ok(()),
                Ok(JoinOutcome::NotLeader { leader, cluster_id }) => {
                    probe.cluster_seen |= !cluster_id.is_empty();
                    probe.last_error = format!("{target} is not the metadata leader");
                    // Ask the leader it named (it may not be among the seeds).
                    if let Some(leader) = leader.filter(|l| l.cluster_addr != target) {
                        match self.join_via(&leader.cluster_addr).await {
                            Ok(JoinOutcome::Joined) => return Ok(()),
                            Ok(JoinOutcome::NotLeader { .. }) => {}
                            Err((err, in_cluster)) => {
                                probe.cluster_seen |= in_cluster;
                                probe.last_error = err;
                            }
                        }
                    }
                }
                Err((err, in_cluster)) => {
                    probe.cluster_seen |= in_cluster;
                    probe.last_error = err;
                }
            }
        }
        Err(probe)
    }

    /// Sends one Join to `target`; on success stamps the cluster id. An
    /// error says whether the target showed it belongs to a cluster.
    async fn join_via(&self, target: &str) -> Result<JoinOutcome, (String, bool)> {
        let mut client = self.peers.client(target).map_err(|e| (e, false))?;
        let mut request = tonic::Request::new(JoinRequest {
            cluster_id: self.cluster_id(),
            node: Some(node_address(self.node_id(), &self.settings.me)),
        });
        request.set_timeout(Duration::from_secs(60));
        match client.join(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if !reply.joined {
                    return Ok(JoinOutcome::NotLeader {
                        leader: reply.leader,
                        cluster_id: reply.cluster_id,
                    });
                }
                if self.cluster_id() != reply.cluster_id {
                    self.stamp_cluster_id(&reply.cluster_id)
                        .map_err(|e| (e.to_string(), true))?;
                }
                tracing::info!(via = %target, cluster_id = %reply.cluster_id, "joined the cluster");
                Ok(JoinOutcome::Joined)
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                tracing::error!(seed = %target, "{}", status.message());
                Err((status.message().to_owned(), true))
            }
            // A broker answered but refused our credentials (another
            // cluster's secret): it exists, so never bootstrap beside it.
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                tracing::error!(seed = %target, "inter-broker authentication refused: {}", status.message());
                Err((format!("{target}: {}", status.message()), true))
            }
            // The leader answered, but the join is still in progress (catching up).
            Err(status) if status.code() == tonic::Code::Aborted => {
                Err((format!("{target}: {}", status.message()), true))
            }
            Err(status) => Err((format!("{target}: {}", status.message()), false)),
        }
    }

    /// On the metadata leader: adds a broker as a learner, waits for it to
    /// catch up, then makes it a voter in place of any older incarnation of
    /// the same broker (whose replica assignments move to it); or updates
    /// its address.
    pub async fn handle_join(
        self: &Arc<Self>,
        cluster_id: &str,
        id: NodeId,
        info: NodeInfo,
    ) -> Result<(), tonic::Status> {
        let mine = self.cluster_id();
        if !cluster_id.is_empty() && cluster_id != mine {
            return Err(tonic::Status::failed_precondition(format!(
                "node {} belongs to cluster '{cluster_id}', this is cluster '{mine}': refusing to join; \
                 wipe its data directory to move it to this cluster",
                broker_of(id)
            )));
        }
        let meta = self.meta();
        if !meta.raft.is_leader() {
            return Err(tonic::Status::unavailable("not leader of the metadata group"));
        }
        {
            let _guard = self.meta_membership.lock().await;
            let members = self.members();
            let current = members.iter().find(|m| m.0 == id);
            if let Some((_, known, true)) = current {
                if *known != info {
                    tracing::info!(node = broker_of(id), addr = %info.cluster_addr, "updating a broker's address");
                    meta.raft
                        .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, info)])), false)
                        .await
                        .map_err(raft_status)?;
                }
                return Ok(());
            }
            let older = older_incarnations(&members, id);
            if older.is_empty() {
                tracing::info!(node = broker_of(id), addr = %info.cluster_addr, "adding a broker: learner first, then voter");
            } else {
                tracing::warn!(
                    node = broker_of(id),
                    new_member = id,
                    old_members = ?older,
                    "a broker came back with an empty data directory: adding its new incarnation as a learner; \
                     it replaces the old one once caught up"
                );
            }
            if current.is_none_or(|(_, known, _)| *known != info) {
                meta.raft.add_learner(id, info, false).await.map_err(raft_status)?;
            }
        }
        // Not under the lock: another broker's join (an address update
        // after a pod moved) need not wait for this one's catch-up.
        let caught_up = meta
            .raft
            .wait(Some(JOIN_CATCH_UP))
            .metrics(|m| member_caught_up(m, id, CAUGHT_UP_LAG), "joining broker caught up")
            .await;
        if caught_up.is_err() {
            return Err(tonic::Status::aborted(format!(
                "node {} is still catching up on the metadata group; it will retry",
                broker_of(id)
            )));
        }
        let _guard = self.meta_membership.lock().await;
        // The membership may have moved on meanwhile (another incarnation
        // of the same broker replaced this one): then it asks again.
        let members = self.members();
        if !meta.raft.is_leader() || !members.iter().any(|m| m.0 == id) {
            return Err(tonic::Status::aborted(format!(
                "the membership changed while node {} caught up; it will retry",
                broker_of(id)
            )));
        }
        // Incarnations that left meanwhile need no removal; any assignment
        // still naming one is moved by `repair_assignments`.
        let older = older_incarnations(&members, id);
        let mut voters = meta.voters();
        voters.retain(|v| !older.contains(v));
        voters.insert(id);
        meta.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map_err(raft_status)?;
        let leftover: BTreeSet<NodeId> = self
            .members()
            .into_iter()
            .filter(|m| older.contains(&m.0))
            .map(|m| m.0)
            .collect();
        if !leftover.is_empty() {
            meta.raft
                .change_membership(ChangeMembers::RemoveNodes(leftover), false)
                .await
                .map_err(raft_status)?;
        }
        for old in older {
            self.replace_member(old, id).await;
        }
        tracing::info!(node = broker_of(id), member = id, "broker joined as a voter");
        Ok(())
    }

    /// Moves every replica assignment of member `old` to `new` (the same
    /// broker's new incarnation). The partition leaders then add `new` as a
    /// learner, wait for it to catch up, and replace `old` with it.
    pub(super) async fn replace_member(self: &Arc<Self>, old: NodeId, new: NodeId) {
        match self.propose(META_GROUP, Command::ReplaceMember { old, new }).await {
            Ok(_) => tracing::info!(old, new, "replica assignments moved to the broker's new incarnation"),
            Err(err) => tracing::warn!(old, new, error = %err, "moving replica assignments failed; will retry"),
        }
    }
}

/// Members that are other incarnations of the broker `id` belongs to.
fn older_incarnations(members: &[(NodeId, NodeInfo, bool)], id: NodeId) -> Vec<NodeId> {
    members
        .iter()
        .filter(|m| m.0 != id && broker_of(m.0) == broker_of(id))
        .map(|m| m.0)
        .collect()
}

/// On a leader: whether member `id` holds the log up to at most `lag`
/// entries behind the leader's last one.
pub(super) fn member_caught_up(m: &RaftMetrics, id: NodeId, lag: u64) -> bool {
    let last = m.last_log_index.unwrap_or(0);
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|matched| matched.as_ref())
        .is_some_and(|l| l.index + lag >= last)
}

pub(super) fn raft_status<E: std::fmt::Display + std::fmt::Debug + std::error::Error>(
    err: RaftError<TypeConfig, E>,
) -> tonic::Status {
    tonic::Status::unavailable(err.to_string())
}
