//! Partition groups follow the replica assignment in the metadata: every
//! broker opens the groups it is assigned, the member that made a partition
//! initialises its group once, leaders bring their group's voters in line
//! with the assignment (learner first, then voter), and a broker stops and
//! deletes the groups it is no longer assigned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use rocksdb::WriteBatch;

use super::identity::broker_of;
use super::join::member_caught_up;
use super::log_store::GroupLogStore;
use super::node::{ClusterNode, Group};
use super::types::{META_GROUP, NodeId, NodeInfo, partition_group, split_group};

/// How often partition groups are checked against the assignment.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// A replica dropped from a partition's assignment deletes its copy after this long.
const REMOVED_REPLICA_GRACE: Duration = Duration::from_secs(15);
/// How long one reconcile waits for new partition replicas to catch up
/// before it lets go (the next one waits again).
const LEARNER_CATCH_UP: Duration = Duration::from_secs(10);
/// A new partition replica this many entries behind the leader is caught
/// up enough to become a voter (a fraction of a second of writes).
const LEARNER_CAUGHT_UP_LAG: u64 = 1000;

/// Test fault (`FLYMQ_TEST_KEEP_DROPPED_REPLICAS`): groups this broker is
/// no longer assigned stay open and on disk, as if it stopped just before
/// dropping them, so a test can check the start-time sweep. Never set in
/// production; the broker logs a warning when it is.
fn keep_dropped_replicas() -> bool {
    static KEEP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *KEEP.get_or_init(|| {
        let keep = std::env::var_os("FLYMQ_TEST_KEEP_DROPPED_REPLICAS").is_some();
        if keep {
            tracing::warn!("test fault: replicas no longer assigned here are kept");
        }
        keep
    })
}

impl ClusterNode {
    /// Starts partition groups this broker is assigned, initialises new ones
    /// it made, stops ones it is no longer part of, and (as a group leader)
    /// brings memberships in line with the assignment.
    pub async fn reconcile_groups(self: &Arc<Self>) {
        let me = self.node_id();
        let mut wanted: HashMap<u64, (Vec<NodeId>, Option<NodeId>)> = HashMap::new();
        for topic in self.shared.catalog.topics() {
            for (p, replicas) in topic.record.replicas.iter().enumerate() {
                let initializer = topic.record.initializers.get(p).copied();
                wanted.insert(
                    partition_group(topic.record.id, p as u32),
                    (replicas.clone(), initializer),
                );
            }
        }
        for (&id, (replicas, initializer)) in &wanted {
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
            if *initializer == Some(me) {
                self.initialize_partition(&group, replicas).await;
            }
            if group.raft.is_leader() {
                self.align_membership(&group, replicas);
            }
        }
        self.stop_unassigned(&wanted).await;
        // The metadata group's addresses are updated by joins (join.rs).
        if self.meta().raft.is_leader() {
            self.repair_assignments().await;
        }
    }

    /// Creates a new partition's group with its assigned replicas as voters
    /// (openraft then elects a leader at once, so the topic is writable promptly).
    async fn initialize_partition(self: &Arc<Self>, group: &Arc<Group>, replicas: &[NodeId]) {
        if group.raft.is_initialized().await.unwrap_or(true) || group.log.has_state().unwrap_or(true) {
            return;
        }
        let members: Option<BTreeMap<NodeId, NodeInfo>> = replicas
            .iter()
            .map(|id| self.node_info(*id).map(|info| (*id, info)))
            .collect();
        let Some(members) = members else { return };
        // openraft starts the first election as soon as the group is initialised.
        if let Err(err) = group.raft.initialize(members).await {
            tracing::warn!(group = group.id, error = %err, "initialising partition group failed");
        }
    }

    /// Stops the groups this broker is no longer assigned (after a grace
    /// period, and never while leading them) and deletes their data.
    async fn stop_unassigned(self: &Arc<Self>, wanted: &HashMap<u64, (Vec<NodeId>, Option<NodeId>)>) {
        let me = self.node_id();
        for group in self.groups() {
            if group.id == META_GROUP {
                continue;
            }
            if wanted.get(&group.id).is_some_and(|(r, _)| r.contains(&me)) {
                continue;
            }
            let deleted = !wanted.contains_key(&group.id);
            let expired = {
                let mut since = group.dropped_since.lock();
                since.get_or_insert_with(Instant::now).elapsed() > REMOVED_REPLICA_GRACE
            };
            if !(deleted || (expired && !group.raft.is_leader())) {
                continue;
            }
            if keep_dropped_replicas() {
                continue;
            }
            // No new instance of the group may open until this one is gone.
            let _opening = self.opening.lock().await;
            self.remove_group(group.id);
            let _ = group.raft.shutdown().await;
            let mut data = WriteBatch::default();
            let partition = split_group(group.id);
            if let Some((topic_id, partition)) = partition {
                self.shared.delete_partition_data(&mut data, topic_id, partition);
            }
            match group.log.destroy_with(data).await {
                Ok(()) => {
                    if let Some((topic_id, partition)) = partition {
                        self.shared.show_dropped(topic_id, partition);
                    }
                }
                Err(err) => {
                    tracing::warn!(group = group.id, error = %err, "removing a dropped replica's Raft log and records failed");
                }
            }
            tracing::info!(
                group = group.id,
                deleted,
                "stopped partition group (no longer a replica here)"
            );
        }
    }

