//! Replica placement: which members hold each partition, the assignment of
//! new topics, and decommissioning a broker (moving its replicas away).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::identity::broker_of;
use super::node::ClusterNode;
use super::proposer::not_leader;
use super::types::{META_GROUP, NodeId, partition_group, split_group};
use crate::core::command::Command;
use crate::core::error::{BrokerError, BrokerResult};

impl ClusterNode {
    /// The assigned replicas (member ids) of a group: every voter for the
    /// metadata group, the assignment for a partition (empty for unknown groups).
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

    /// Moves every replica off broker `broker`, waits until no partition
    /// group has it, then removes it from the metadata group. Returns how
    /// many partitions moved.
    pub async fn decommission(self: &Arc<Self>, broker: u32) -> BrokerResult<u32> {
        let voters = self.replicas_of(META_GROUP);
        let Some(id) = voters.iter().copied().find(|v| broker_of(*v) == broker) else {
            // NotFound: the operator takes it as "already decommissioned"
            // (it asks again after its own restart mid-way).
            return Err(BrokerError::NotFound(format!(
                "node {broker} is not a member of this cluster"
            )));
        };
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
                    "timed out moving replicas off node {broker}: {pending} partition groups still include it; \
                     run the decommission again to continue"
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let meta = self.meta();
        if !meta.raft.is_leader() {
            return Err(not_leader(self.leader_of(META_GROUP).as_ref().map(|(_, i)| i)));
        }
        let _guard = self.meta_membership.lock().await;
        meta.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(|e| BrokerError::Remote(e.to_string()))?;
        meta.raft
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(|e| BrokerError::Remote(e.to_string()))?;
        tracing::info!(node = broker, member = id, moved, "decommissioned broker");
        Ok(moved)
    }

    /// Partition groups whose voters (as their local replica knows them) include `id`.
    async fn groups_with_voter(&self, id: NodeId) -> usize {
        let mut count = 0;
        for topic in self.shared.catalog.topics() {
            for p in 0..topic.record.replicas.len() {
                let group = partition_group(topic.record.id, p as u32);
                let voters: BTreeSet<NodeId> = match self.group(group) {
                    Some(g) => g.voters(),
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
}
