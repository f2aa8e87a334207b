//! The cluster status the admin API's `ClusterStatus` reports. Only a
//! group's leader knows how far its followers got, so the metadata leader
//! answers (it knows which members are up) and asks every other member that
//! is up for its own view, from which it takes the groups that member leads.
//! A broker that is not the metadata leader asks the leader for the whole
//! answer, and answers from its own view only when the leader cannot be
//! reached. Both go over the inter-broker `Manage` RPC (cluster port,
//! inter-broker authentication), so nothing depends on the caller's
//! credentials being forwardable.

use std::collections::HashMap;
use std::time::Duration;

use flymq_proto::grpc::admin::{ClusterStatusReply, GroupStatus, Member};
use prost::Message;

use super::identity::{broker_ids, broker_of};
use super::node::{ClusterNode, GroupView};
use super::service::{GroupOp, UNDECODABLE_PAYLOAD};
use super::types::{META_GROUP, NodeId, partition_group};

/// Longest wait for the metadata leader's answer.
const LEADER_STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for another member's own view.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

impl ClusterNode {
    /// The cluster's status, from the metadata leader when it can be
    /// reached (see the module documentation).
    pub async fn cluster_status(&self) -> ClusterStatusReply {
        if !self.meta().raft.is_leader()
            && let Some((leader, info)) = self.leader_of(META_GROUP)
        {
            let asked = self
                .ask_status(leader, &info.cluster_addr, true, LEADER_STATUS_TIMEOUT)
                .await;
            match asked {
                Ok(reply) => return reply,
                // A leader of an older version (during a rolling upgrade).
                Err(err) if err.message().starts_with(UNDECODABLE_PAYLOAD) => {}
                Err(err) => tracing::warn!(
                    error = %err.message(),
                    "the metadata leader did not answer for the cluster status; answering from this broker's view"
                ),
            }
        }
        self.gathered_status().await
    }

    /// Asks member `id` at `addr` for its status: the gathered answer (from
    /// the metadata leader) or only its own view.
    async fn ask_status(
        &self,
        id: NodeId,
        addr: &str,
        gather: bool,
        timeout: Duration,
    ) -> Result<ClusterStatusReply, tonic::Status> {
        let bytes = self
            .manage(id, addr, META_GROUP, &GroupOp::ClusterStatus { gather }, timeout)
            .await?;
        ClusterStatusReply::decode(bytes.as_slice()).map_err(|e| tonic::Status::internal(e.to_string()))
    }

    /// This broker's answer: its own view and, as the metadata leader, the
    /// other members' views of the groups they lead.
    pub(super) async fn gathered_status(&self) -> ClusterStatusReply {
        let OwnView {
            mut reply,
            assigned,
            peers_up,
        } = self.own_view();
        if self.meta().raft.is_leader() {
            for peer in self.peer_views(peers_up).await {
                merge_leader_views(&mut reply, &peer);
            }
        }
        mark_under_replicated(&mut reply, &assigned);
        reply
    }

    /// The metadata group and every partition as this broker sees them (a
    /// partition it only follows shows in sync every voter that is up while
    /// a leader is known, see `ClusterNode::group_view`; the leader's view,
    /// taken by [`merge_leader_views`], says how far each one got).
    pub(super) fn own_status_view(&self) -> ClusterStatusReply {
        self.own_view().reply
    }

    /// One look at the catalog and the membership: this broker's view, each
    /// partition's assigned replica count, and the other members that are up.
    fn own_view(&self) -> OwnView {
        let meta = self.group_view(META_GROUP);
        let mut groups = vec![group_status(META_GROUP, "metadata".into(), &meta)];
        let mut assigned = HashMap::new();
        for topic in self.shared.catalog.topics() {
            for (p, replicas) in topic.record.replicas.iter().enumerate() {
                let id = partition_group(topic.record.id, p as u32);
                groups.push(group_status(id, format!("{}/{p}", topic.name()), &self.group_view(id)));
                assigned.insert(id, replicas.len());
            }
        }
        let me = self.node_id();
        let mut peers_up = Vec::new();
        let mut members = Vec::new();
        for (id, info, voter) in self.members() {
            let up = meta.in_sync.contains(&id) || meta.leader == Some(id);
            if up && id != me {
                peers_up.push((id, info.cluster_addr.clone()));
            }
            members.push(Member {
                node_id: u64::from(broker_of(id)),
                cluster_addr: info.cluster_addr,
                client_addr: info.client_addr,
                admin_addr: info.admin_addr,
                role: if voter { "voter" } else { "learner" }.into(),
                health: if up { "up" } else { "down" }.into(),
                is_metadata_leader: meta.leader == Some(id),
                leading: 0,
            });
        }
        let mut reply = ClusterStatusReply {
            cluster_id: self.cluster_id(),
            node_id: u64::from(self.broker_id()),
            members,
            groups,
            under_replicated: Vec::new(),
        };
        count_leaderships(&mut reply);
        OwnView {
            reply,
            assigned,
            peers_up,
        }
    }

    /// The own views of `peers` (member id, cluster address), asked
    /// concurrently. One that does not answer in time (or predates the
    /// request) is left out: the groups it leads keep this broker's view.
    async fn peer_views(&self, peers: Vec<(NodeId, String)>) -> Vec<ClusterStatusReply> {
        let asks = peers.into_iter().map(|(id, addr)| async move {
            match self.ask_status(id, &addr, false, PEER_STATUS_TIMEOUT).await {
                Ok(reply) => Some(reply),
                Err(err) => {
                    tracing::debug!(member = id, error = %err.message(), "no status view from a member");
                    None
                }
            }
        });
        futures::future::join_all(asks).await.into_iter().flatten().collect()
    }
}