    /// Deals with replicas stored here that this broker no longer has open
    /// nor is assigned, left on disk by a stop before it dropped them
    /// (`stop_unassigned` drops open groups only):
    /// - of a deleted topic (id allocated, no longer in the catalog): their
    ///   Raft logs and records are deleted at once. A topic this broker has
    ///   not applied yet keeps its data.
    /// - of a live topic whose replica moved to other brokers (a
    ///   decommission, then a restart on the kept volume): the group is
    ///   opened, and `stop_unassigned` drops it after the grace period, as
    ///   it would have without the stop. Not deleted at once: until the
    ///   partition's leader has replaced this replica, its vote may count.
    pub(super) async fn sweep_leftover_replicas(self: &Arc<Self>) {
        let store = self.store.clone();
        // Groups with Raft state, and partitions with a stored state: every
        // broker stores a partition state for every partition of a topic
        // (its creation is a metadata command), a replica or not.
        let scan = tokio::task::spawn_blocking(move || -> Result<(BTreeSet<u64>, BTreeSet<u64>), String> {
            let raft = GroupLogStore::stored_groups(&store).map_err(|e| e.to_string())?;
            let partitions = store.stored_partitions().map_err(|e| e.to_string())?;
            Ok((
                raft,
                partitions.into_iter().map(|(t, p)| partition_group(t, p)).collect(),
            ))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|scan| scan);
        let (with_raft_state, with_partition_state) = match scan {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(error = %err, "listing stored partition replicas failed; none swept");
                return;
            }
        };
        // A replica this broker held has Raft state (dropping one deletes it
        // together with the partition's data).
        let me = self.node_id();
        let moved_off: Vec<u64> = with_raft_state
            .iter()
            .copied()
            .filter(|id| split_group(*id).is_some() && self.group(*id).is_none())
            .filter(|id| {
                let replicas = self.replicas_of(*id);
                !replicas.is_empty() && !replicas.contains(&me)
            })
            .collect();
        for id in moved_off {
            match self.open_group(id).await {
                Ok(_) => tracing::info!(
                    group = id,
                    "a replica moved to other brokers was left on disk by an earlier stop; \
                     it is removed after the grace period"
                ),
                Err(err) => tracing::warn!(group = id, error = %err, "cannot open a replica left on disk"),
            }
        }
        let mut stored = with_raft_state;
        stored.extend(with_partition_state);
        let leftovers: Vec<(u64, u32, u32)> = {
            let meta = self.shared.meta.lock();
            stored
                .into_iter()
                .filter_map(|id| split_group(id).map(|(topic_id, partition)| (id, topic_id, partition)))
                .filter(|(_, topic_id, _)| meta.is_deleted_topic(*topic_id))
                .collect()
        };
        for (id, topic_id, partition) in leftovers {
            // Not while an instance of the group is open (or opening).
            let _opening = self.opening.lock().await;
            if self.group(id).is_some() {
                continue;
            }
            let mut data = WriteBatch::default();
            self.shared.delete_partition_data(&mut data, topic_id, partition);
            match self.log_store(id).destroy_with(data).await {
                Ok(()) => tracing::info!(
                    group = id,
                    topic_id,
                    partition,
                    "removed a deleted topic's replica left on disk by an earlier stop"
                ),
                Err(err) => {
                    tracing::warn!(group = id, error = %err, "removing a deleted topic's leftover replica failed");
                }
            }
        }
    }

    /// On the metadata leader: assignments that still name a member that
    /// left the cluster while a newer incarnation of the same broker is a
    /// member move to the new one (completes a replacement interrupted by a
    /// leader change).
    async fn repair_assignments(self: &Arc<Self>) {
        let members = self.members();
        let current: BTreeSet<NodeId> = members.iter().map(|m| m.0).collect();
        let mut stale = BTreeSet::new();
        for topic in self.shared.catalog.topics() {
            for replicas in &topic.record.replicas {
                stale.extend(replicas.iter().copied().filter(|r| !current.contains(r)));
            }
        }
        for old in stale {
            if let Some((new, _, _)) = members.iter().find(|m| m.2 && broker_of(m.0) == broker_of(old)) {
                self.replace_member(old, *new).await;
            }
        }
    }

