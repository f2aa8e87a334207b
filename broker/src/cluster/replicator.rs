//! The broker core's view of the cluster: `ClusterReplicator` implements
//! `core::Replicator` on top of the `ClusterNode`. Node ids shown to clients
//! and operators are broker ids (the StatefulSet ordinals), not member ids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::oneshot;

use super::identity::broker_of;
use super::node::ClusterNode;
use super::service::GroupOp;
use super::types::{META_GROUP, NodeId, decode, partition_group};
use crate::core::catalog::TopicView;
use crate::core::command::{Applied, Command};
use crate::core::error::{BrokerError, BrokerResult};
use crate::core::replicator::{ClusterMember, Placement, Replicator};

pub struct ClusterReplicator {
    node: Arc<ClusterNode>,
}

impl ClusterReplicator {
    pub fn new(node: Arc<ClusterNode>) -> Self {
        Self { node }
    }

    /// The Raft group a command belongs to.
    fn group_for(&self, command: &Command) -> u64 {
        match command {
            Command::Append { topic, partition, .. } => self
                .node
                .shared
                .catalog
                .topic(topic)
                .map_or(META_GROUP, |t| partition_group(t.record.id, *partition)),
            Command::Truncate {
                topic_id, partition, ..
            }
            | Command::Release {
                topic_id, partition, ..
            }
            | Command::DeliverTransaction {
                topic_id, partition, ..
            } => partition_group(*topic_id, *partition),
            _ => META_GROUP,
        }
    }
}

fn broker_label(member: NodeId) -> String {
    broker_of(member).to_string()
}

impl Replicator for ClusterReplicator {
    fn submit(&self, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        let group = self.group_for(&command);
        self.node.submit(group, command)
    }

    fn cluster_id(&self) -> String {
        self.node.cluster_id()
    }

    fn is_ready(&self) -> bool {
        self.node.is_ready()
    }

    fn assign(&self, name: &str, partitions: u32, replication_factor: u32) -> BrokerResult<Vec<Vec<u64>>> {
        self.node.assign(name, partitions, replication_factor)
    }

    /// A partition is read here only from a replica that is assigned here
    /// and a voter of its group: not from one moved off this broker that is
    /// still open (its grace period, or left by a stop), which no leader
    /// replicates to any more, nor from a learner still catching up. Other
    /// reads are redirected to the leader (or another replica).
    fn check_readable(&self, view: &TopicView, partition: u32) -> BrokerResult<()> {
        let group = partition_group(view.record.id, partition);
        let me = self.node.node_id();
        let replicas = assigned_replicas(view, partition);
        if replicas.contains(&me)
            && let Some(g) = self.node.group(group)
            && self.node.is_voter_in(&g)
        {
            return self.node.check_forwarded_applied(&g);
        }
        let target = self
            .node
            .leader_of(group)
            .map(|(id, _)| id)
            .into_iter()
            .chain(replicas)
            .find(|id| *id != me)
            .and_then(|id| self.node.node_info(id))
            .map(|info| info.client_addr);
        Err(BrokerError::NotLeader(match target {
            Some(addr) => format!(
                "leader_addr={addr} (partition {partition} of '{}' has no readable replica on this broker)",
                view.name()
            ),
            None => "no leader elected".into(),
        }))
    }

    fn check_metadata_fresh(&self) -> BrokerResult<()> {
        match self.node.group(META_GROUP) {
            Some(g) => self.node.check_forwarded_applied(&g),
            None => Ok(()),
        }
    }