/// What [`ClusterNode::own_view`] saw.
struct OwnView {
    reply: ClusterStatusReply,
    /// Each partition group's number of assigned replicas.
    assigned: HashMap<u64, usize>,
    /// The other members that are up: member id and cluster address.
    peers_up: Vec<(NodeId, String)>,
}

fn group_status(group_id: u64, name: String, view: &GroupView) -> GroupStatus {
    GroupStatus {
        group_id,
        name,
        leader: view.leader.map_or(0, |l| u64::from(broker_of(l))),
        has_leader: view.leader.is_some(),
        term: view.term,
        committed_index: view.committed,
        applied_index: view.applied,
        voters: broker_ids(&view.voters),
        in_sync: broker_ids(&view.in_sync),
    }
}

/// Takes from `peer`'s own view the groups `peer` leads (only a leader
/// knows which followers are in sync).
fn merge_leader_views(reply: &mut ClusterStatusReply, peer: &ClusterStatusReply) {
    let led: HashMap<u64, &GroupStatus> = peer
        .groups
        .iter()
        .filter(|g| g.has_leader && g.leader == peer.node_id)
        .map(|g| (g.group_id, g))
        .collect();
    for group in &mut reply.groups {
        if let Some(theirs) = led.get(&group.group_id).filter(|g| g.term >= group.term) {
            *group = (*theirs).clone();
        }
    }
    count_leaderships(reply);
}

/// Lists the partitions without a leader or with fewer replicas in sync
/// than `assigned` says they have. A partition whose leader's view could
/// not be had (that member did not answer in time, or predates the
/// request) is judged by this broker's view of it.
fn mark_under_replicated(reply: &mut ClusterStatusReply, assigned: &HashMap<u64, usize>) {
    reply.under_replicated = reply
        .groups
        .iter()
        .filter(|g| g.group_id != META_GROUP)
        .filter(|g| {
            let replicas = assigned.get(&g.group_id).copied().unwrap_or(g.voters.len());
            !g.has_leader || g.in_sync.len() < replicas
        })
        .map(|g| g.name.clone())
        .collect();
}

/// Sets each member's `leading` from the groups' leaders.
fn count_leaderships(reply: &mut ClusterStatusReply) {
    let mut leading: HashMap<u64, u32> = HashMap::new();
    for g in reply.groups.iter().filter(|g| g.group_id != META_GROUP && g.has_leader) {
        *leading.entry(g.leader).or_default() += 1;
    }
    for m in &mut reply.members {
        m.leading = leading.get(&m.node_id).copied().unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: u64, leader: u64, term: u64, voters: &[u64], in_sync: &[u64]) -> GroupStatus {
        GroupStatus {
            group_id: id,
            name: format!("t/{id}"),
            leader,
            has_leader: true,
            term,
            voters: voters.to_vec(),
            in_sync: in_sync.to_vec(),
            ..Default::default()
        }
    }

    fn reply(node_id: u64, groups: Vec<GroupStatus>) -> ClusterStatusReply {
        ClusterStatusReply {
            node_id,
            members: (0..3)
                .map(|id| Member {
                    node_id: id,
                    ..Default::default()
                })
                .collect(),
            groups,
            ..Default::default()
        }
    }

    #[test]
    fn a_peer_view_replaces_only_the_groups_that_peer_leads() {
        // Seen from broker 0: group 1 led by 1, group 2 led by 2, both "in sync".
        let mut mine = reply(
            0,
            vec![
                group(1, 1, 3, &[0, 1, 2], &[0, 1, 2]),
                group(2, 2, 3, &[0, 1, 2], &[0, 1, 2]),
            ],
        );
        // Broker 1 leads group 1 and knows broker 2 fell behind; what it
        // says about group 2 (which it only follows) is ignored.
        let peer = reply(
            1,
            vec![group(1, 1, 3, &[0, 1, 2], &[0, 1]), group(2, 2, 3, &[0, 1, 2], &[])],
        );
        merge_leader_views(&mut mine, &peer);
        assert_eq!(mine.groups[0].in_sync, vec![0, 1]);
        assert_eq!(mine.groups[1].in_sync, vec![0, 1, 2]);
        assert_eq!(mine.members[1].leading, 1);
        assert_eq!(mine.members[2].leading, 1);
    }

    #[test]
    fn an_older_term_does_not_replace_a_newer_view() {
        let mut mine = reply(0, vec![group(1, 0, 5, &[0, 1, 2], &[0, 1, 2])]);
        // Broker 1 still thinks it leads, in an older term.
        let peer = reply(1, vec![group(1, 1, 4, &[0, 1, 2], &[1])]);
        merge_leader_views(&mut mine, &peer);
        assert_eq!((mine.groups[0].leader, mine.groups[0].term), (0, 5));
    }

    #[test]
    fn leaderless_and_lagging_partitions_are_under_replicated() {
        let mut r = reply(
            0,
            vec![
                group(META_GROUP, 0, 1, &[0, 1, 2], &[0, 1]),
                group(1, 0, 1, &[0, 1, 2], &[0, 1, 2]),
                group(2, 0, 1, &[0, 1, 2], &[0, 2]),
                GroupStatus {
                    has_leader: false,
                    ..group(3, 0, 1, &[0, 1, 2], &[])
                },
                // Two voters, but three assigned (a replica being replaced).
                group(4, 0, 1, &[0, 1], &[0, 1]),
            ],
        );
        let assigned = HashMap::from([(1, 3), (2, 3), (3, 3), (4, 3)]);
        mark_under_replicated(&mut r, &assigned);
        assert_eq!(r.under_replicated, vec!["t/2", "t/3", "t/4"]);
    }
}
