//! Leadership transfers: on request (admin API), and before a planned stop
//! so clients switch to the new leaders at once.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;

use super::join::member_caught_up;
use super::node::ClusterNode;
use super::proposer::not_leader;
use super::service::GroupOp;
use super::types::NodeId;
use crate::core::error::{BrokerError, BrokerResult};

/// How long a leadership transfer sent to another broker may take to be accepted.
const MANAGE_TIMEOUT: Duration = Duration::from_secs(10);

impl ClusterNode {
    /// Moves leadership of `group` to `to` (run on any broker; sent to the leader).
    pub async fn transfer_leader(&self, group: u64, to: NodeId) -> BrokerResult<()> {
        let (leader, info) = self.leader_of(group).ok_or_else(|| not_leader(None))?;
        if leader == to {
            return Ok(());
        }
        if leader == self.node_id() {
            let g = self.group(group).ok_or_else(|| not_leader(None))?;
            return g
                .raft
                .trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| BrokerError::Remote(e.to_string()));
        }
        self.manage(
            leader,
            &info.cluster_addr,
            group,
            &GroupOp::TransferLeader { to },
            MANAGE_TIMEOUT,
        )
        .await
        .map_err(|s| BrokerError::Remote(s.message().to_owned()))?;
        Ok(())
    }

    /// Before a planned stop (SIGTERM, a rolling restart): moves the
    /// leadership of every group this broker leads to a voter that has the
    /// whole log, so clients see a prompt hand-over instead of waiting out an
    /// election timeout. Returns how many groups moved within `within`.
    pub async fn hand_over_leadership(&self, within: Duration) -> usize {
        let me = self.node_id();
        let mut moving = Vec::new();
        for group in self.groups() {
            let m = group.raft.metrics().borrow_watched().clone();
            if m.current_leader != Some(me) {
                continue;
            }
            let target = m
                .membership_config
                .membership()
                .voter_ids()
                .find(|id| *id != me && member_caught_up(&m, *id, 0));
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
}