    fn metadata_barrier(&self) -> BoxFuture<'static, BrokerResult<()>> {
        let node = self.node.clone();
        async move { node.read_barrier(META_GROUP).await }.boxed()
    }

    fn leads_metadata(&self) -> bool {
        self.node.group(META_GROUP).is_some_and(|g| g.raft.is_leader())
    }

    fn leads(&self, topic_id: u32, partition: u32) -> bool {
        self.node
            .group(partition_group(topic_id, partition))
            .is_some_and(|g| g.raft.is_leader())
    }

    fn placement(&self, view: &TopicView, partition: u32) -> Placement {
        let node = &self.node;
        let g = node.group_view(partition_group(view.record.id, partition));
        let replicas = assigned_replicas(view, partition);
        // Not a replica here: point at the preferred leader, which redirects if needed.
        let leader = g.leader.or_else(|| replicas.first().copied());
        Placement {
            leader_id: leader.map(broker_label).unwrap_or_default(),
            leader_addr: leader
                .and_then(|l| node.node_info(l))
                .map(|i| i.client_addr)
                .unwrap_or_default(),
            epoch: g.term,
            online: g.leader.is_some() || !g.local,
            replicas: replicas.iter().copied().map(broker_label).collect(),
            isr: g.in_sync.iter().copied().map(broker_label).collect(),
        }
    }

    fn members(&self) -> Vec<ClusterMember> {
        let meta = self.node.group_view(META_GROUP);
        self.node
            .members()
            .into_iter()
            .map(|(id, info, voter)| ClusterMember {
                node_id: broker_label(id),
                address: info.client_addr,
                role: match (meta.leader == Some(id), voter) {
                    (true, _) => "leader",
                    (false, true) => "follower",
                    (false, false) => "learner",
                },
                state: if meta.in_sync.contains(&id) || meta.leader == Some(id) {
                    "online"
                } else {
                    "unknown"
                },
            })
            .collect()
    }

    fn wait_writable(&self, topic: Arc<TopicView>, timeout: Duration) -> BoxFuture<'static, BrokerResult<()>> {
        let node = self.node.clone();
        async move {
            let deadline = Instant::now() + timeout;
            for p in 0..topic.partition_count() {
                let group = partition_group(topic.record.id, p);
                loop {
                    if leader_known(&node, group).await {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(BrokerError::NotLeader(format!(
                            "no leader elected: partition {p} of '{}' has no leader {}s after it was created; \
                             produces will be accepted once one is elected (check that its replicas are up)",
                            topic.name(),
                            timeout.as_secs()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn describe_health(&self, body: &mut serde_json::Value) {
        let node = &self.node;
        let groups: Vec<serde_json::Value> = node
            .groups()
            .iter()
            .map(|g| {
                let view = node.group_view(g.id);
                serde_json::json!({
                    "group": g.id,
                    "name": node.group_name(g.id),
                    "role": node.role_of(g.id),
                    "leader": view.leader.map(broker_of),
                    "term": view.term,
                    "committed": view.committed,
                    "applied": view.applied,
                    "lag": view.committed.saturating_sub(view.applied),
                    "caught_up": node.caught_up_in(g.id),
                    "voters": view.voters.iter().map(|v| broker_of(*v)).collect::<Vec<_>>(),
                    "in_sync": view.in_sync.iter().map(|v| broker_of(*v)).collect::<Vec<_>>(),
                })
            })
            .collect();
        body["mode"] = "cluster".into();
        body["role"] = node.role_of(META_GROUP).into();
        body["joined"] = node.has_joined().into();
        body["member_id"] = node.node_id().into();
        body["incarnation"] = format!("{:08x}", super::identity::incarnation_of(node.node_id())).into();
        body["groups"] = groups.into();
    }

    fn refresh_metrics(&self) {
        self.node.refresh_metrics();
    }

    fn close(&self) {}
}

/// Whether `group` has a leader: from the local replica, or by asking one
/// of its replicas when this broker has none.
async fn leader_known(node: &Arc<ClusterNode>, group: u64) -> bool {
    if let Some(g) = node.group(group) {
        return g.raft.metrics().borrow_watched().current_leader.is_some();
    }
    for replica in node.replicas_of(group) {
        let Some(info) = node.node_info(replica) else { continue };
        if let Ok(result) = node
            .manage(
                replica,
                &info.cluster_addr,
                group,
                &GroupOp::LeaderOf,
                Duration::from_secs(2),
            )
            .await
            && let Ok(Some(_leader)) = decode::<Option<NodeId>>(&result)
        {
            return true;
        }
    }
    false
}

/// The members assigned a partition (empty when the topic has none: standalone).
fn assigned_replicas(view: &TopicView, partition: u32) -> Vec<NodeId> {
    view.record
        .replicas
        .get(partition as usize)
        .cloned()
        .unwrap_or_default()
}
