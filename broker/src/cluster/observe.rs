//! Prometheus metrics of the Raft groups (`flymq_raft_*`), refreshed when
//! metrics are scraped, and the leader-change counter.

use std::collections::HashMap;
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;

use super::identity::broker_of;
use super::node::ClusterNode;
use super::types::{META_GROUP, Raft};
use crate::observe::metrics::{Metrics, RaftFollowerLabels, RaftGroupLabels};

impl ClusterNode {
    /// How metrics name a group: `meta` or `<topic>/<partition>`.
    pub(super) fn group_labels(&self, group: u64) -> RaftGroupLabels {
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
            let leader = m.current_leader == Some(self.node_id());
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
                if *follower == self.node_id() {
                    continue;
                }
                let behind = last.saturating_sub(matched.map_or(0, |l| l.index));
                metrics
                    .raft_replication_lag
                    .get_or_create(&RaftFollowerLabels {
                        group: labels.group.clone(),
                        follower: u64::from(broker_of(*follower)),
                    })
                    .set(behind as i64);
            }
        }
    }
}

pub(super) fn group_labels(group: u64, topic_names: &HashMap<u32, String>) -> RaftGroupLabels {
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

/// Counts (and logs) changes of a group's leader, including losing it.
///
/// Watches the server metrics (vote, state, leader, membership), which
/// change only on elections and membership changes: the full metrics change
/// on every heartbeat answer, and a task per group woken by each would cost
/// an idle broker CPU in proportion to its partitions.
pub(super) async fn count_leader_changes(raft: Raft, metrics: Arc<Metrics>, labels: RaftGroupLabels) {
    let mut watch = raft.server_metrics();
    let mut leader = watch.borrow_watched().current_leader;
    while watch.changed().await.is_ok() {
        let current_leader = watch.borrow_watched().current_leader;
        if current_leader != leader {
            leader = current_leader;
            // The full metrics are published after the server metrics, so
            // these may lag by one update; they are for the log line only.
            let m = raft.metrics().borrow_watched().clone();
            metrics.raft_leader_changes.get_or_create(&labels).inc();
            tracing::info!(
                group = %labels.group,
                leader = ?current_leader.map(broker_of),
                leader_member = ?current_leader,
                term = m.current_term,
                last_log = ?m.last_log_index,
                committed = ?m.local_committed.map(|l| l.index),
                applied = ?m.last_applied.map(|l| l.index),
                "group leader changed"
            );
        }
    }
}