    /// As the leader of a partition group: bring the membership in line
    /// with the assignment, one change after another in a task (the group
    /// is `changing` meanwhile): record the new address of members whose
    /// pod moved, add missing replicas as learners and, once they caught
    /// up, make the voters exactly the assignment, then drop learners it no
    /// longer names (an incarnation replaced before it caught up).
    fn align_membership(self: &Arc<Self>, group: &Arc<Group>, replicas: &[NodeId]) {
        let desired: BTreeSet<NodeId> = replicas.iter().copied().collect();
        if desired.is_empty() {
            return;
        }
        let metrics = group.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let stale_learners: BTreeSet<NodeId> = membership.learner_ids().filter(|id| !desired.contains(id)).collect();
        let moved: BTreeMap<NodeId, NodeInfo> = membership
            .nodes()
            .filter(|(id, _)| !stale_learners.contains(id))
            .filter_map(|(id, recorded)| {
                let latest = self.node_info(*id)?;
                (latest != *recorded).then_some((*id, latest))
            })
            .collect();
        let missing: Vec<NodeId> = desired
            .iter()
            .copied()
            .filter(|id| membership.get_node(id).is_none())
            .collect();
        if voters == desired && stale_learners.is_empty() && moved.is_empty() {
            return;
        }
        if !self.changing.lock().insert(group.id) {
            return;
        }
        // This leader is never behind itself (nor in its replication metrics).
        let me = self.node_id();
        let joining: Vec<NodeId> = desired.difference(&voters).copied().filter(|id| *id != me).collect();
        let node = self.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let addresses_current = moved.is_empty()
                || node
                    .change_partition_membership(
                        &group,
                        ChangeMembers::SetNodes(moved),
                        "recorded moved replicas' new addresses",
                    )
                    .await;
            if addresses_current && voters != desired && node.add_learners(&group, &missing, &joining).await {
                node.change_partition_membership(
                    &group,
                    ChangeMembers::ReplaceAllVoters(desired),
                    "partition replicas changed",
                )
                .await;
            }
            if !stale_learners.is_empty() {
                node.change_partition_membership(
                    &group,
                    ChangeMembers::RemoveNodes(stale_learners),
                    "dropped replicas no longer assigned",
                )
                .await;
            }
            node.changing.lock().remove(&group.id);
        });
    }

    /// Adds `missing` replicas as learners and waits, bounded, until every
    /// replica `joining` the voters has caught up. `false` when one could
    /// not be added or is still behind (the next reconcile goes on from
    /// there; a wait never outlasts `LEARNER_CATCH_UP`, so a replica that
    /// died meanwhile holds nothing up).
    async fn add_learners(&self, group: &Group, missing: &[NodeId], joining: &[NodeId]) -> bool {
        for id in missing {
            let Some(info) = self.node_info(*id) else {
                return false;
            };
            if let Err(err) = group.raft.add_learner(*id, info, false).await {
                tracing::warn!(group = group.id, node = id, error = %err, "adding a replica failed");
                return false;
            }
        }
        let caught_up = group
            .raft
            .wait(Some(LEARNER_CATCH_UP))
            .metrics(
                |m| joining.iter().all(|id| member_caught_up(m, *id, LEARNER_CAUGHT_UP_LAG)),
                "new partition replicas caught up",
            )
            .await;
        if caught_up.is_err() {
            tracing::info!(group = group.id, replicas = ?joining, "a new partition replica is still catching up; will retry");
        }
        caught_up.is_ok()
    }

    /// Proposes one membership change of a partition group and logs how it
    /// went (`done` on success).
    async fn change_partition_membership(
        &self,
        group: &Group,
        change: ChangeMembers<NodeId, NodeInfo>,
        done: &str,
    ) -> bool {
        let what = format!("{change:?}");
        match group.raft.change_membership(change, false).await {
            Ok(_) => {
                tracing::info!(group = group.id, change = %what, "{done}");
                true
            }
            Err(err) => {
                tracing::warn!(group = group.id, change = %what, error = %err, "changing partition membership failed");
                false
            }
        }
    }

    /// Opens an assigned group that is not open yet, when a Raft RPC for it
    /// arrives before this broker's reconciler got to it (a new topic's
    /// first election). Waits briefly for the assignment to arrive here.
    pub async fn open_assigned_group(self: &Arc<Self>, id: u64) -> Option<Arc<Group>> {
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut topics = self.shared.catalog.watch_topics();
        loop {
            if let Some(group) = self.group(id) {
                return Some(group);
            }
            if self.replicas_of(id).contains(&self.node_id()) {
                return self.open_group(id).await.ok();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !matches!(tokio::time::timeout(left, topics.changed()).await, Ok(Ok(()))) {
                return None;
            }
        }
    }

    /// Runs `reconcile_groups` whenever topics change, and every second.
    pub async fn run_reconciler(self: Arc<Self>, mut shutdown: crate::shutdown::Shutdown) {
        self.sweep_leftover_replicas().await;
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
}
